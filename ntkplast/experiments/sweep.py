"""Sweeps: a grid file expands into run folders that are trained, analysed and joined.

A grid file (TOML) names a base run config, the methods, the seeds and any hyper-parameter
axes::

    seeds = 3                      # seeds 0, 1, 2 (or a list: [0, 4, 7])
    base = "../permuted_digits.toml"  # optional run config, relative to the grid file
    [config.train]                 # optional tables over the base (model / stream / train)
    steps_per_task = 200
    [methods.adam]                 # method name -> its [method] table ({} = plain training)
    [methods.adamo]
    name = "adamo"
    lam = 0.1
    [axes]                         # optional: dotted config key -> list of values
    "train.learning_rate" = [1e-3, 3e-4]
    [analysis]                     # optional ntkplast.analysis.Settings fields
    probe_size = 128

The grid expands to every combination of axis values (a *point*, in the file's order) × method
× seed, into ``OUT/<point>/<method>/seed<k>`` where ``<point>`` is ``key=value,…`` (``base``
without axes). Each point's runs are the jobs of :func:`ntkplast.experiments.grid.grid_jobs`, all
points' jobs go to one executor, and re-running skips finished runs and resumes interrupted
ones. ``OUT/grid.json`` records the expanded grid; a
folder written for another grid is refused. ``OUT/summary.csv`` joins every run's analysis table
with columns ``point, method, seed`` in front of the table's own.

How the runs are carried out is not part of the grid: ``vectorise_seeds`` trains each method's seeds
of a point in one ``jax.vmap``-ed program, and an executor (:mod:`~ntkplast.experiments.executors`)
runs the jobs here or on a Ray cluster (``ntkplast sweep … --executor ray``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast import analysis, models, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.experiments import grid as grid_lib
from ntkplast.experiments.executors import Executor
from ntkplast.files import atomic_write_bytes
from ntkplast.lock import folder_lock
from ntkplast.plain import from_plain
from ntkplast.safe_read import CONFIG_BYTES, read_bytes
from ntkplast.table import COLUMNS
from ntkplast.training.sizes import check_sizes

__all__ = ["Point", "expand", "load_grid", "point_config", "run_sweep"]

GRID_KEYS = ("seeds", "base", "config", "methods", "axes", "analysis")


class Point:
    """One combination of axis values: its folder name and its config overrides."""

    def __init__(self, values: Sequence[tuple[str, Any]]):
        self.values = tuple(values)
        self.name = ",".join(f"{k}={_fmt(v)}" for k, v in self.values) or "base"
        self.overrides = [f"{k}={json.dumps(v)}" for k, v in self.values]

    def __repr__(self) -> str:
        return f"Point({self.name})"


def _fmt(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return "".join(c if c.isalnum() or c in "-_.=+" else "_" for c in text)


def load_grid(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a grid file; returns its plain data with ``base`` resolved to a path."""
    path = Path(path)
    grid = training.read_toml(path)
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise NtkplastError(f"{path}: unknown key(s) {unknown}; a grid has {list(GRID_KEYS)}")
    seeds = grid.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        seeds = list(range(seeds))
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in seeds) or len(set(seeds)) != len(seeds)):
        raise NtkplastError(f"{path}: seeds must be a positive count or a list of distinct "
                            f"non-negative integers, got {grid.get('seeds')!r}")
    grid["seeds"] = seeds
    if "base" in grid:
        if not isinstance(grid["base"], str):
            raise NtkplastError(f"{path}: base must be the path of a run config, "
                                f"got {grid['base']!r}")
        grid["base"] = str((path.parent / grid["base"]).resolve())
    for key in ("config", "methods", "axes", "analysis"):
        if not isinstance(grid.get(key, {}), Mapping):
            raise NtkplastError(f"{path}: [{key}] must be a table")
    for name, values in grid.get("axes", {}).items():
        if not isinstance(values, list) or not values:
            raise NtkplastError(f"{path}: axes.{name!r} must be a non-empty list of values")
    grid.setdefault("methods", {"none": {}})
    return grid


def expand(grid: Mapping[str, Any]) -> list[Point]:
    """The grid's points: every combination of axis values, in file order."""
    axes = grid.get("axes", {})
    combos = itertools.product(*[[(k, v) for v in values] for k, values in axes.items()])
    return [Point(c) for c in combos]


