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

from ntkplast import checkpoints, cli, train
from ntkplast.data import datasets as data
from ntkplast.errors import NtkplastError
from ntkplast.training import config as ntk_config

sys.path.insert(0, str(Path(__file__).parent / "stress"))
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
        train.train_run(ntk_config.load_config(config), run_dir, progress=False)
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
    with pytest.raises(NtkplastError, match="ckpt_0.npz.*outside the run folder"):
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
    from ntkplast import files
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
