"""Checkpoint format: round trips, validation, atomic writes, refusal of unsafe input."""

import json
import os

import jax
import numpy as np
import pytest

from ntkplast import checkpoints, models
from ntkplast.errors import NtkplastError

SPEC = models.ArchSpec(widths=(5, 4), num_outputs=3)


def _write_run(tmp_path, n=3, **overrides):
    """A run folder written by hand, as another program would."""
    model = models.build(SPEC)
    entries = []
    for i in range(n):
        params = model.init(jax.random.PRNGKey(i), (6,))
        name = f"step{i}.npz"
        checkpoints.save_arrays(tmp_path / name, checkpoints.params_to_arrays(params))
        entries.append({"file": name, "step": 10 * i})
    manifest = {"format": "ntkplast-run", "format_version": 1, "model": SPEC.to_dict(),
                "input_shape": [6], "checkpoints": entries, **overrides}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return model


def test_round_trip_foreign_run(tmp_path):
    model = _write_run(tmp_path)
    run = checkpoints.open_run(tmp_path)
    assert len(run) == 3 and [c.step for c in run.checkpoints] == [0, 10, 20]
    assert run.complete
    for i, (info, params) in enumerate(run.iter_params()):
        ref = model.init(jax.random.PRNGKey(i), (6,))
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_array_equal(a, b)
        assert info.task == 0


def test_opt_state_round_trip():
    import optax

    params = models.build(SPEC).init(jax.random.PRNGKey(0), (6,))
    tx = optax.adam(1e-3)
    state = tx.init(params)
    arrays = checkpoints.opt_state_to_arrays(state)
    back = checkpoints.arrays_to_opt_state(arrays, tx.init(params), "test")
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(state)
    with pytest.raises(NtkplastError, match="optimizer state"):
        checkpoints.arrays_to_opt_state(arrays, optax.sgd(1e-3, momentum=0.9).init(params), "t")


@pytest.mark.parametrize("bad_file", ["../escape.npz", "/etc/passwd", "sub/dir.npz", ".."])
def test_manifest_paths_cannot_escape(tmp_path, bad_file):
    _write_run(tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["checkpoints"][0]["file"] = bad_file
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(NtkplastError, match="plain file name"):
        checkpoints.open_run(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "format"),
    ({"format_version": 99}, "upgrade ntkplast"),
    ({"input_shape": [0]}, "input_shape"),
    ({"model": {"kind": "transformer"}}, "kind"),
    ({"checkpoints": "none"}, "checkpoints"),
])
def test_manifest_validation(tmp_path, change, message):
    _write_run(tmp_path, **change)
    with pytest.raises(NtkplastError, match=message):
        checkpoints.open_run(tmp_path)


def test_missing_and_corrupt_manifest(tmp_path):
    with pytest.raises(NtkplastError, match="no manifest.json"):
        checkpoints.open_run(tmp_path)
    with pytest.raises(NtkplastError, match="not a folder"):
        checkpoints.open_run(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(NtkplastError, match="not readable JSON"):
        checkpoints.open_run(tmp_path)


def test_corrupt_truncated_and_object_npz_refused(tmp_path):
    _write_run(tmp_path)
    run = checkpoints.open_run(tmp_path)
    data = (tmp_path / "step1.npz").read_bytes()
    (tmp_path / "step1.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(NtkplastError, match="step1.npz"):
        run.params(1)
    np.savez(tmp_path / "step2.npz", **{"params/0/W": np.array([object()], dtype=object)})
    with pytest.raises(NtkplastError, match="step2.npz"):
        run.params(2)
    os.remove(tmp_path / "step0.npz")
    with pytest.raises(NtkplastError, match="does not exist"):
        run.params(0)


def test_shape_mismatch_and_nan_refused(tmp_path):
    _write_run(tmp_path)
    run = checkpoints.open_run(tmp_path)
    arrays = run.arrays(0)
    arrays["params/0/W"] = np.zeros((7, 5), np.float32)
    checkpoints.save_arrays(tmp_path / "step0.npz", arrays)
    with pytest.raises(NtkplastError, match="another architecture"):
        run.params(0)
    arrays["params/0/W"] = np.full((6, 5), np.nan, np.float32)
    checkpoints.save_arrays(tmp_path / "step0.npz", arrays)
    with pytest.raises(NtkplastError, match="finite"):
        run.params(0)


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path, monkeypatch):
    """A write that fails midway (disk full) leaves no partial file and the old one intact."""
    target = tmp_path / "ckpt.npz"
    checkpoints.save_arrays(target, {"a": np.arange(3)})
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(NtkplastError, match="No space"):
        checkpoints.save_arrays(target, {"a": np.arange(1000)})
    monkeypatch.setattr(os, "fsync", real_fsync)
    np.testing.assert_array_equal(checkpoints.load_arrays(target)["a"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        checkpoints.atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
