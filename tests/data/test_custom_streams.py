"""User-defined task streams: the protocol, arrays → stream, regression with its own metrics."""

import dataclasses

import numpy as np
import pytest
from trees import assert_trees_equal

from ntkplast import analysis, models, training
from ntkplast.data import custom, streams
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints

SPEC = streams.StreamSpec(kind="permuted", dataset="digits", num_tasks=2)
CFG = training.RunConfig(seed=2, model=models.ArchSpec(widths=(16,), num_outputs=10),
                         stream=SPEC,
                         train=training.TrainConfig(batch_size=16, steps_per_task=10,
                                                    checkpoint_every=5, reference_tasks=[1]))


def test_array_stream_of_the_builtin_tasks_trains_identically(tmp_path):
    builtin = streams.make_stream(SPEC)
    arrays = custom.ArrayStream(
        [(t.x_train, t.y_train, t.x_test, t.y_test) for t in builtin], name="digits-copy")
    assert isinstance(arrays, custom.Stream) and not arrays.regression
    assert arrays.num_classes == 10 and arrays.input_shape == builtin.input_shape
    ref = training.train_run(CFG, tmp_path / "builtin", progress=False)
    own = training.train_run(CFG, tmp_path / "own", stream=arrays, progress=False)
    assert_trees_equal(ref.params(-1), own.params(-1))
    assert own.manifest["stream"] == {"custom": "digits-copy"}
    assert own.manifest["config"]["stream"] is None and "stream" not in ref.manifest
    assert own.manifest["tasks"][1]["test_accuracy"] == ref.manifest["tasks"][1]["test_accuracy"]
    # the tasks cannot be rebuilt from the manifest: the probe must be given
    with pytest.raises(NtkplastError, match="custom stream.*--probe"):
        analysis.analyze(tmp_path / "own", analysis.Settings(metrics=("dormancy",)),
                         progress=False)
    probe = tmp_path / "probe.npz"
    checkpoints.save_arrays(probe, {"x": builtin[0].x_test[:16]})
    table = analysis.analyze(tmp_path / "own", analysis.Settings(
        metrics=("dormancy", "plasticity"), probe=str(probe)), progress=False)
    assert "test_accuracy" in set(table.columns["metric"].tolist())


def _regression_tasks(num_tasks=3, n=96, d=5, k=2, seed=0):
    """Task t: y = x A_t + noise, a fresh linear map per task (a non-stationary regression)."""
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(num_tasks):
        a = rng.standard_normal((d, k))
        x = rng.standard_normal((2 * n, d)).astype(np.float32)
        y = (x @ a + 0.05 * rng.standard_normal((2 * n, k))).astype(np.float32)
        tasks.append((x[:n], y[:n], x[n:], y[n:]))
    return tasks


def test_regression_stream_reports_mean_squared_errors(tmp_path):
    stream = custom.ArrayStream(_regression_tasks(), name="linear-maps")
    assert stream.regression and stream.num_classes == 2
    cfg = training.RunConfig(seed=0, model=models.ArchSpec(widths=(32,), num_outputs=2),
                             train=training.TrainConfig(loss="mse", learning_rate=1e-2,
                                                        batch_size=16, steps_per_task=60,
                                                        reference_tasks=[2]))
    run = training.train_run(cfg, tmp_path / "reg", stream=stream, progress=False)
    tasks = run.manifest["tasks"]
    assert "test_accuracy" not in tasks[0]
    for t, record in enumerate(tasks):
        task_end = [i for i, c in enumerate(run.checkpoints) if c.kind == "task_end"][t]
        params = run.params(task_end)
        out = np.asarray(run.model.apply(params, stream[t].x_test), np.float64)
        mse = np.mean((out - stream[t].y_test) ** 2)  # independent of the trainer's evaluate
        assert record["test_mse"] == pytest.approx(mse, rel=1e-4)
        assert len(record["mse_on_tasks"]) == t + 1
        # one chunk per task: the online error is the mean of the per-step losses
        assert record["online_mse"] == pytest.approx(run.checkpoints[task_end].metrics["loss"],
                                                     rel=1e-5)
    # learning happens within a task, and the plasticity loss is run error − reference error
    assert tasks[0]["test_mse"] < np.mean(np.square(stream[0].y_test))
    r = tasks[2]
    assert r["plasticity_loss"] == pytest.approx(r["test_mse"] - r["reference_test_mse"])
    table = analysis.analyze(tmp_path / "reg", analysis.Settings(
        metrics=("ntk", "plasticity"), probe=_probe(tmp_path, stream), probe_size=16),
        progress=False)
    from ntkplast.experiments import grid as experiment

    assert experiment.per_task([table], "test_mse").shape == (1, 3)


