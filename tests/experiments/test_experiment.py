"""Methods × seeds grids, per-task arrays and the comparison figures."""

import dataclasses

import numpy as np
import pytest
from trees import assert_trees_equal

from ntkplast import analysis, figures, models, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.experiments import grid as experiment
from ntkplast.runs import checkpoints
from ntkplast.table import Table

BASE = training.RunConfig(
    model=models.ArchSpec(widths=(12,), num_outputs=10),
    stream=streams.StreamSpec(kind="permuted", dataset="digits", num_tasks=2),
    train=training.TrainConfig(batch_size=16, steps_per_task=6, checkpoint_every=3))
METHODS = {"baseline": {}, "l2": {"name": "l2", "lam": 0.01}}
SETTINGS = analysis.Settings(metrics=("dormancy", "plasticity"), probe_size=16)


def test_grid_trains_every_method_and_seed_and_skips_finished_runs(tmp_path):
    res = experiment.run_grid(BASE, METHODS, (0, 1), tmp_path, settings=SETTINGS,
                              progress=False)
    assert res.seeds == (0, 1) and set(res.tables) == set(METHODS)
    for name, method in METHODS.items():
        for seed, run_dir in zip(res.seeds, res.run_dirs[name]):
            assert run_dir == tmp_path / name / f"seed{seed}"
            cfg = checkpoints.open_run(run_dir).manifest["config"]
            assert cfg["seed"] == seed and cfg.get("method", {}) == method
        assert len(res.tables[name]) == 2
    # the method matters: the same seed under L2 ends with smaller weights
    w = {n: np.linalg.norm(checkpoints.open_run(res.run_dirs[n][0]).params(-1)[0]["W"])
         for n in METHODS}
    assert w["l2"] < w["baseline"]
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npz")}
    experiment.run_grid(BASE, METHODS, (0, 1), tmp_path, analyze=False, progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npz")} == stamp


def test_grid_resumes_an_interrupted_run_bit_identically(tmp_path):
    cfg = dataclasses.replace(BASE, seed=5, method={"name": "l2", "lam": 0.01})
    full = training.train_run(cfg, tmp_path / "full", progress=False)
    training.train_run(cfg, tmp_path / "grid" / "l2" / "seed5", progress=False, stop_after_chunks=2)
    res = experiment.run_grid(BASE, {"l2": cfg.method}, (5,), tmp_path / "grid", analyze=False,
                              progress=False)
    resumed = checkpoints.open_run(res.run_dirs["l2"][0])
    assert resumed.complete
    assert_trees_equal(full.params(-1), resumed.params(-1))


def test_grid_refuses_a_folder_of_another_grid_and_bad_names(tmp_path):
    experiment.run_grid(BASE, {"a": {}}, (0,), tmp_path, analyze=False, progress=False)
    with pytest.raises(NtkplastError, match="different configuration"):
        experiment.run_grid(BASE, {"a": {"name": "l2"}}, (0,), tmp_path, analyze=False,
                            progress=False)
    with pytest.raises(NtkplastError, match="folder name"):
        experiment.run_grid(BASE, {"../up": {}}, (0,), tmp_path, progress=False)
    with pytest.raises(NtkplastError, match="distinct seeds"):
        experiment.run_grid(BASE, {"a": {}}, (1, 1), tmp_path, progress=False)


def _table(values_by_task, metric="m", layers=("all",), extra_checkpoints=True):
    """Task t ends at checkpoint 2t+1; checkpoints 2t are mid-task (no test_accuracy)."""
    rows = []
    for t, value in enumerate(values_by_task):
        end = 2 * t + 1
        rows.append((end, 10 * end, t, "all", "test_accuracy", 0.5))
        for li, layer in enumerate(layers):
            rows.append((end, 10 * end, t, layer, metric, value + li))
            if extra_checkpoints:
                rows.append((end - 1, 10 * end - 5, t, layer, metric, -99.0))
    return Table.from_rows(rows)


def test_per_task_reads_task_ends_and_pads():
    got = experiment.per_task([_table([1.0, 2.0, 3.0]), _table([4.0, 5.0])], "m")
    np.testing.assert_array_equal(got[0], [1, 2, 3])
    np.testing.assert_array_equal(got[1, :2], [4, 5])
    assert np.isnan(got[1, 2])
    with pytest.raises(NtkplastError, match="task-end"):
        experiment.per_task([Table.from_rows([(0, 0, 0, "all", "m", 1.0)])], "m")


def test_task_values_layer_mean_and_running_mean():
    t = _table([1.0, 3.0, 8.0], layers=("layer0", "layer1"))
    np.testing.assert_allclose(figures.task_values([t], "m", "mean")[0], [1.5, 3.5, 8.5])
    np.testing.assert_allclose(figures.task_values([t], "running_m", "layer0")[0],
                               [1.0, 2.0, 4.0])


def test_mean_interval_is_importable_from_experiment_and_is_student_t():
    from scipy import stats as sps

    v = np.random.default_rng(0).standard_normal((8, 5))
    mean, low, high = experiment.mean_interval(v)
    np.testing.assert_allclose(mean, v.mean(0))
    want = sps.t.interval(0.95, 7, loc=v.mean(0), scale=sps.sem(v, axis=0))
    np.testing.assert_allclose(low, want[0], rtol=1e-12)
    np.testing.assert_allclose(high, want[1], rtol=1e-12)

def test_comparison_figures_draw_one_band_per_method(tmp_path):
    tables = {"a": [_table([0.9, 0.8]), _table([0.7, 0.6])],
              "b": [_table([0.5, 0.4])]}
    fig = figures.per_task_panels(tables, [("m", "all", "m", False),
                                           ("absent", "all", "nothing", False)], ncols=2)
    ax, empty = fig.axes[:2]
    assert [line.get_label() for line in ax.get_lines()] == ["a (R = 2)", "b (R = 1)"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.8, 0.7])
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.5, 0.4])
    assert len(ax.collections) == 1  # a band for the two-seed method only
    assert "no absent" in empty.texts[0].get_text()
    paths = figures.save(fig, tmp_path / "cmp")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size for p in paths)
    with pytest.raises(NtkplastError, match="non-empty list"):
        figures.plasticity_curves({"a": []})


