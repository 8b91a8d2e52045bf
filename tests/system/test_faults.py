"""Faults: SIGKILL of train and analyze, a disk that fills midway, hostile files and paths.

Each test tries to lose a run or run a planted payload; ``benchmarks/stress.py`` repeats the
kill trials many times and reports counts (benchmarks/RESULTS.md).
"""

import errno
import io
import json
import os
import pickle
import random
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ntkplast import cli, training
from ntkplast.data import datasets as data
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints
from ntkplast.training import config as ntk_config

sys.path.insert(0, str(Path(__file__).parents[1] / "stress"))
import faults  # noqa: E402


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run (through the CLI's code path) and its config file."""
    root = tmp_path_factory.mktemp("faults")
    config = root / "tiny.toml"
    config.write_text(faults.TINY_CONFIG)
    run_dir = root / "full"
    assert cli.main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 0
    return config, run_dir, faults.files_bytes(run_dir)


def _kill_and_resume(config, run_dir, k, mode, seed):
    rec = faults.kill_during(faults.cli("train", str(config), "--out", str(run_dir),
                                        "--no-progress"),
                             run_dir, "ckpt_*.npz", k, mode, random.Random(seed))
    if (run_dir / checkpoints.MANIFEST).exists():
        checkpoints.open_run(run_dir)  # the folder still opens after the kill
    assert cli.main(["train", str(config), "--out", str(run_dir), "--resume",
                     "--no-progress"]) == 0
    return rec


@pytest.mark.parametrize("k, mode", [(4, "write")])
def test_sigkill_train_during_a_write_then_resume_is_bit_identical(reference, tmp_path, k, mode):
    config, _, want = reference
    rec = _kill_and_resume(config, tmp_path / "run", k, mode, seed=0)
    assert rec["killed"], rec["stderr"]
    assert faults.files_bytes(tmp_path / "run") == want


@pytest.mark.slow
@pytest.mark.parametrize("k, mode", [(1, "after"), (6, "after"), (9, "write"), (2, "write")])
def test_sigkill_train_more_moments(reference, tmp_path, k, mode):
    config, _, want = reference
    rec = _kill_and_resume(config, tmp_path / "run", k, mode, seed=k)
    assert rec["killed"], rec["stderr"]
    assert faults.files_bytes(tmp_path / "run") == want


def test_same_seed_gives_byte_identical_checkpoints(reference, tmp_path):
    config, _, want = reference
    assert cli.main(["train", str(config), "--out", str(tmp_path / "again"),
                     "--no-progress"]) == 0
    got = faults.files_bytes(tmp_path / "again")
    assert len(got) == faults.TINY_CHECKPOINTS + 1 and got == want


class _HalfThenFull:
    """A file whose write() stores half the bytes and then fails as a full disk would."""

    def __init__(self, f):
        self.f = f

    def write(self, b):
        self.f.write(bytes(b)[: len(b) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_disk_full_midway_keeps_previous_checkpoint_and_says_so(reference, tmp_path,
                                                                monkeypatch):
    config, _, want = reference
    run_dir = tmp_path / "run"
    real_fdopen, calls = os.fdopen, []

    def fdopen(fd, *a, **kw):
        calls.append(fd)
        f = real_fdopen(fd, *a, **kw)
        return _HalfThenFull(f) if len(calls) == 7 else f  # the 4th checkpoint's .npz

    monkeypatch.setattr(checkpoints.os, "fdopen", fdopen)
    with pytest.raises(NtkplastError, match="could not write .*ckpt_00000012.npz: No space left "
                                            "on device.*previous version.*--resume"):
        training.train_run(ntk_config.load_config(config), run_dir, progress=False)
    monkeypatch.undo()
    cli_train = ["train", str(config), "--out", str(run_dir), "--no-progress"]
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["ckpt_00000000.npz", "ckpt_00000004.npz", "ckpt_00000008.npz",
                     "manifest.json"]  # no partial file under any name, no temporary left
    run = checkpoints.open_run(run_dir)
    assert len(run) == 3 and run.params(-1)[0]["W"].shape == (64, 16)
    assert cli.main(cli_train + ["--resume"]) == 0  # space is back: the run completes
    assert faults.files_bytes(run_dir) == want


def test_cli_reports_a_full_disk_in_one_line(reference, tmp_path, monkeypatch, capsys):
    config, _, _ = reference

    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoints.os, "fsync", no_space)
    assert cli.main(["train", str(config), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device" in err and "ckpt_" in err


# ---------------------------------------------------------------------------- analyze, killed

@pytest.mark.slow
def test_sigkill_analyze_then_rerun_gives_the_same_table(reference, tmp_path):
    _, run_dir, _ = reference
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main(["analyze", str(run_dir), "--out", str(whole), *faults.ANALYZE_ARGS]) == 0
    rec = faults.kill_during(faults.cli("analyze", str(run_dir), "--out", str(part),
                                        *faults.ANALYZE_ARGS),
                             part, "cache/*/*.npz", 4, "after", random.Random(1), timeout=300)
    assert rec["killed"], rec["stderr"]
    assert not (part / "metrics.csv").exists()
    assert cli.main(["analyze", str(run_dir), "--out", str(part), *faults.ANALYZE_ARGS]) == 0
    assert (part / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()


# ------------------------------------------------------------------------------ hostile files

class _Payload:
    """Unpickling this runs ``Path.write_text(marker, ...)``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "payload ran"))


def _tiny_run(run_dir: Path) -> None:
    run_dir.mkdir()
    rng = np.random.default_rng(0)
    checkpoints.save_arrays(run_dir / "ckpt_0.npz", {
        "params/0/W": rng.normal(size=(2, 3)).astype(np.float32),
        "params/0/b": np.zeros(3, np.float32)})
    checkpoints.write_manifest(run_dir, {
        "format": checkpoints.FORMAT, "format_version": 1, "input_shape": [2],
        "model": {"kind": "mlp", "widths": [], "num_outputs": 3},
        "checkpoints": [{"file": "ckpt_0.npz", "step": 0}]})


def test_npz_with_object_array_is_refused_and_payload_never_runs(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "MARKER"
    _tiny_run(run_dir)
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    np.savez(run_dir / "ckpt_0.npz", **{"params/0/W": evil, "params/0/b": np.zeros(3)})
    with pytest.raises(NtkplastError, match="ckpt_0.npz.*object arrays are refused"):
        checkpoints.open_run(run_dir).params(0)
    with pytest.raises(NtkplastError, match="object arrays are refused"):
        checkpoints.load_arrays(run_dir / "ckpt_0.npz")
    assert not marker.exists()


def test_cifar_python_batch_with_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "data_batch_1"
    rows = np.zeros((2, 3072), np.uint8)
    path.write_bytes(pickle.dumps({b"data": rows, b"labels": _Payload(marker)}, protocol=2))
    with pytest.raises(NtkplastError, match="data_batch_1: refused to unpickle"):
        data._read_cifar_py(path, "cifar10")
    assert not marker.exists()


def test_pickle_memo_bomb_is_refused_quickly(tmp_path):
    """``LONG_BINPUT 10**9`` makes the C unpickler allocate gigabytes: refused before that."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02}r" + (10**9).to_bytes(4, "little") + b".")
    with pytest.raises(NtkplastError, match="data_batch_1: refused pickle opcode LONG_BINPUT"):
        data._read_cifar_py(path, "cifar10")


@pytest.mark.parametrize("bad", ["../x.npz", "/tmp/x.npz", "..", "a/../../x.npz", "~/x.npz"])
def test_manifest_paths_cannot_escape_the_run_folder(tmp_path, bad):
    run_dir = tmp_path / "run"
    _tiny_run(run_dir)
    (tmp_path / "x.npz").write_bytes((run_dir / "ckpt_0.npz").read_bytes())
    m = json.loads((run_dir / "manifest.json").read_text())
    m["checkpoints"][0]["file"] = bad
    (run_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(NtkplastError, match="plain file name inside the run folder"):
        checkpoints.open_run(run_dir)


def test_symlink_out_of_the_run_folder_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    _tiny_run(run_dir)
    outside = tmp_path / "elsewhere.npz"
    os.replace(run_dir / "ckpt_0.npz", outside)
    (run_dir / "ckpt_0.npz").symlink_to(outside)
    with pytest.raises(NtkplastError, match=r"ckpt_0.npz is a link to .*, outside .*run"):
        checkpoints.open_run(run_dir).params(0)


def test_npz_header_claiming_a_huge_array_is_refused_without_allocating(tmp_path):
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False,
                                              "shape": (10**12,)})
    npy.write(b"\0" * 16)
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("params/0/W.npy", npy.getvalue())
    with pytest.raises(NtkplastError, match=r"big.npz.*declares shape \(1000000000000,\)"):
        checkpoints.load_arrays(path)


def test_streamed_npz_round_trips_and_an_error_leaves_nothing(tmp_path):
    """files.array_writer: arrays written one at a time read back exactly (ours and np.load);
    an exception inside the block leaves neither the file nor a temporary."""
    from ntkplast.io import files
    arrays = {"jac_sv/0": np.arange(7.0), "weight_sv/3": np.ones((2, 3), np.float32),
              "scores": np.array([1, -2], np.int64)}
    with files.array_writer(tmp_path / "s.npz") as add:
        for k, v in arrays.items():
            add(k, v)
    for got in (files.load_arrays(tmp_path / "s.npz"), dict(np.load(tmp_path / "s.npz"))):
        assert got.keys() == arrays.keys()
        for k, v in arrays.items():
            assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    with pytest.raises(RuntimeError, match="midway"):
        with files.array_writer(tmp_path / "t.npz") as add:
            add("a", np.zeros(3))
            raise RuntimeError("midway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


# ------------------------------------------------ issue 18: one writer per folder, digests

def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ntkplast: error:"), err
    for f in fragments:
        assert f in err, err
    return err


def _tree(folder: Path) -> dict[str, bytes] | None:
    """Every file below ``folder`` (None when it does not exist), to check "left as it was"."""
    if not os.path.lexists(folder):
        return None
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


def test_a_second_writer_is_refused_naming_the_holder(reference, tmp_path, capsys):
    from ntkplast.io.lock import LOCK_NAME, folder_lock
    config, run_dir, _ = reference
    out = tmp_path / "M"
    with folder_lock(out, "train"):
        before = _tree(out)
        assert cli.main(["train", str(config), "--out", str(out), "--no-progress"]) == 2
        _one_line_error(capsys, f"pid {os.getpid()}", "ntkplast train", "being written")
        assert cli.main(["analyze", str(run_dir), "--out", str(out),
                         *faults.ANALYZE_ARGS]) == 2
        _one_line_error(capsys, f"pid {os.getpid()}")
        assert _tree(out) == before
    assert not (out / LOCK_NAME).exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    import subprocess

    from ntkplast.io.lock import LOCK_NAME, folder_lock
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; "
                               "from ntkplast.io.lock import folder_lock\n"
                               f"with folder_lock({str(out)!r}, 'train'):\n"
                               "    print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(NtkplastError, match=f"pid {holder.pid}, ntkplast train"):
        with folder_lock(out, "train"):
            pass
    holder.kill()
    holder.wait()
    assert (out / LOCK_NAME).read_text().split()[0] == str(holder.pid)  # stale file left
    with folder_lock(out, "analyze"):
        assert (out / LOCK_NAME).read_text().split() == [str(os.getpid()), "analyze"]
    assert sorted(os.listdir(out)) == []


def test_a_refused_writer_leaves_no_folder_behind(tmp_path):
    from ntkplast.io.lock import folder_lock
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path / "a" / "b", "train"):
            raise RuntimeError("refused after locking")
    assert list(tmp_path.iterdir()) == []


def test_two_trainings_on_one_folder_exactly_one_wins_nothing_mixed(reference, tmp_path):
    import subprocess

    config, _, want = reference
    out = tmp_path / "M"
    procs = [subprocess.Popen(faults.cli("train", str(config), "--out", str(out),
                                         "--no-progress", *extra), env=faults.child_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for extra in ([], ["--seed", "6"])]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2], errs
    assert "being written by another ntkplast process (pid" in errs[codes.index(2)]
    run = checkpoints.open_run(out)
    for i in range(len(run)):
        run.digest(i)  # every file is the one its manifest entry recorded
    if run.manifest["config"]["seed"] == 5:
        assert faults.files_bytes(out) == want


def test_checkpoint_digest_is_checked_by_resume_and_analysis(reference, tmp_path):
    config, _, _ = reference
    cfg = ntk_config.load_config(config)
    run_dir = tmp_path / "run"
    training.train_run(cfg, run_dir, progress=False, stop_after_chunks=2)
    run = checkpoints.open_run(run_dir)
    assert all(c.sha256 and len(c.sha256) == 64 for c in run.checkpoints)
    other = tmp_path / "other"
    training.train_run(ntk_config.load_config(config, ["seed=6"]), other, progress=False,
                       stop_after_chunks=2)
    last = run[-1].file
    (run_dir / last).write_bytes((other / last).read_bytes())  # another run's bytes
    with pytest.raises(NtkplastError, match=f"{last}: its content .* is not what the manifest"):
        training.train_run(cfg, run_dir, resume=True, progress=False)
    with pytest.raises(NtkplastError, match="not what the manifest recorded"):
        checkpoints.open_run(run_dir).params(-1)
    with pytest.raises(NtkplastError, match="not what the manifest recorded"):
        checkpoints.open_run(run_dir).digest(len(run) - 1)


def test_manifest_without_digests_stays_readable(reference, tmp_path):
    import shutil
    _, run_dir, _ = reference
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    m = json.loads((old / "manifest.json").read_text())
    for c in m["checkpoints"]:
        del c["sha256"]
    (old / "manifest.json").write_text(json.dumps(m))
    run = checkpoints.open_run(old)
    assert run[1].sha256 is None
    for a, b in zip(checkpoints.open_run(run_dir).params(1), run.params(1)):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert run.digest(1) == checkpoints.open_run(run_dir)[1].sha256


def test_a_repaired_checkpoint_recomputes_its_neighbour(reference, tmp_path):
    """Issue 18 case 2: move a checkpoint away, analyse, put it back, analyse: the next
    checkpoint's comparisons with its predecessor are those of a fresh analysis."""
    import shutil

    from ntkplast import analysis
    _, run_dir, _ = reference
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    settings = analysis.Settings(metrics=("ntk",), probe_size=8)
    subset = [0, 1, 2]
    away = tmp_path / "away.npz"
    os.replace(run / "ckpt_00000004.npz", away)
    with pytest.warns(UserWarning, match="skipping checkpoint 1"):
        missing = analysis.analyze(run, settings, out_dir=tmp_path / "a", progress=False,
                                   checkpoints_subset=subset)
    os.replace(away, run / "ckpt_00000004.npz")
    cached = analysis.analyze(run, settings, out_dir=tmp_path / "a", progress=False,
                              checkpoints_subset=subset)
    fresh = analysis.analyze(run, settings, out_dir=tmp_path / "b", progress=False,
                             checkpoints_subset=subset)
    for metric in ("kernel_distance_prev", "kernel_velocity", "eigenspace_overlap_prev"):
        got = cached.select(metric).series(metric)[1]
        assert np.array_equal(got, fresh.select(metric).series(metric)[1]), metric
        assert len(got) == 2
        if metric != "eigenspace_overlap_prev":  # 8 probe inputs, top 10: the overlap is 1
            assert missing.select(metric).series(metric)[1][0] != got[1]  # it did change


def test_an_analysis_that_dies_while_writing_leaves_no_finished_looking_mix(reference, tmp_path,
                                                                         monkeypatch):
    """Issue 18 case 1: an analysis killed among its output writes must not leave the new
    probe.npz beside the old settings.json: settings.json goes first and comes back last."""
    from ntkplast import analysis
    _, run_dir, _ = reference
    out = tmp_path / "a"
    first = analysis.Settings(metrics=("plasticity",), probe_size=8)
    analysis.analyze(run_dir, first, out_dir=out, progress=False)
    assert json.loads((out / "settings.json").read_text())["probe"]["size"] == 8

    def dies(*a, **kw):
        raise RuntimeError("killed while writing the outputs")

    monkeypatch.setattr(checkpoints, "atomic_write_bytes", dies)  # settings.json, written last
    with pytest.raises(RuntimeError, match="killed"):
        analysis.analyze(run_dir, analysis.Settings(metrics=("plasticity",), probe_size=12),
                         out_dir=out, progress=False)
    with np.load(out / "probe.npz") as probe:
        assert len(probe["y"]) == 12
    assert not (out / "settings.json").exists()  # no finished-looking mix of the two


# ------------------------------------------------------------- issue 18: the user's own files

def test_only_ntkplast_temporaries_are_removed(tmp_path):
    from ntkplast.io import files
    (tmp_path / ".thesis-draft.tmp").write_text("precious")
    (tmp_path / ".notes.txt.abc.tmp").write_text("precious too")
    ours = tmp_path / ".ckpt_00000004.npz.ntkplast-k2j4_x9q.tmp"
    ours.write_bytes(b"half")
    assert files.remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt.abc.tmp",
                                                         ".thesis-draft.tmp"]


def test_train_and_analyze_keep_a_users_tmp_file(reference, tmp_path):
    config, run_dir, _ = reference
    for verb, args in (("train", [str(config), "--no-progress"]),
                       ("analyze", [str(run_dir), *faults.ANALYZE_ARGS, "--metrics",
                                    "plasticity"])):
        out = tmp_path / verb
        out.mkdir()
        (out / ".thesis-draft.tmp").write_text("precious\n")
        assert cli.main([verb, *args, "--out", str(out)]) == 0
        assert (out / ".thesis-draft.tmp").read_text() == "precious\n"


# ------------------------------------------------ issue 18: hostile inputs, one line, no hang

class _Deadline:
    """Raise TimeoutError in the block after ``seconds`` (a hang becomes a test failure)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def fire(*_):
            raise TimeoutError(f"still running after {self.seconds}s: it hangs")
        self.old = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        import signal
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)


def _special(path: Path, kind: str) -> None:
    if os.path.lexists(path):
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_special_files_are_refused_quickly(reference, tmp_path, capsys, kind):
    """Issue 18 case 4: a FIFO or a link to /dev/zero where a file is read: one line, exit 2
    (a checkpoint: skipped with a one-line warning), never a hang or gigabytes read."""
    config, run_dir, _ = reference
    run = _copy_run(run_dir, tmp_path / "run")
    _special(run / "manifest.json", kind)
    analysis_dir = tmp_path / "analysis"
    analysis_dir.mkdir()
    _special(analysis_dir / "metrics.csv", kind)
    _special(tmp_path / "c.toml", kind)
    (tmp_path / "grid.toml").write_text('base = "c.toml"\n')
    src = tmp_path / "src"
    src.mkdir()
    calls = [["analyze", str(run), "--out", str(tmp_path / "o1"), *faults.ANALYZE_ARGS],
             ["figures", str(run_dir), "--analysis", str(analysis_dir)],
             ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o2")],
             ["sweep", str(tmp_path / "grid.toml"), "--out", str(tmp_path / "o3")],
             ["import", str(src), str(tmp_path / "o4"), "--spec", str(tmp_path / "c.toml")]]
    if kind == "zero":
        calls.append(["train", "/dev/zero", "--out", str(tmp_path / "o5")])
    with _Deadline(60):
        for argv in calls:
            assert cli.main(argv) == 2, argv
            _one_line_error(capsys, "not a regular file" if kind == "fifo" or
                            argv[0] in ("train", "sweep", "import") else "outside")
        run = _copy_run(run_dir, tmp_path / "run2")
        _special(run / "ckpt_00000004.npz", kind)
        assert cli.main(["analyze", str(run), "--out", str(tmp_path / "o6"),
                         *faults.ANALYZE_ARGS, "--metrics", "plasticity"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ntkplast: warning: skipping checkpoint 1")
    assert not any(os.path.lexists(tmp_path / f"o{k}") for k in (2, 3, 4, 5))


def _manifest_edit(run: Path, edit) -> None:
    m = json.loads((run / "manifest.json").read_text())
    edit(m)
    (run / "manifest.json").write_text(json.dumps(m))


_HOSTILE_MANIFESTS = {
    "nested 100000 deep": lambda run: (run / "manifest.json").write_text(
        "[" * 100_000 + "]" * 100_000),
    "config a list": lambda run: _manifest_edit(run, lambda m: m.__setitem__("config", [1, 2])),
    "step 10**30": lambda run: _manifest_edit(
        run, lambda m: m["checkpoints"][3].__setitem__("step", 10**30)),
    "step 2**63": lambda run: _manifest_edit(
        run, lambda m: m["checkpoints"][3].__setitem__("step", 2**63)),
    "metric a list of strings": lambda run: _manifest_edit(
        run, lambda m: m["checkpoints"][3]["metrics"].__setitem__("loss", ["a", "b"])),
    "metric a mixed list": lambda run: _manifest_edit(
        run, lambda m: m["checkpoints"][3]["metrics"].__setitem__("loss", [1, "x"])),
    "resume metric a string": lambda run: _manifest_edit(
        run, lambda m: m["checkpoints"][3]["metrics"].__setitem__("online_score_sum", "x")),
}


@pytest.mark.parametrize("name", sorted(_HOSTILE_MANIFESTS))
def test_hostile_manifest_is_one_line_for_analyze_and_resume(reference, tmp_path, capsys, name):
    config, run_dir, _ = reference
    run = _copy_run(run_dir, tmp_path / "run")
    _HOSTILE_MANIFESTS[name](run)
    before = _tree(run)
    assert cli.main(["analyze", str(run), "--out", str(tmp_path / "o"),
                     *faults.ANALYZE_ARGS]) == 2
    _one_line_error(capsys, "manifest.json")
    assert cli.main(["train", str(config), "--out", str(run), "--resume", "--no-progress"]) == 2
    _one_line_error(capsys, "manifest.json")
    assert _tree(run) == before and not (tmp_path / "o").exists()


_NO_STEPS = faults.TINY_CONFIG.replace("steps_per_task = 12\n", "")
_BAD_TRAININGS = {
    "w_std nan": (_NO_STEPS, ["--set", "model.w_std=nan"], "model.w_std: expected a finite"),
    "momentum nan": (_NO_STEPS, ["--set", "train.momentum=nan"], "train.momentum"),
    "epochs inf": (_NO_STEPS, ["--set", "train.epochs_per_task=inf"], "epochs_per_task"),
    "isometry scale x": (faults.TINY_CONFIG + '[method]\nname = "isometry"\nscale = "x"\n', [],
                         "method.scale: expected a finite number"),
    "widths 2**40": (faults.TINY_CONFIG, ["--set", "model.widths=[1099511627776]"],
                     "more than this machine's"),
    "batch_size 1e7": (faults.TINY_CONFIG, ["--set", "train.batch_size=10000000"],
                       "train.batch_size = 10000000 is larger than the task's"),
    "set nested deep": (faults.TINY_CONFIG, ["--set", "model.widths=" + "[" * 5000 + "]" * 5000],
                        "--set"),
}


@pytest.mark.parametrize("name", sorted(_BAD_TRAININGS))
def test_bad_training_config_fails_before_writing(tmp_path, capsys, name):
    text, extra, fragment = _BAD_TRAININGS[name]
    (tmp_path / "c.toml").write_text(text)
    out = tmp_path / "out"
    with _Deadline(60):
        assert cli.main(["train", str(tmp_path / "c.toml"), "--out", str(out),
                         "--no-progress", *extra]) == 2
    _one_line_error(capsys, fragment)
    assert not out.exists()


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_out_that_is_or_lies_under_a_file_is_one_line(reference, tmp_path, capsys, where):
    config, run_dir, _ = reference
    (tmp_path / "afile").write_text("x")
    out = str(tmp_path / "afile" / ("sub" if where == "under a file" else ""))
    analysis_dir = tmp_path / "analysis"
    assert cli.main(["analyze", str(run_dir), "--out", str(analysis_dir),
                     *faults.ANALYZE_ARGS, "--metrics", "plasticity"]) == 0
    (tmp_path / "grid.toml").write_text(f'base = "{config}"\n')
    src = tmp_path / "src"
    src.mkdir()
    checkpoints.save_arrays(src / "m_step0.npz", {"0.weight": np.ones((3, 2), np.float32),
                                                   "0.bias": np.zeros(3, np.float32)})
    for argv in (["train", str(config), "--out", out, "--no-progress"],
                 ["analyze", str(run_dir), "--out", out, *faults.ANALYZE_ARGS],
                 ["figures", str(run_dir), "--analysis", str(analysis_dir), "--out", out],
                 ["sweep", str(tmp_path / "grid.toml"), "--out", out, "--no-analysis"],
                 ["import", str(src), out]):
        assert cli.main(argv) == 2, argv
        _one_line_error(capsys, "afile")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_one_line(reference, tmp_path, capsys):
    config, _, _ = reference
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert cli.main(["train", str(config), "--out", str(ro), "--no-progress"]) == 2
    _one_line_error(capsys, str(ro))


def test_overlong_csv_field_is_one_line(reference, tmp_path, capsys):
    _, run_dir, _ = reference
    a = tmp_path / "a"
    a.mkdir()
    (a / "metrics.csv").write_text("checkpoint,step,task,layer,metric,value\n0,0,0,all,"
                                   + "x" * 140_000 + ",1.0\n")
    assert cli.main(["figures", str(run_dir), "--analysis", str(a)]) == 2
    _one_line_error(capsys, "metrics.csv is not a metrics table")


def test_skipped_checkpoint_is_one_warning_line(reference, tmp_path, capsys):
    _, run_dir, _ = reference
    run = _copy_run(run_dir, tmp_path / "run")
    (run / "ckpt_00000008.npz").write_bytes(b"garbage")
    assert cli.main(["analyze", str(run), "--out", str(tmp_path / "o"), *faults.ANALYZE_ARGS,
                     "--metrics", "plasticity"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("ntkplast: warning: skipping checkpoint 2 (ckpt_00000008.npz)")


def test_a_spec_deeper_than_its_checkpoints_is_refused_before_tracing(tmp_path):
    """A manifest whose model has 1,000 layers and a checkpoint with 1: refused at the layer
    count, not after tracing the deep spec (which takes seconds per hundred layers)."""
    run_dir = tmp_path / "run"
    _tiny_run(run_dir)
    m = json.loads((run_dir / "manifest.json").read_text())
    m["model"]["widths"] = [1] * 1000
    (run_dir / "manifest.json").write_text(json.dumps(m))
    with _Deadline(5), pytest.raises(NtkplastError, match="1 weight layers, but the manifest"):
        checkpoints.open_run(run_dir).params(0)


@pytest.mark.parametrize("seeds", ["[[1, 2], [3]]", "[1, 1]", "[{a = 1}]", "9" * 30])
def test_hostile_grid_seeds_are_refused(tmp_path, seeds):
    from ntkplast.experiments import sweep
    (tmp_path / "g.toml").write_text(f"seeds = {seeds}\n")
    with pytest.raises(NtkplastError, match="g.toml"):
        sweep.load_grid(tmp_path / "g.toml")
