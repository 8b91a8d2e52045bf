"""Continual training: learning happens, resume is bit-identical, hooks plug in, bad runs stop."""

import dataclasses
import json
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import assert_trees_equal

from ntkplast import models, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints


def _cfg(**train_kw):
    kw = dict(optimizer="adam", learning_rate=3e-3, batch_size=16, steps_per_task=12,
              checkpoint_every=5, reference_tasks=[1])
    kw.update(train_kw)
    return training.RunConfig(
        seed=3,
        model=models.ArchSpec(widths=(16,), num_outputs=10),
        stream=streams.StreamSpec(kind="permuted", dataset="digits", num_tasks=3),
        train=training.TrainConfig(**kw))


def _files(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.npz"))}


def test_checkpoint_series_layout(tmp_path):
    run = training.train_run(_cfg(), tmp_path, progress=False)
    kinds = [(c.step, c.task, c.kind) for c in run.checkpoints]
    assert kinds == [(0, 0, "init"), (5, 0, "periodic"), (10, 0, "periodic"), (12, 0, "task_end"),
                     (17, 1, "periodic"), (22, 1, "periodic"), (24, 1, "task_end"),
                     (29, 2, "periodic"), (34, 2, "periodic"), (36, 2, "task_end")]
    tasks = run.manifest["tasks"]
    assert [t["task"] for t in tasks] == [0, 1, 2] and run.complete
    assert [len(t["accuracy_on_tasks"]) for t in tasks] == [1, 2, 3]
    assert "reference_test_accuracy" in tasks[1] and "reference_test_accuracy" not in tasks[0]
    assert tasks[1]["plasticity_loss"] == pytest.approx(
        tasks[1]["reference_test_accuracy"] - tasks[1]["test_accuracy"])
    assert tasks[2]["accuracy_on_tasks"][-1] == tasks[2]["test_accuracy"]
    assert all(0 <= t["online_accuracy"] <= 1 for t in tasks)


def test_accuracy_matrix_every_k_tasks_matches_a_direct_evaluation(tmp_path):
    """``eval_previous_every = 2`` on 3 tasks: rows at tasks 1 and 2 (the last) only, each
    entry the accuracy of that task end's parameters on the earlier task's test set."""
    cfg = _cfg(eval_previous_every=2, checkpoint_every=0)
    run = training.train_run(cfg, tmp_path, progress=False)
    tasks = run.manifest["tasks"]
    assert ["accuracy_on_tasks" in t for t in tasks] == [False, True, True]
    stream = streams.make_stream(cfg.stream)
    ends = [i for i, c in enumerate(run.checkpoints) if c.kind == "task_end"]
    for t in (1, 2):
        params = run.params(ends[t])
        direct = []
        for s in range(t + 1):
            x, y = stream.test_set(s)
            logits = run.model.apply(params, jnp.asarray(x))
            direct.append(float(np.mean(np.argmax(np.asarray(logits), -1) == y)))
        np.testing.assert_allclose(tasks[t]["accuracy_on_tasks"], direct, atol=1e-6)
    with pytest.raises(NtkplastError, match="eval_previous_every"):
        training.TrainConfig(eval_previous_every=0)


def test_accuracy_matrix_at_most_m_tasks_per_row(tmp_path):
    """``eval_previous_max = 2`` on 3 tasks: the last row evaluates tasks 0 and 2 only (1 is
    None), and those entries equal the full row's; the chosen tasks in closed form."""
    assert training.previous_tasks(9, 4) == [0, 3, 6, 9]
    assert training.previous_tasks(10, 4) == [0, 3, 7, 10]
    assert training.previous_tasks(2, 5) == [0, 1, 2]
    assert training.previous_tasks(7, 0) == list(range(8))
    full = training.train_run(_cfg(checkpoint_every=0), tmp_path / "full", progress=False)
    cut = training.train_run(_cfg(checkpoint_every=0, eval_previous_max=2), tmp_path / "cut",
                             progress=False)
    rows = [t["accuracy_on_tasks"] for t in cut.manifest["tasks"]]
    want = [t["accuracy_on_tasks"] for t in full.manifest["tasks"]]
    assert rows[:2] == want[:2] and rows[2][1] is None
    assert rows[2][0] == want[2][0] and rows[2][2] == want[2][2]
    with pytest.raises(NtkplastError, match="eval_previous_max"):
        training.TrainConfig(eval_previous_max=1)


def test_learning_happens_on_digits(tmp_path):
    cfg = _cfg(steps_per_task=150, checkpoint_every=0, reference_tasks="none")
    cfg = dataclasses.replace(cfg, stream=dataclasses.replace(cfg.stream, num_tasks=1))
    run = training.train_run(cfg, tmp_path, progress=False)
    assert run.manifest["tasks"][0]["test_accuracy"] > 0.8


def test_resume_is_bit_identical(tmp_path):
    """Interrupted after each possible chunk, resumed runs end with the same bytes."""
    cfg = _cfg()
    full = tmp_path / "full"
    training.train_run(cfg, full, progress=False)
    for stop in (1, 3, 5):
        part = tmp_path / f"part{stop}"
        training.train_run(cfg, part, progress=False, stop_after_chunks=stop)
        assert not checkpoints.open_run(part).complete
        # what a kill during a write leaves: a temporary next to the files; resume clears it
        (part / ".ckpt_00000017.npz.ntkplast-k3j2x9ab.tmp").write_bytes(b"half a checkpoint")
        training.train_run(cfg, part, progress=False, resume=True)
        assert not list(part.glob(".*.tmp"))
        assert _files(part) == _files(full)
        assert checkpoints.read_manifest(part) == checkpoints.read_manifest(full)


def test_a_run_killed_in_its_first_write_leaves_no_temporary(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".ckpt_00000000.npz.ntkplast-a8b7q2zz.tmp").write_bytes(b"killed mid-write")
    training.train_run(_cfg(steps_per_task=2, checkpoint_every=0, reference_tasks="none"), run_dir,
                       progress=False, resume=True)
    assert not list(run_dir.glob(".*.tmp")) and checkpoints.open_run(run_dir).complete


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    cfg = _cfg(reference_tasks="none")
    training.train_run(cfg, tmp_path / "a", progress=False)
    training.train_run(cfg, tmp_path / "b", progress=False)
    training.train_run(dataclasses.replace(cfg, seed=4), tmp_path / "c", progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_existing_run_needs_resume_and_same_config(tmp_path):
    cfg = _cfg(reference_tasks="none")
    training.train_run(cfg, tmp_path, progress=False, stop_after_chunks=1)
    with pytest.raises(NtkplastError, match="--resume"):
        training.train_run(cfg, tmp_path, progress=False)
    other = dataclasses.replace(cfg, seed=9)
    with pytest.raises(NtkplastError, match="different configuration"):
        training.train_run(other, tmp_path, progress=False, resume=True)


def test_a_run_written_before_the_new_architecture_fields_resumes(tmp_path):
    """A manifest whose model config predates fields added since (layer_norm, residual, …) is
    the same configuration when those fields are at their defaults; a changed field is not."""
    cfg = _cfg(reference_tasks="none")
    training.train_run(cfg, tmp_path, progress=False, stop_after_chunks=1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    new_fields = ("negative_slope", "group_size", "layer_norm", "layer_norm_affine", "residual",
                  "pre_norm", "weight_constraint")
    for key in new_fields:
        del manifest["config"]["model"][key]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    uninterrupted = tmp_path / "whole"
    training.train_run(cfg, uninterrupted, progress=False)
    training.train_run(cfg, tmp_path, progress=False, resume=True)
    assert _files(tmp_path) == _files(uninterrupted)
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layer_norm=True))
    with pytest.raises(NtkplastError, match="different configuration"):
        training.train_run(other, tmp_path, progress=False, resume=True)


def test_divergence_stops_with_step_and_keeps_checkpoints(tmp_path):
    cfg = _cfg(optimizer="sgd", learning_rate=1e30, reference_tasks="none")
    with pytest.raises(NtkplastError, match=r"diverged at step \d+.*learning_rate"):
        training.train_run(cfg, tmp_path, progress=False)
    run = checkpoints.open_run(tmp_path)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(run.params(-1)))