def test_plasticity_curves_mark_both_references_where_they_were_run():
    # plasticity_score exists only at task ends (it marks them), so no mid-task rows of it
    with_ref = Table.concat([_table([0.9, 0.8], metric="plasticity_score",
                                    extra_checkpoints=False), Table.from_rows(
        [(3, 30, 1, "all", "reference_score", 0.95), (3, 30, 1, "all", "baseline_score", 0.7)])])
    fig = figures.plasticity_curves({"a": [with_ref], "b": [_table(
        [0.5, 0.4], metric="plasticity_score", extra_checkpoints=False)]})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert {k for k in lines if "reference" in k or "baseline" in k} == {
        "own reference (a)", "common baseline"}
    for label, want in (("own reference (a)", 0.95), ("common baseline", 0.7)):
        np.testing.assert_array_equal(lines[label].get_xdata(), [1])
        np.testing.assert_array_equal(lines[label].get_ydata(), [want])


def test_final_tasks_interval_averages_the_last_tasks_then_seeds():
    v = np.array([[0.0, 1.0, 2.0, np.nan], [5.0, 5.0, 4.0, 6.0]])
    mean, low, high = experiment.final_tasks_interval(v, 2)
    assert mean == pytest.approx(np.mean([2.0, 5.0]))  # seed 0: its one finite late value
    from scipy import stats as sps
    assert (low, high) == pytest.approx(sps.t.interval(0.95, 1, loc=3.5, scale=1.5))


