"""Sweeps: a grid file expands into deterministic run folders, re-runs skip, summaries join."""

import csv
import json
import math
import re

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast.errors import NtkplastError
from ntkplast.experiments import report, selection, sweep
from ntkplast.runs import checkpoints
from ntkplast.table import Table, per_task


def _grid(seeds, num_tasks, reference_tasks, l2_options, rest):
    """A grid file of tiny runs (an 8-unit MLP, 4 steps of 16 examples a task) with methods
    adam and l2; ``l2_options`` are l2's lines after its name, ``rest`` the sections that
    follow (``[axes]``, ``[analysis]``, …)."""
    return f"""
seeds = {seeds}
[config.model]
widths = [8]
[config.stream]
num_tasks = {num_tasks}
[config.train]
batch_size = 16
steps_per_task = 4
reference_tasks = "{reference_tasks}"
[methods.adam]
[methods.l2]
name = "l2"
{l2_options}{rest}"""


GRID = _grid("[0, 3]", 2, "none", "lam = 0.01\n", """\
[axes]
"train.learning_rate" = [1e-3, 1e-2]
[analysis]
probe_size = 8
metrics = ["dormancy", "plasticity"]
""")


def _write(tmp_path, text=GRID, name="grid.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sweep_expands_trains_and_joins(tmp_path):
    results = sweep.run_sweep(_write(tmp_path), tmp_path / "out", progress=False)
    assert list(results) == ["train.learning_rate=0.001", "train.learning_rate=0.01"]
    for point, lr in zip(results, (1e-3, 1e-2)):
        for method in ("adam", "l2"):
            for seed in (0, 3):
                run = checkpoints.open_run(tmp_path / "out" / point / method / f"seed{seed}")
                cfg = run.manifest["config"]
                assert run.complete and cfg["seed"] == seed
                assert cfg["train"]["learning_rate"] == lr and cfg["model"]["widths"] == [8]
                assert cfg.get("method", {}).get("name", "adam") == method
    with open(tmp_path / "out" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    expected = sum(len(t) for r in results.values() for ts in r.tables.values() for t in ts)
    assert len(rows) == expected
    assert {(r["point"], r["method"], r["seed"]) for r in rows} == {
        (p, m, s) for p in results for m in ("adam", "l2") for s in ("0", "3")}
    # a summary row carries the run's own value
    table = results["train.learning_rate=0.01"].tables["l2"][1]
    sel = table.select("test_accuracy")
    got = [float(r["value"]) for r in rows if r["point"] == "train.learning_rate=0.01"
           and r["method"] == "l2" and r["seed"] == "3" and r["metric"] == "test_accuracy"]
    np.testing.assert_allclose(got, sel.columns["value"])
    # the report groups the sweep's runs by point and method
    groups = report.find_runs(tmp_path / "out")
    assert set(groups) == {f"{p}/{m}" for p in results for m in ("adam", "l2")}
    assert all([r.name for r in runs] == ["seed0", "seed3"] for runs in groups.values())


def test_rerun_skips_finished_runs_and_refuses_another_grid(tmp_path):
    grid = _write(tmp_path)
    sweep.run_sweep(grid, tmp_path / "out", analyze=False, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.npz")}
    sweep.run_sweep(grid, tmp_path / "out", analyze=False, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.npz")} == stamp
    other = _write(tmp_path, GRID.replace("seeds = [0, 3]", "seeds = 2"), "other.toml")
    with pytest.raises(NtkplastError, match="another grid"):
        sweep.run_sweep(other, tmp_path / "out", progress=False)


@pytest.mark.parametrize("text, fragment", [
    (GRID + "\nsweeps = 1\n", "unknown key"),
    (GRID.replace("seeds = [0, 3]", "seeds = [1, 1]"), "distinct"),
    (GRID.replace('"train.learning_rate"', '"train.learnin_rate"'), "learnin_rate"),
    (GRID.replace('name = "l2"', 'name = "l3"'), "methods.l2"),
    (GRID.replace("probe_size = 8", "probe_size = 'many'"), "analysis"),
    (GRID.replace("[1e-3, 1e-2]", "1e-3"), "non-empty list"),
    (GRID.replace('"train.learning_rate" = [1e-3, 1e-2]',
                  '"model.widths" = [[8], [1000000000, 1000000000]]'), "model.widths.*GiB"),
    (GRID.replace('"train.learning_rate" = [1e-3, 1e-2]', '"train.batch_size" = [16, 99999]'),
     "batch"),
])
def test_bad_grids_fail_before_anything_is_written(tmp_path, text, fragment):
    with pytest.raises(NtkplastError, match=fragment):
        sweep.run_sweep(_write(tmp_path, text), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_sweep_error_is_one_line(tmp_path):
    _write(tmp_path, GRID.replace("seeds = [0, 3]", "seeds = -1"))
    assert_one_line_error(run_cli("sweep", "grid.toml", cwd=tmp_path), "seeds")


def _summary(out):
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_vectorised_seeds_give_the_sequential_sweep(tmp_path):
    """Each method's seeds trained in one vmapped program: the same runs, folders and joined
    table as the sequential sweep, values equal to float rounding."""
    grid = _write(tmp_path)
    sweep.run_sweep(grid, tmp_path / "seq", progress=False)
    results = sweep.run_sweep(grid, tmp_path / "vec", progress=False, vectorise_seeds=True)
    run = checkpoints.open_run(tmp_path / "vec" / "train.learning_rate=0.01" / "l2" / "seed3")
    assert run.manifest["vectorised_seeds"] == [0, 3]
    assert results["train.learning_rate=0.01"].seeds == (0, 3)
    seq, vec = _summary(tmp_path / "seq"), _summary(tmp_path / "vec")
    key = [k for k in seq[0] if k != "value"]
    assert [[r[k] for k in key] for r in seq] == [[r[k] for k in key] for r in vec]
    np.testing.assert_allclose([float(r["value"]) for r in vec],
                               [float(r["value"]) for r in seq], rtol=1e-4, atol=1e-5)


def test_sweep_on_a_local_ray_instance_equals_the_local_sweep(tmp_path, local_ray):
    """One Ray task per run, in Ray's worker processes: the same folders and the same bytes of
    summary.csv as running the jobs here."""
    from ntkplast.experiments import executors

    grid = _write(tmp_path)
    sweep.run_sweep(grid, tmp_path / "local", progress=False)
    sweep.run_sweep(grid, tmp_path / "ray", progress=False,
                    executor=executors.RayExecutor())
    assert (tmp_path / "ray" / "summary.csv").read_bytes() == \
        (tmp_path / "local" / "summary.csv").read_bytes()
    def files(out):
        return sorted(p.relative_to(out) for p in out.rglob("*.npz"))

    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_cli_sweep_execution_flags(tmp_path):
    _write(tmp_path)
    assert_one_line_error(run_cli("sweep", "grid.toml", "--ray-address", "auto", cwd=tmp_path),
                          "--executor ray")
    assert_one_line_error(run_cli("sweep", "grid.toml", "--ray-gpus", "1", cwd=tmp_path),
                          "--ray-gpus", "--executor ray")
    try:
        import ray  # noqa: F401
    except ImportError:  # the core environment: the ray executor says what to install
        assert_one_line_error(run_cli("sweep", "grid.toml", "--executor", "ray", cwd=tmp_path),
                              "ntkplast[ray]")
    proc = run_cli("sweep", "grid.toml", "--vectorise-seeds", "--no-progress", "--no-analysis",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = checkpoints.open_run(tmp_path / "runs" / "grid" / "train.learning_rate=0.001" / "adam"
                               / "seed0")
    assert run.complete and run.manifest["vectorised_seeds"] == [0, 3]


SELECT = _grid("[0, 1]", 3, "all", "", """\
[axes]
"methods.l2.lam" = [3.0, 1e-3]
[analysis]
probe_size = 8
metrics = ["plasticity", "ntk"]
[selection]
seeds = [5, 7]
last = 2
""")
L2_POINTS = ["method.lam=3.0", "method.lam=0.001"]  # in file order


def test_method_axes_expand_per_method(tmp_path):
    """A method runs at the config axes' values × its own axes' values, in file order; the
    other methods only at the config axes' values."""
    grid = sweep.load_grid(_write(tmp_path, GRID.replace(
        '"train.learning_rate" = [1e-3, 1e-2]',
        '"methods.l2.lam" = [0.5, 2]\n"train.learning_rate" = [1e-3, 1e-2]')))
    assert [p.name for p in sweep.expand(grid, "adam")] == [p.name for p in sweep.expand(grid)]
    assert [p.name for p in sweep.expand(grid)] == ["train.learning_rate=0.001",
                                                    "train.learning_rate=0.01"]
    l2 = sweep.expand(grid, "l2")
    assert [p.name for p in l2] == [
        "method.lam=0.5,train.learning_rate=0.001", "method.lam=0.5,train.learning_rate=0.01",
        "method.lam=2,train.learning_rate=0.001", "method.lam=2,train.learning_rate=0.01"]
    assert l2[3].options == {"lam": 2} and l2[3].overrides == ["train.learning_rate=0.01"]
    assert sweep.point_config(grid, l2[3], "g").train.learning_rate == 1e-2


@pytest.mark.parametrize("means, goal, best", [
    ([0.3, 0.1, 0.2], "min", 1), ([0.3, 0.1, 0.2], "max", 0), ([0.2, 0.1, 0.1], "min", 1),
    ([math.nan, 0.5, -math.inf], "min", 1), ([math.nan, math.nan], "min", None)])
def test_choose_takes_the_first_best_finite_mean(means, goal, best):
    assert selection.choose(means, goal) == best


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    """The selection sweep of ``SELECT``, run once: its grid file and folder."""
    root = tmp_path_factory.mktemp("select")
    grid = _write(root, SELECT)
    sweep.run_sweep(grid, root / "out", progress=False)
    return grid, root / "out"


def _run_folders(out):
    return {p.parent.relative_to(out).as_posix() for p in out.rglob(checkpoints.MANIFEST)}


def test_selection_runs_on_its_seeds_then_evaluates_the_argmin(selected):
    """Every point of l2 runs on the selection seeds only; the chosen point is the argmin of
    the mean over those seeds of each run's mean plasticity loss over its last 2 tasks,
    recomputed here from the runs' tables; only the chosen point runs on the evaluated seeds;
    adam, with one point, has nothing to select and runs only there."""
    _, out = selected
    scores = {p: [float(np.nanmean(per_task([Table.read_csv(
                  out / "selection" / p / "l2" / f"seed{s}" / "analysis" / "metrics.csv")],
                  "plasticity_loss_baseline")[0, -2:])) for s in (5, 7)] for p in L2_POINTS}
    means = [np.mean(scores[p]) for p in L2_POINTS]
    assert np.all(np.isfinite(means)) and means[0] != means[1]
    chosen = L2_POINTS[int(np.argmin(means))]
    record = json.loads((out / "selection.json").read_text())
    assert record["methods"]["l2"]["chosen"] == chosen
    assert record["methods"]["l2"]["score"] == pytest.approx(min(means))
    for p in L2_POINTS:
        np.testing.assert_allclose(record["methods"]["l2"]["points"][p]["scores"], scores[p])
    assert record["methods"]["adam"] == {"chosen": "base", "score": None, "points": {}}
    assert {k: record[k] for k in ("metric", "last", "goal", "selection_seeds", "seeds")} == {
        "metric": "plasticity_loss_baseline", "last": 2, "goal": "min",
        "selection_seeds": [5, 7], "seeds": [0, 1]}
    assert _run_folders(out) == (
        {f"selection/{p}/l2/seed{s}" for p in L2_POINTS for s in (5, 7)}
        | {f"base/adam/seed{s}" for s in (0, 1)} | {f"{chosen}/l2/seed{s}" for s in (0, 1)})
    lam = float(chosen.partition("=")[2])
    for s in (0, 1):
        cfg = checkpoints.open_run(out / chosen / "l2" / f"seed{s}").manifest["config"]
        assert cfg["seed"] == s and cfg["method"] == {"name": "l2", "lam": lam}
    assert {(r["point"], r["method"], r["seed"]) for r in _summary(out)} == {
        ("base", "adam", "0"), ("base", "adam", "1"), (chosen, "l2", "0"), (chosen, "l2", "1")}


def test_selection_rerun_is_idempotent_and_the_cli_prints_the_choice(selected):
    grid, out = selected
    first = (out / "selection.json").read_bytes()

    def trained():  # checkpoints' times (the analysis rewrites its own files)
        return {p: p.stat().st_mtime_ns for p in out.rglob("*.npz") if "analysis" not in p.parts}

    stamp = trained()
    assert len(stamp) >= 8
    proc = run_cli("sweep", grid.name, "--out", out.name, "--no-progress", cwd=grid.parent)
    assert proc.returncode == 0, proc.stderr
    chosen = json.loads(first)["methods"]["l2"]["chosen"]
    assert re.search(rf"selected for l2: {re.escape(chosen)}, mean plasticity_loss_baseline "
                     rf"over the last 2 tasks [+-][0-9.e+-]+ \(min of 2 points; R = 2 selection "
                     rf"seeds \[5, 7\]\)", proc.stdout), proc.stdout
    assert "selected for adam: base (its only point" in proc.stdout
    assert (out / "selection.json").read_bytes() == first
    assert trained() == stamp


@pytest.mark.parametrize("text, fragment", [
    (SELECT.replace("seeds = [5, 7]", "seeds = [1, 7]"),
     r"selection.seeds \[1, 7\] and the evaluated seeds \[0, 1\] share \[1\]"),
    (SELECT.replace("seeds = [5, 7]", "seeds = 2"), "selection.seeds must be a list"),
    (SELECT.replace("seeds = [5, 7]", "seeds = [5, 5]"), "selection.seeds must be a list"),
    (SELECT + 'goal = "median"\n', "selection.goal must be one of"),
    (SELECT + "metrc = 'x'\n", r"selection: unknown key\(s\) \['metrc'\]"),
    (SELECT.replace("last = 2", "last = 0"), "selection.last must be an integer >= 1"),
    (SELECT.replace('"methods.l2.lam" = [3.0, 1e-3]', ""), "nothing to select"),
    (SELECT.replace('"methods.l2.lam" = [3.0, 1e-3]', '"methods.l2.lam" = [1e-3]'),
     "nothing to select"),
    (SELECT.replace('"methods.l2.lam"', '"method.lam"'), "methods.<name>.lam"),
    (SELECT.replace('"methods.l2.lam"', '"methods.l3.lam"'), "methods.<name>.<option>"),
    (SELECT.replace('"methods.l2.lam"', '"methods.adam.lam"'),
     r"point method.lam=3.0: .*unknown option"),
])
def test_bad_selection_grids_fail_naming_the_file(tmp_path, text, fragment):
    with pytest.raises(NtkplastError, match=fragment) as e:
        sweep.run_sweep(_write(tmp_path, text), tmp_path / "out", progress=False)
    assert "grid.toml" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_selection_needs_the_analysis(tmp_path):
    with pytest.raises(NtkplastError, match="grid.toml.*analysis"):
        sweep.run_sweep(_write(tmp_path, SELECT), tmp_path / "out", analyze=False,
                        progress=False)
    assert not (tmp_path / "out").exists()


def test_selection_metric_missing_from_the_tables_says_what_to_do(tmp_path):
    """No reset references: the runs' tables have no plasticity loss to select on."""
    text = SELECT.replace('reference_tasks = "all"', 'reference_tasks = "none"').replace(
        '"plasticity", "ntk"', '"plasticity"')
    with pytest.raises(NtkplastError, match="metric 'plasticity_loss_baseline' is not in the "
                                            "analysis table.*train.reference_tasks"):
        sweep.run_sweep(_write(tmp_path, text), tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "selection.json").exists()
    assert not any((tmp_path / "out" / p).exists() for p in L2_POINTS)


def test_cli_sweep_overlapping_selection_seeds_is_one_line(tmp_path):
    _write(tmp_path, SELECT.replace("seeds = [5, 7]", "seeds = [0, 7]"))
    assert_one_line_error(run_cli("sweep", "grid.toml", cwd=tmp_path), "grid.toml",
                          "selection.seeds [0, 7]", "share [0]")


def test_shipped_lambda_selection_is_the_demo_setting():
    """configs/grids/select_lambda.toml: the demo's run config and methods, λ over values that
    include the demo's, selection seeds disjoint from the evaluated ones."""
    from pathlib import Path

    from ntkplast.experiments import demo

    grid = sweep.load_grid(Path(__file__).parents[2] / "configs" / "grids" /
                           "select_lambda.toml")
    assert sweep.point_config(grid, sweep.expand(grid)[0], "g") == demo.demo_config()
    for name, table in demo.DEMO_METHODS.items():
        points = sweep.expand(grid, name)
        assert [{**grid["methods"][name], **p.options} for p in points if
                p.options.get("lam") in (None, demo.DEMO_LAMBDA)] == [table]
        assert len(points) == (1 if name == "adam" else 3)
    assert grid["analysis"] == {"probe_size": demo.DEMO_PROBE_SIZE}
    assert grid["seeds"] == [0, 1, 2, 3, 4] and grid["selection"]["seeds"] == [100, 101]