def test_hooks_plug_into_step_and_task_end(tmp_path):
    """A strong L2 penalty shrinks weights; post_update and on_task_end see every step/task."""
    cfg = _cfg(reference_tasks="none", checkpoint_every=0)
    plain = training.train_run(cfg, tmp_path / "plain", progress=False)

    def penalty(params):
        return 10.0 * sum(jnp.sum(p["W"] ** 2) for p in params)

    seen = []

    def on_task_end(params, opt_state, task, key):
        seen.append(task)
        return jax.tree_util.tree_map(jnp.zeros_like, params), opt_state

    def post_update(params, key, step):
        return jax.tree_util.tree_map(lambda p: p * 0.999, params)

    hooks = training.Hooks(penalty=penalty, post_update=post_update, on_task_end=on_task_end)
    reg = training.train_run(cfg, tmp_path / "reg", progress=False, hooks=hooks)
    assert seen == [0, 1, 2]
    w_plain = np.linalg.norm(plain.params(1)[0]["W"])
    w_reg = np.linalg.norm(reg.params(1)[0]["W"])
    assert w_reg == 0.0 < w_plain  # the task-end reset is what the checkpoint stores


def test_post_step_sees_minibatches_and_optimizer_wraps_the_update(tmp_path):
    """post_step gets the step's inputs and count; optimizer(tx) replaces the update rule."""
    cfg = _cfg(reference_tasks="none", checkpoint_every=0)
    calls = []

    def post_step(params, opt_state, xb, key, step):
        jax.debug.callback(lambda s, n: calls.append((int(s), int(n))), step, xb.shape[0])
        return params, opt_state

    frozen = training.Hooks(post_step=post_step,
                            optimizer=lambda tx: optax.chain(tx, optax.scale(0.0)))
    run = training.train_run(cfg, tmp_path / "frozen", progress=False, hooks=frozen)
    steps = cfg.train.steps_per_task * cfg.stream.num_tasks
    assert sorted(calls) == [(s, cfg.train.batch_size) for s in range(steps)]
    assert_trees_equal(run.params(0), run.params(-1))  # a zero-scaled update never moves them


