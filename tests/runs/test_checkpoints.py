"""Checkpoint format: round trips, validation, atomic writes, refusal of unsafe input."""

import json
import os

import jax
import numpy as np
import pytest
from trees import assert_trees_equal

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints

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
        assert_trees_equal(params, ref)
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


def test_training_and_import_write_one_manifest_through_one_writer(tmp_path, monkeypatch):
    """A run trained into a folder and the same checkpoints (parameters, steps, tasks) imported
    as PyTorch state dicts give one manifest: the same keys in the same order and the same
    values, apart from what only one writer knows — training's description of its stream and
    results (``num_classes``, ``num_tasks``, ``config``, ``tasks``, ``forgetting``), the importer's
    ``imported_from``, and per checkpoint its ``kind``, ``metrics``, ``sha256`` (training's
    files also hold the optimizer state) and the importer's ``source``. Both go through
    :func:`checkpoints.new_manifest` and :func:`checkpoints.append_checkpoint` alone."""
    from ntkplast import training
    from ntkplast.data import streams
    from ntkplast.runs import interop

    calls = []

    def counted(name):
        real = getattr(checkpoints, name)

        def writer(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return writer

    for name in ("new_manifest", "append_checkpoint"):
        monkeypatch.setattr(checkpoints, name, counted(name))
    spec = models.ArchSpec(widths=(7,), num_outputs=10)
    cfg = training.RunConfig(
        seed=1, model=spec, stream=streams.StreamSpec(kind="permuted", dataset="digits",
                                                      num_tasks=1),
        train=training.TrainConfig(batch_size=8, steps_per_task=6, checkpoint_every=3,
                                   reference_tasks="none"))
    trained = training.train_run(cfg, tmp_path / "trained", progress=False)
    assert calls == ["new_manifest"] + ["append_checkpoint"] * 3
    src = tmp_path / "torch"
    src.mkdir()
    for i, info in enumerate(trained):  # PyTorch layout: Linear weight is out × in
        state = {}
        for j, layer in enumerate(trained.params(i)):
            state[f"{2 * j}.weight"] = np.asarray(layer["W"]).T
            state[f"{2 * j}.bias"] = np.asarray(layer["b"])
        np.savez(src / f"model_{info.step}.npz", **state)
    calls.clear()
    imported = interop.import_folder(src, tmp_path / "imported", spec=spec,
                                     input_shape=trained.input_shape)
    assert calls == ["new_manifest"] + ["append_checkpoint"] * 3

    a, b = (json.loads((run.path / "manifest.json").read_text()) for run in (trained, imported))
    only_trained = {"num_classes", "num_tasks", "config", "tasks", "forgetting"}
    assert set(a) - set(b) == only_trained and set(b) - set(a) == {"imported_from"}
    assert [k for k in a if k in b] == [k for k in b if k in a]
    assert {k: v for k, v in a.items() if k in b and k != "checkpoints"} == {
        k: v for k, v in b.items() if k in a and k != "checkpoints"}
    assert a["complete"] is True and a["model"] == spec.to_dict()
    assert [c["kind"] for c in a["checkpoints"]] == ["init", "periodic", "task_end"]
    assert [c["step"] for c in b["checkpoints"]] == [0, 3, 6]
    for ca, cb in zip(a["checkpoints"], b["checkpoints"], strict=True):
        assert list(ca) == ["file", "step", "task", "kind", "metrics", "sha256"]
        assert list(cb) == ["file", "step", "task", "kind", "metrics", "source", "sha256"]
        assert {k: ca[k] for k in ("file", "step", "task")} == {
            k: cb[k] for k in ("file", "step", "task")}
        assert cb["kind"] == "imported" and cb["metrics"] == {}
        assert cb["source"] == f"model_{cb['step']}.npz"
    for i in range(len(trained)):
        assert_trees_equal(trained.params(i), imported.params(i), err_msg=f"checkpoint {i}")


def test_checkpoint_state_round_trips_and_refuses_a_checkpoint_without_optimizer_state(tmp_path):
    import optax

    model = models.build({"widths": [4], "num_outputs": 2})
    params = model.init(jax.random.PRNGKey(0), (3,))
    tx = optax.adam(1e-3)
    state = tx.update(params, tx.init(params), params)[1]  # moments that are not zero
    manifest = checkpoints.new_manifest(model.spec, (3,))
    with_state = checkpoints.append_checkpoint(tmp_path, manifest, params, step=1, task=0,
                                               kind="task_end", opt_state=state)
    bare = checkpoints.append_checkpoint(tmp_path, manifest, params, step=2, task=0,
                                         kind="task_end")
    got_params, got_state = checkpoints.checkpoint_state(tmp_path, with_state, tx.init(params))
    assert_trees_equal(got_params, params)
    assert_trees_equal(got_state, state)
    with pytest.raises(NtkplastError, match="holds no optimizer state"):
        checkpoints.checkpoint_state(tmp_path, bare, tx.init(params))
