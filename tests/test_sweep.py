"""Sweeps: a grid file expands into deterministic run folders, re-runs skip, summaries join."""

import csv

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast import checkpoints
from ntkplast.errors import NtkplastError
from ntkplast.experiments import report, sweep

GRID = """
seeds = [0, 3]
[config.model]
widths = [8]
[config.stream]
num_tasks = 2
[config.train]
batch_size = 16
steps_per_task = 4
reference_tasks = "none"
[methods.adam]
[methods.l2]
name = "l2"
lam = 0.01
[axes]
"train.learning_rate" = [1e-3, 1e-2]
[analysis]
probe_size = 8
metrics = ["dormancy", "plasticity"]
"""


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
