"""Stress test: SIGKILL trials, concurrent writers, stale caches, reader fuzzing, analysis memory.

    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/stress.py [--kill-trials 20]
        [--analyze-trials 3] [--concurrent-trials 20] [--writers 3] [--stale-trials 3]
        [--fuzz-cases 10000] [--series 50,500] [--parts fuzz,kill,concurrent,stale,memory]
        [--out benchmarks/stress.png]

1. Kill trials: ``ntkplast train`` on a tiny 3-task run is SIGKILLed after the k-th checkpoint
   (plus 0–40 ms) or the moment the k-th atomic-write temporary appears (inside a write); the
   folder must still open, ``ntkplast train --resume`` must finish, and every file must equal
   an uninterrupted run's bytes. The same for ``ntkplast analyze`` (metrics.csv compared).
2. Fuzzing: ``--fuzz-cases`` inputs per reader (random bytes, byte mutations of a valid file,
   well-formed documents with wrong values; tests/stress/fuzz_targets.py), plus a FIFO and a
   link to /dev/zero in the file's place; each outcome is accepted, refused (NtkplastError), a
   crash (any other exception) or a hang (> 10 s), and the process's peak resident memory after
   each reader must stay under ``FUZZ_MEMORY_BOUND_MIB`` (2 GiB).
3. Memory: peak resident memory of ``ntkplast analyze`` (a child process, from ``wait4``) on
   synthetic series of each length in ``--series`` (2×32 ReLU MLP on 64 inputs, probe of 32).
4. Concurrent writers: ``--writers`` ``ntkplast train`` processes started together on one
   folder, each with its own seed (``--concurrent-trials`` trials), and two ``ntkplast
   analyze`` with different probe sizes on one analysis folder (a third as many trials):
   exactly one may succeed, every other must exit 2 with one line, and the folder must hold
   the winner's files only — for train every checkpoint's bytes equal the winner's seed's
   uninterrupted run, for analyze ``probe.npz``, ``settings.json`` and ``metrics.csv`` agree.
5. Stale cache: a checkpoint moved out of the run, the run analysed, the checkpoint put back,
   analysed again (the same analysis folder): the next checkpoint's comparisons with its
   predecessor (``kernel_distance_prev``, ``kernel_velocity``, ``eigenspace_overlap_prev``)
   must equal a fresh analysis's.

Prints the counts and, when every part ran, draws one figure with three panels.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "stress"))
import faults  # noqa: E402
import fuzz_targets  # noqa: E402


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=faults.child_env(), capture_output=True, text=True, **kw)


def kill_train_trials(n: int, work: Path, rng: random.Random) -> dict:
    config = work / "tiny.toml"
    config.write_text(faults.TINY_CONFIG)
    ref = work / "train_ref"
    out = _run(faults.cli("train", str(config), "--out", str(ref), "--no-progress"))
    assert out.returncode == 0, out.stderr
    want = faults.files_bytes(ref)
    c = collections.Counter(trials=0, killed=0, killed_inside_write=0, folder_opened=0,
                            resumed=0, identical=0, bytes_differing=0, temporaries_left=0)
    for t in range(n):
        run_dir = work / f"train_{t}"
        mode = "write" if t % 2 else "after"
        # a write-mode kill needs the poller to see k temporaries (it misses some), so k stays
        # well below the run's 20 atomic writes; an after-mode kill below its 10 checkpoints
        k = rng.randint(1, 12) if mode == "write" else rng.randint(1, faults.TINY_CHECKPOINTS - 2)
        rec = faults.kill_during(faults.cli("train", str(config), "--out", str(run_dir),
                                            "--no-progress"),
                                 run_dir, "ckpt_*.npz", k, mode, rng)
        c["trials"] += 1
        c["killed"] += rec["killed"]
        c["killed_inside_write"] += rec["in_write"]
        opened = _run([sys.executable, "-c", "import sys; from ntkplast.runs import checkpoints; "
                       "checkpoints.open_run(sys.argv[1])", str(run_dir)])
        c["folder_opened"] += opened.returncode == 0 or not (run_dir / "manifest.json").exists()
        res = _run(faults.cli("train", str(config), "--out", str(run_dir), "--resume",
                              "--no-progress"))
        c["resumed"] += res.returncode == 0
        got = faults.files_bytes(run_dir)
        diff = faults.bytes_differing(got, want)
        c["identical"] += diff == 0
        c["bytes_differing"] += diff
        c["temporaries_left"] += sum(1 for p in run_dir.iterdir() if p.name.endswith(".tmp"))
        print(f"  train trial {t}: {mode} k={k} killed={rec['killed']} "
              f"in_write={rec['in_write']} resumed={res.returncode == 0} bytes_diff={diff}",
              flush=True)
        shutil.rmtree(run_dir)
    return dict(c)


def kill_analyze_trials(n: int, work: Path, rng: random.Random) -> dict:
    run_dir = work / "train_ref"
    whole = work / "analysis_ref"
    out = _run(faults.cli("analyze", str(run_dir), "--out", str(whole), *faults.ANALYZE_ARGS))
    assert out.returncode == 0, out.stderr
    want = (whole / "metrics.csv").read_bytes()
    c = collections.Counter(trials=0, killed=0, rerun_ok=0, identical_table=0)
    for t in range(n):
        part = work / f"analysis_{t}"
        k = rng.randint(1, faults.TINY_CHECKPOINTS - 1)
        rec = faults.kill_during(faults.cli("analyze", str(run_dir), "--out", str(part),
                                            *faults.ANALYZE_ARGS),
                                 part, "cache/*/*.npz", k, "after", rng, timeout=300)
        res = _run(faults.cli("analyze", str(run_dir), "--out", str(part),
                              *faults.ANALYZE_ARGS))
        same = (part / "metrics.csv").exists() and (part / "metrics.csv").read_bytes() == want
        c["trials"] += 1
        c["killed"] += rec["killed"]
        c["rerun_ok"] += res.returncode == 0
        c["identical_table"] += same
        print(f"  analyze trial {t}: k={k} killed={rec['killed']} identical={same}", flush=True)
        shutil.rmtree(part)
    return dict(c)


def concurrent_trials(n: int, writers: int, work: Path) -> dict:
    """Part 4 of the module docstring: N writers on one folder, exactly one wins, nothing mixed."""
    config = work / "tiny.toml"
    config.write_text(faults.TINY_CONFIG)
    seeds = [100 + k for k in range(writers)]
    refs = {}
    for seed in seeds:  # each seed's uninterrupted run, to compare the winner's folder with
        ref = work / f"ref_seed{seed}"
        out = _run(faults.cli("train", str(config), "--out", str(ref), "--seed", str(seed),
                              "--no-progress"))
        assert out.returncode == 0, out.stderr
        refs[seed] = faults.files_bytes(ref)
    c = collections.Counter(trials=0, exactly_one_succeeded=0, losers_one_line_exit_2=0,
                            mixed_folders=0, analyze_trials=0, analyze_exactly_one=0,
                            analyze_mixed=0)
    for t in range(n):
        folder = work / f"concurrent_{t}"
        procs = [subprocess.Popen(faults.cli("train", str(config), "--out", str(folder),
                                             "--seed", str(seed), "--no-progress"),
                                  env=faults.child_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for seed in seeds]
        codes = [p.wait() for p in procs]
        errs = [p.stderr.read().strip() for p in procs]
        for p in procs:
            p.stderr.close()
        winners = [seed for seed, code in zip(seeds, codes) if code == 0]
        one_line = all(code == 2 and err.count("\n") == 0 and err.startswith("ntkplast: error:")
                       for code, err in zip(codes, errs) if code != 0)
        manifest = json.loads((folder / "manifest.json").read_text())
        mixed = (len(winners) != 1 or manifest["config"]["seed"] != winners[0]
                 or faults.files_bytes(folder) != refs[winners[0]])
        c["trials"] += 1
        c["exactly_one_succeeded"] += len(winners) == 1
        c["losers_one_line_exit_2"] += one_line
        c["mixed_folders"] += mixed
        print(f"  concurrent trial {t}: exit codes {codes}, winner seed {winners}, "
              f"mixed={mixed}", flush=True)
        shutil.rmtree(folder)
    for t in range(max(1, n // 3)):
        out = work / f"concurrent_analysis_{t}"
        sizes = (16, 24)
        procs = [subprocess.Popen(faults.cli("analyze", str(work / f"ref_seed{seeds[0]}"),
                                             "--out", str(out), "--probe-size", str(size),
                                             "--metrics", "ntk,plasticity", "--no-progress"),
                                  env=faults.child_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for size in sizes]
        codes = [p.wait() for p in procs]
        settings = json.loads((out / "settings.json").read_text())
        with np.load(out / "probe.npz") as probe:
            rows = len(probe["y"])
        winner = [size for size, code in zip(sizes, codes) if code == 0]
        mixed = len(winner) != 1 or not (settings["probe"]["size"] == rows == winner[0])
        c["analyze_trials"] += 1
        c["analyze_exactly_one"] += len(winner) == 1
        c["analyze_mixed"] += mixed
        print(f"  concurrent analyze trial {t}: exit codes {codes}, probe rows {rows}, "
              f"settings size {settings['probe']['size']}, mixed={mixed}", flush=True)
        shutil.rmtree(out)
    return dict(c)


def stale_cache_trials(n: int, work: Path, rng: random.Random) -> dict:
    """Part 5 of the module docstring: move a checkpoint away, analyse, put it back, analyse."""
    config = work / "tiny.toml"
    config.write_text(faults.TINY_CONFIG)
    ref = work / "stale_ref"
    if not ref.exists():
        out = _run(faults.cli("train", str(config), "--out", str(ref), "--no-progress"))
        assert out.returncode == 0, out.stderr
    args = ["--probe-size", "16", "--metrics", "ntk", "--no-progress"]
    metrics = ("kernel_distance_prev", "kernel_velocity", "eigenspace_overlap_prev")
    c = collections.Counter(trials=0, analyses_ok=0, stale_values=0)
    for t in range(n):
        run, cached, fresh = (work / f"stale_{t}_{k}" for k in ("run", "cached", "fresh"))
        shutil.copytree(ref, run)
        k = rng.randint(1, faults.TINY_CHECKPOINTS - 2)
        name = json.loads((run / "manifest.json").read_text())["checkpoints"][k]["file"]
        os.replace(run / name, work / "away.npz")
        ok = _run(faults.cli("analyze", str(run), "--out", str(cached), *args)).returncode == 0
        os.replace(work / "away.npz", run / name)
        ok &= _run(faults.cli("analyze", str(run), "--out", str(cached), *args)).returncode == 0
        ok &= _run(faults.cli("analyze", str(run), "--out", str(fresh), *args)).returncode == 0
        got, want = (_rows(d / "metrics.csv", k + 1, metrics) for d in (cached, fresh))
        c["trials"] += 1
        c["analyses_ok"] += ok
        c["stale_values"] += sum(got[m] != want[m] for m in metrics)
        print(f"  stale-cache trial {t}: checkpoint {k} moved away and back; checkpoint "
              f"{k + 1}: " + ", ".join(f"{m} {got[m]} vs fresh {want[m]}" for m in metrics),
              flush=True)
        for d in (run, cached, fresh):
            shutil.rmtree(d)
    return dict(c)


def _rows(csv_path: Path, checkpoint: int, metrics: tuple[str, ...]) -> dict[str, str]:
    import csv

    with open(csv_path, newline="") as f:
        return {r["metric"]: r["value"] for r in csv.DictReader(f)
                if int(r["checkpoint"]) == checkpoint and r["metric"] in metrics}


def _alarm(*_):
    raise TimeoutError


FUZZ_MEMORY_BOUND_MIB = 2048
"""Largest peak resident memory the fuzzing process may reach (MiB): a reader that allocates
what a hostile header claims would pass it."""


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fuzz(cases: int, work: Path, seed: int) -> dict[str, collections.Counter]:
    """``cases`` inputs per reader plus a FIFO and a link to /dev/zero in its file's place;
    counts accepted, refused, crash (a traceback) and hang (> 10 s), and the peak resident
    memory after each reader (a crash when above :data:`FUZZ_MEMORY_BOUND_MIB`)."""
    seeds = fuzz_targets.seeds()
    results: dict[str, collections.Counter] = {}
    signal.signal(signal.SIGALRM, _alarm)
    for reader in fuzz_targets.READERS:
        rng = random.Random(seed)
        c: collections.Counter = collections.Counter()
        examples: dict[str, bytes] = {}
        folder = work / f"fuzz_{reader}"
        folder.mkdir()
        t0 = time.perf_counter()
        inputs = [(None, kind) for kind in ("fifo", "zero")] + [
            (fuzz_targets.case(reader, seeds[reader], rng), None) for _ in range(cases)]
        for blob, special in inputs:
            signal.alarm(10)
            try:
                if special is None:
                    out = fuzz_targets.outcome(reader, blob, folder)
                else:
                    with tempfile.TemporaryDirectory(dir=work) as d:
                        out = fuzz_targets.special_outcome(reader, special, Path(d))
            except TimeoutError:
                out = "hang (> 10 s)"
            finally:
                signal.alarm(0)
            key = out if out in ("accepted", "refused") else (
                "hang" if out.startswith("hang") else "crash")
            c[key] += 1
            if key not in ("accepted", "refused") and out not in examples:
                examples[out] = (blob or special.encode())[:120]
        peak = _peak_rss_mib()
        c["peak_rss_mib"] = round(peak)
        if peak > FUZZ_MEMORY_BOUND_MIB:
            c["over_memory_bound"] += 1
        results[reader] = c
        print(f"  fuzz {reader:11s} {len(inputs)} cases in {time.perf_counter() - t0:6.1f} s: "
              f"accepted {c['accepted']}, refused {c['refused']}, crash {c['crash']}, "
              f"hang {c['hang']}; peak RSS {peak:,.0f} MiB (bound {FUZZ_MEMORY_BOUND_MIB})",
              flush=True)
        for out, blob in examples.items():
            print(f"      {out}  input {blob!r}")
    return results


def _synthetic_series(run_dir: Path, n: int) -> Path:
    from ntkplast.runs import checkpoints

    run_dir.mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        arrays = {"params/0/W": rng.normal(0, 0.18, (64, 32)), "params/0/b": np.zeros(32),
                  "params/1/W": rng.normal(0, 0.25, (32, 32)), "params/1/b": np.zeros(32),
                  "params/2/W": rng.normal(0, 0.25, (32, 10)), "params/2/b": np.zeros(10)}
        name = checkpoints.checkpoint_name(i)
        checkpoints.save_arrays(run_dir / name,
                                {k: v.astype(np.float32) for k, v in arrays.items()})
        entries.append({"file": name, "step": i, "task": i // 10, "kind": "periodic"})
    checkpoints.write_manifest(run_dir, {
        "format": checkpoints.FORMAT, "format_version": 1, "input_shape": [64],
        "model": {"kind": "mlp", "widths": [32, 32], "num_outputs": 10},
        "checkpoints": entries})
    probe = run_dir.parent / f"probe_{n}.npz"
    np.savez(probe, x=rng.uniform(0, 1, (32, 64)).astype(np.float32))
    return probe


def analyze_memory(sizes: list[int], work: Path) -> dict[int, dict]:
    out = {}
    for n in sizes:
        run_dir = work / f"series_{n}"
        probe = _synthetic_series(run_dir, n)
        t0 = time.perf_counter()
        proc = subprocess.Popen(faults.cli("analyze", str(run_dir), "--probe", str(probe),
                                           "--metrics", "ntk,isometry,dormancy",
                                           "--no-progress"),
                                env=faults.child_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        assert os.waitstatus_to_exitcode(status) == 0, err
        out[n] = {"peak_rss_mib": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - t0}
        print(f"  analyze over {n} checkpoints: peak RSS {out[n]['peak_rss_mib']:.0f} MiB, "
              f"{out[n]['seconds']:.1f} s", flush=True)
        shutil.rmtree(run_dir)
    return out


def draw(train: dict, analyze: dict, fuzzed: dict, memory: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    keys = ["trials", "killed", "killed_inside_write", "folder_opened", "resumed", "identical"]
    ax[0].barh(keys[::-1], [train[k] for k in keys[::-1]], color="tab:blue")
    ax[0].set_title(f"train SIGKILL trials (bytes differing: {train['bytes_differing']})\n"
                    f"analyze: {analyze.get('identical_table', 0)}/{analyze.get('trials', 0)} "
                    f"identical tables after kill + re-run", fontsize=10)
    readers = list(fuzzed)
    left = np.zeros(len(readers))
    for outcome, color in (("accepted", "tab:green"), ("refused", "tab:gray"),
                           ("crash", "tab:red"), ("hang", "tab:purple")):
        vals = np.array([fuzzed[r][outcome] for r in readers], float)
        ax[1].barh(readers, vals, left=left, color=color, label=outcome)
        left += vals
    ax[1].set_title("fuzz outcomes per reader", fontsize=10)
    ax[1].legend(loc="lower right", fontsize=8)
    sizes = sorted(memory)
    ax[2].plot(sizes, [memory[n]["peak_rss_mib"] for n in sizes], "o-")
    ax[2].set_xscale("log")
    ax[2].set_ylim(0, max(memory[n]["peak_rss_mib"] for n in sizes) * 1.2)
    ax[2].set_xlabel("checkpoints in the series")
    ax[2].set_ylabel("peak RSS of ntkplast analyze (MiB)")
    ax[2].set_title("analysis memory over series length", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kill-trials", type=int, default=20)
    p.add_argument("--analyze-trials", type=int, default=3)
    p.add_argument("--concurrent-trials", type=int, default=20)
    p.add_argument("--writers", type=int, default=3)
    p.add_argument("--stale-trials", type=int, default=3)
    p.add_argument("--parts", default="fuzz,kill,concurrent,stale,memory",
                   help="which parts to run (module docstring)")
    p.add_argument("--fuzz-cases", type=int, default=10000)
    p.add_argument("--series", default="50,500")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "stress.png"))
    args = p.parse_args()
    rng = random.Random(args.seed)
    parts = set(args.parts.split(","))
    summary: dict = {}
    with tempfile.TemporaryDirectory(prefix="ntkplast-stress-") as tmp:
        work = Path(tmp)
        if "fuzz" in parts:
            print("fuzzing readers", flush=True)
            summary["fuzz"] = fuzz(args.fuzz_cases, work, args.seed)
        if "kill" in parts:
            print("SIGKILL trials: train", flush=True)
            summary["train"] = kill_train_trials(args.kill_trials, work, rng)
            print("SIGKILL trials: analyze", flush=True)
            summary["analyze"] = kill_analyze_trials(args.analyze_trials, work, rng)
        if "concurrent" in parts:
            print(f"concurrent writers: {args.writers} per folder", flush=True)
            summary["concurrent"] = concurrent_trials(args.concurrent_trials, args.writers, work)
        if "stale" in parts:
            print("stale cache: a checkpoint moved away and back between analyses", flush=True)
            summary["stale_cache"] = stale_cache_trials(args.stale_trials, work, rng)
        if "memory" in parts:
            print("analysis memory", flush=True)
            summary["memory"] = analyze_memory([int(s) for s in args.series.split(",")], work)
    print(json.dumps({k: ({r: dict(c) for r, c in v.items()} if k == "fuzz" else
                          {str(n): x for n, x in v.items()}) for k, v in summary.items()},
                     indent=1))
    if {"fuzz", "kill", "memory"} <= parts:
        draw(summary["train"], summary["analyze"], summary["fuzz"], summary["memory"],
             Path(args.out))


if __name__ == "__main__":
    main()