def _probe(tmp_path, stream):
    path = tmp_path / "probe.npz"
    checkpoints.save_arrays(path, {"x": stream[0].x_test[:16]})
    return str(path)


def test_custom_stream_resumes_bit_identically(tmp_path):
    stream = custom.ArrayStream(_regression_tasks(2))
    cfg = training.RunConfig(seed=1, model=models.ArchSpec(widths=(8,), num_outputs=2),
                             train=training.TrainConfig(loss="mse", batch_size=16, steps_per_task=9,
                                                        checkpoint_every=4))
    full = training.train_run(cfg, tmp_path / "full", stream=stream, progress=False)
    training.train_run(cfg, tmp_path / "cut", stream=stream, progress=False, stop_after_chunks=4)
    cut = training.train_run(cfg, tmp_path / "cut", stream=stream, progress=False, resume=True)
    assert_trees_equal(full.params(-1), cut.params(-1))


def test_stream_mismatches_are_named():
    reg = custom.ArrayStream(_regression_tasks(1))
    cls = streams.make_stream(SPEC)
    with pytest.raises(NtkplastError, match="train.loss = 'mse'"):
        custom.check_stream(reg, SPEC, 2, "cross_entropy")
    with pytest.raises(NtkplastError, match="train.loss = 'cross_entropy'"):
        custom.check_stream(cls, SPEC, 10, "mse")
    with pytest.raises(NtkplastError, match="num_outputs = 3.*10"):
        custom.check_stream(cls, SPEC, 3, "cross_entropy")
    with pytest.raises(NtkplastError, match="lacks"):
        custom.check_stream([1, 2], SPEC, 10, "cross_entropy")
    assert not custom.check_stream(cls, SPEC, 10, "cross_entropy")
    other = dataclasses.replace(SPEC, seed=5)
    assert custom.check_stream(cls, other, 10, "cross_entropy")  # not what cfg says
    with pytest.raises(NtkplastError, match="train.loss"):
        training.TrainConfig(loss="hinge")
    assert CFG.train.loss == "cross_entropy"


@pytest.mark.parametrize("tasks, fragment", [
    ([], "at least one task"),
    ([(np.ones((4, 3)), np.zeros(4, int), np.ones((2, 3)))], "x_train, y_train"),
    ([(np.ones((4, 3)), np.zeros(5, int), np.ones((2, 3)), np.zeros(2, int))], "one row"),
    ([(np.ones((4, 3)), np.zeros(4, int), np.ones((2, 3)), np.zeros(2, int)),
      (np.ones((4, 2)), np.zeros(4, int), np.ones((2, 2)), np.zeros(2, int))], "shares one"),
    ([(np.ones((4, 3)), np.zeros(4, int), np.ones((2, 3)), np.zeros(2)),
      ], "integer labels .classification. or all floats"),
    ([(np.ones((4, 3)), -np.ones(4, int), np.ones((2, 3)), np.zeros(2, int))], "non-negative"),
    ([(np.full((4, 3), np.nan), np.zeros(4, int), np.ones((2, 3)), np.zeros(2, int))],
     "finite"),
])
def test_array_stream_rejects_bad_tasks(tasks, fragment):
    with pytest.raises(NtkplastError, match=fragment):
        custom.ArrayStream(tasks)