def test_manifest_config_has_method_only_when_set():
    cfg = _cfg()
    assert "method" not in cfg.to_dict()  # runs written before methods existed still resume
    assert "loss" not in cfg.to_dict()["train"]  # nor before regression existed
    assert _cfg(loss="mse").to_dict()["train"]["loss"] == "mse"
    with_method = training.RunConfig(seed=cfg.seed, model=cfg.model, stream=cfg.stream,
                                     train=cfg.train, method={"name": "l2", "lam": 0.1})
    assert with_method.to_dict()["method"] == {"name": "l2", "lam": 0.1}


def test_minibatch_order_is_a_permutation_per_epoch():
    idx = training.minibatch_indices(0, 2, num_train=50, batch_size=10, start=0, stop=10)
    assert sorted(idx[:5].ravel()) == list(range(50))
    assert sorted(idx[5:].ravel()) == list(range(50))
    np.testing.assert_array_equal(
        training.minibatch_indices(0, 2, 50, 10, 3, 7), idx[3:7])
    assert not np.array_equal(training.minibatch_indices(0, 3, 50, 10, 0, 5), idx[:5])


@pytest.mark.parametrize("bad, message", [
    (dict(optimizer="lion"), "optimizer"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(epochs_per_task=2.0), "not both"),
    (dict(reference_tasks="some"), "reference_tasks"),
    (dict(reference_tasks="every:\u00b2"), "reference_tasks"),  # '²'.isdigit(), int('²') fails
    (dict(reference_tasks="every:0"), "reference_tasks"),
])
def test_train_config_errors(bad, message):
    with pytest.raises(NtkplastError, match=message):
        _cfg(**bad)


def test_epochs_per_task_and_reference_sets():
    cfg = training.TrainConfig(steps_per_task=None, epochs_per_task=1.5, batch_size=16)
    assert cfg.steps_for(100) == 10
    assert set(training.reference_task_set("every:5", 12)) == {0, 5, 10}
    assert set(training.reference_task_set("all", 3)) == {0, 1, 2}
    assert set(training.reference_task_set([1, 30], 12)) == {1}


@pytest.mark.parametrize("value", ["all", "every:2"])
def test_reference_tasks_of_a_huge_stream_take_no_memory(value):
    """stream.num_tasks = 10**9 passes the size checks at one step per task; the reference
    tasks must not be a set of 10**9 indices (3.4 GiB, issue 35 item 9)."""
    tracemalloc.start()
    refs = training.reference_task_set(value, 10**9)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 16
    assert 0 in refs and 999_999_998 in refs and 10**9 not in refs
    assert (999_999_999 in refs) == (value == "all")


def test_cnn_on_split_digits(tmp_path):
    """The CNN trains on a split stream; the shared head sees only the task's classes."""
    cfg = training.RunConfig(
        seed=0,
        model=models.ArchSpec(kind="cnn", widths=(8,), dense_widths=(16,), num_outputs=10),
        stream=streams.StreamSpec(kind="split", dataset="digits", num_tasks=2,
                                  classes_per_task=2),
        train=training.TrainConfig(learning_rate=3e-3, steps_per_task=60, batch_size=16))
    run = training.train_run(cfg, tmp_path, progress=False)
    assert run.manifest["tasks"][0]["test_accuracy"] > 0.9
    assert run.params(-1)[0]["W"].shape == (3, 3, 1, 8)