def point_config(grid: Mapping[str, Any], point: Point, where: str) -> training.RunConfig:
    """The run config of ``point``: the base file, then ``[config]``, then the axis values."""
    d = training.read_toml(grid["base"]) if "base" in grid else {}
    for section, table in grid.get("config", {}).items():
        if isinstance(table, Mapping) and isinstance(d.get(section), Mapping):
            d[section] = {**d[section], **table}
        else:
            d[section] = table
    try:
        return training.config_from_dict(training.apply_overrides(d, point.overrides),
                                       where=f"{where} [{point.name}]")
    except NtkplastError as e:
        raise NtkplastError(f"{where}: point {point.name}: {e}") from None


def _check_folder(out: Path, grid: Mapping[str, Any]) -> None:
    record = out / "grid.json"
    text = json.dumps(grid, indent=1, sort_keys=True, default=str)
    if os.path.lexists(record):
        if read_bytes(record, limit=CONFIG_BYTES, within=out) != text.encode():
            raise NtkplastError(f"{out} holds a sweep of another grid ({record} differs); use "
                                f"another --out folder or the grid that wrote it")
        return
    atomic_write_bytes(record, text.encode())


def run_sweep(grid_path: str | os.PathLike, out_dir: str | os.PathLike, *,
              analyze: bool = True, progress: bool = True, data_dir: str | None = None,
              vectorise_seeds: bool = False,
              executor: Executor | None = None) -> dict[str, grid_lib.GridResult]:
    """Expand, train, analyse and join the sweep of ``grid_path`` into ``out_dir``.

    Every (point, method, seed) run — or, with ``vectorise_seeds``, every (point, method) group
    of seeds trained in one vectorised program — is one job of ``executor``
    (:mod:`ntkplast.experiments.executors`; by default one after another in this process; a
    :class:`~ntkplast.experiments.executors.RayExecutor` runs them as Ray tasks, possibly across
    machines).

    Returns point name → :class:`~ntkplast.experiments.grid.GridResult`. Every configuration is
    built and checked before the first run trains — its sizes too, as ``train`` checks them
    (:func:`ntkplast.training.sizes.check_sizes`: batch against the task's examples, steps,
    parameters against memory) — so a bad point fails fast with nothing written.
    """
    grid = load_grid(grid_path)
    where = str(grid_path)
    points = expand(grid)
    bases = [point_config(grid, p, where) for p in points]
    methods = grid["methods"]
    for name, method in methods.items():
        try:
            grid_lib.check_method_name(name)
            training.config_from_dict({"method": method}, where=f"{where}: methods.{name}")
        except NtkplastError as e:
            raise NtkplastError(f"{where}: methods.{name}: {e}") from None
    settings = from_plain(analysis.Settings, grid.get("analysis", {}),
                          where=f"{where}: analysis")
    for point, base in zip(points, bases, strict=True):  # sizes, as train checks them
        try:
            check_sizes(base, models.build(base.model), streams.make_stream(base.stream),
                        seeds=len(grid["seeds"]) if vectorise_seeds else 1)
        except NtkplastError as e:
            raise NtkplastError(f"{where}: point {point.name}: {e}") from None
    out = Path(out_dir)
    with folder_lock(out, "sweep"):  # one sweep per folder; each run and analysis locks its own
        return _run_locked(grid, points, bases, settings, out, analyze, progress, data_dir,
                           vectorise_seeds, executor)


def _run_locked(grid: dict[str, Any], points: list[Point], bases: list[training.RunConfig],
                settings: analysis.Settings, out: Path, analyze: bool, progress: bool,
                data_dir: str | None, vectorise_seeds: bool, executor: Executor | None
                ) -> dict[str, grid_lib.GridResult]:
    """:func:`run_sweep` once its folder ``out`` is locked."""
    methods = grid["methods"]
    _check_folder(out, grid)
    jobs = {point.name: grid_lib.grid_jobs(
                base, methods, grid["seeds"], out / point.name, vectorise_seeds=vectorise_seeds,
                settings=settings, analyze=analyze, progress=progress, data_dir=data_dir)
            for point, base in zip(points, bases, strict=True)}
    flat = [job for point_jobs in jobs.values() for job in point_jobs]
    tables = iter(grid_lib.run_jobs(flat, executor))
    results = {name: grid_lib.gather(point_jobs, [next(tables) for _ in point_jobs],
                                       grid["seeds"])
               for name, point_jobs in jobs.items()}
    if analyze:
        atomic_write_bytes(out / "summary.csv", _summary_csv(results))
    return results


def _summary_csv(results: Mapping[str, grid_lib.GridResult]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["point", "method", "seed", *COLUMNS])
    for point, res in results.items():
        for method, tables in res.tables.items():
            for seed, table in zip(res.seeds, tables, strict=True):
                writer.writerows([point, method, seed, *row] for row in table.rows())
    return buf.getvalue().encode()