def test_demo_summary_of_a_spread_positive_metric_is_geometric_and_stays_positive():
    """The demo's condition-number line: a t-interval of the log, mapped back (scipy's t on
    hand-computed per-seed log means), positive where the raw-scale interval reaches below 0."""
    from scipy import stats as sps

    from ntkplast.experiments import demo

    seeds = [[1e2] * 5, [3e2] * 5, [1e5] * 5]
    tables = {"m": [_table(v) for v in seeds]}
    raw = demo._summary(tables, "m")["m"]
    assert raw[1] < 0  # the raw t-interval of a heavy-tailed positive quantity
    logs = np.log([1e2, 3e2, 1e5])
    want = np.exp([logs.mean(), *sps.t.interval(0.95, 2, loc=logs.mean(),
                                                scale=sps.sem(logs))])
    np.testing.assert_allclose(demo._summary(tables, "m", log=True)["m"], want, rtol=1e-12)


def test_log_panels_draw_the_geometric_mean_and_a_positive_band():
    """A log-scale panel: line exp(mean log v), band the t-interval of log v mapped back."""
    from scipy import stats as sps

    seeds = [[1e2, 10.0], [3e2, 20.0], [1e5, 40.0]]
    fig = figures.per_task_panels({"a": [_table(v) for v in seeds]}, [("m", "all", "m", True)],
                                  ncols=1)
    ax = fig.axes[0]
    logs = np.log(np.asarray(seeds))
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.exp(logs.mean(0)), rtol=1e-12)
    low, high = sps.t.interval(0.95, 2, loc=logs.mean(0), scale=sps.sem(logs, axis=0))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() > 0
    np.testing.assert_allclose([band.min(), band.max()],
                               [np.exp(low).min(), np.exp(high).max()], rtol=1e-12)
    assert ax.get_yscale() == "log" and "geometric mean" in ax.get_ylabel()


def test_bands_of_unit_interval_quantities_stay_inside_it():
    """A kernel distance near 0 over widely spread seeds: the raw t-interval reaches below 0,
    the drawn band is clipped to [0, 1]; an unbounded metric keeps its raw interval."""
    from scipy import stats as sps

    seeds = [[0.001, 0.5], [0.002, 0.6], [0.2, 0.99]]
    low = sps.t.interval(0.95, 2, loc=np.mean(seeds, 0), scale=sps.sem(seeds, axis=0))[0]
    assert low.min() < 0
    for metric, clipped in (("kernel_distance_init", True), ("m", False)):
        fig = figures.per_task_panels({"a": [_table(v, metric=metric) for v in seeds]},
                                      [(metric, "all", metric, False)], ncols=1)
        band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
        assert (band.min() >= 0) == clipped
        assert band.max() <= 1 or not clipped


def test_theory_panels_mark_task_ends_with_a_condition_number_at_the_floor():
    def run(cond, floor):
        return Table.concat([_table(cond, metric="ntk_condition"),
                             _table(floor, metric="ntk_condition_at_floor")])
    tables = {"a": [run([1e3, 6.5e4], [0.0, 1.0]), run([2e3, 3e3], [0.0, 0.0])]}
    ax = figures.theory_panels(tables).axes[0]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [1]
    np.testing.assert_allclose(marks[0].get_ydata(), [np.sqrt(6.5e4 * 3e3)])
    clean = figures.theory_panels({"a": [run([1e3, 2e3], [0.0, 0.0])]}).axes[0]
    assert not [ln for ln in clean.get_lines() if ln.get_marker() == "v"]


def test_demo_summary_of_a_fraction_stays_inside_zero_one():
    from ntkplast.experiments import demo

    tables = {"m": [_table(v, metric="dead_fraction") for v in ([0.0] * 5, [0.0] * 5, [0.3] * 5)]}
    mean, low, high = demo._summary(tables, "dead_fraction")["m"]
    assert low == 0.0 and 0 < mean < high <= 1
    raw = experiment.final_tasks_interval(np.array([[0.0] * 5, [0.0] * 5, [0.3] * 5]), 5)
    assert raw[1] < 0   # what the unclipped t-interval claims
