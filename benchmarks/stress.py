"""Stress test: SIGKILL trials, reader fuzzing, analysis memory over long series.

    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/stress.py [--kill-trials 20]
        [--analyze-trials 3] [--fuzz-cases 10000] [--series 50,500] [--out benchmarks/stress.png]

1. Kill trials: ``ntkplast train`` on a tiny 3-task run is SIGKILLed after the k-th checkpoint
   (plus 0–40 ms) or the moment the k-th atomic-write temporary appears (inside a write); the
   folder must still open, ``ntkplast train --resume`` must finish, and every file must equal
   an uninterrupted run's bytes. The same for ``ntkplast analyze`` (metrics.csv compared).
2. Fuzzing: ``--fuzz-cases`` inputs per reader (random bytes, byte mutations of a valid file,
   well-formed documents with wrong values; tests/stress/fuzz_targets.py); each outcome is
   accepted, refused (NtkplastError) or a crash (any other exception, or > 10 s: a hang).
3. Memory: peak resident memory of ``ntkplast analyze`` (a child process, from ``wait4``) on
   synthetic series of each length in ``--series`` (2×32 ReLU MLP on 64 inputs, probe of 32).

Prints the counts and draws one figure with three panels.
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
        opened = _run([sys.executable, "-c", "import sys; from ntkplast import checkpoints; "
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


def _alarm(*_):
    raise TimeoutError


def fuzz(cases: int, work: Path, seed: int) -> dict[str, collections.Counter]:
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
        for _ in range(cases):
            blob = fuzz_targets.case(reader, seeds[reader], rng)
            signal.alarm(10)
            try:
                out = fuzz_targets.outcome(reader, blob, folder)
            except TimeoutError:
                out = "crash:hang (> 10 s)"
            finally:
                signal.alarm(0)
            key = out if out in ("accepted", "refused") else "crash"
            c[key] += 1
            if key == "crash" and out not in examples:
                examples[out] = blob[:120]
        results[reader] = c
        print(f"  fuzz {reader:10s} {cases} cases in {time.perf_counter() - t0:5.1f} s: "
              f"accepted {c['accepted']}, refused {c['refused']}, crash {c['crash']}", flush=True)
        for out, blob in examples.items():
            print(f"      {out}  input {blob!r}")
    return results


def _synthetic_series(run_dir: Path, n: int) -> Path:
    from ntkplast import checkpoints

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
                           ("crash", "tab:red")):
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
    p.add_argument("--fuzz-cases", type=int, default=10000)
    p.add_argument("--series", default="50,500")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "stress.png"))
    args = p.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ntkplast-stress-") as tmp:
        work = Path(tmp)
        print("fuzzing readers", flush=True)
        fuzzed = fuzz(args.fuzz_cases, work, args.seed)
        print("SIGKILL trials: train", flush=True)
        train = kill_train_trials(args.kill_trials, work, rng)
        print("SIGKILL trials: analyze", flush=True)
        analyze = kill_analyze_trials(args.analyze_trials, work, rng)
        print("analysis memory", flush=True)
        memory = analyze_memory([int(s) for s in args.series.split(",")], work)
    summary = {"train": train, "analyze": analyze,
               "fuzz": {r: dict(c) for r, c in fuzzed.items()},
               "memory": {str(k): v for k, v in memory.items()}}
    print(json.dumps(summary, indent=1))
    draw(train, analyze, fuzzed, memory, Path(args.out))


if __name__ == "__main__":
    main()
