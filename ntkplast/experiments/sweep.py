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
    "methods.adamo.lam" = [1e-3, 1e-2]  # an option of one method's table
    [analysis]                     # optional ntkplast.analysis.Settings fields
    probe_size = 128
    [selection]                    # optional: choose each method's point on other seeds
    seeds = [100, 101]

A method runs at every combination of the values of the config axes (``model.*``, ``stream.*``,
``train.*``) and of its own axes (``methods.<name>.<option>``), in the file's order:
its *points*. Runs go to ``OUT/<point>/<method>/seed<k>`` where ``<point>`` is ``key=value,…``
(a method's own options as ``method.<option>=value``; ``base`` without axes), so methods that
share the config axes' values share a point folder. Each point's runs are the jobs of
:func:`ntkplast.experiments.grid.grid_jobs`, all points' jobs go to one executor, and re-running
skips finished runs and resumes interrupted ones. ``OUT/grid.json`` records the expanded grid; a
folder written for another grid is refused. ``OUT/summary.csv`` joins every evaluated run's
analysis table with columns ``point, method, seed`` in front of the table's own.

Selection. A value that a comparison calls *chosen* (a regulariser's λ, a learning rate) must not
be chosen on the seeds that are then evaluated: picking the best of several noisy estimates and
reporting that same estimate favours the point whose noise happened to help (the winner's
curse; double dipping), so the evaluated contrast is biased in its favour. With a
``[selection]`` table (:mod:`ntkplast.experiments.selection`: its keys, the score), the sweep
first trains and analyses every point of every method that has several on the selection seeds,
into ``OUT/selection/<point>/<method>/seed<k>``; scores each point on those runs' tables; picks
each method's best point (the first on a tie) and writes ``OUT/selection.json`` (every point's
per-seed scores and mean, the chosen points, both seed lists, the metric, window and goal); and
only then trains and analyses each method's chosen point on the evaluated ``seeds``. The
evaluated seeds never run at a point that was not chosen, and the selection seeds must be
disjoint from them. A method with a single point has nothing to choose and runs only on the
evaluated seeds. Re-running recomputes the same ``selection.json`` from the finished runs.

How the runs are carried out is not part of the grid: ``vectorise_seeds`` trains each method's seeds
of a point in one ``jax.vmap``-ed program, and an executor (:mod:`~ntkplast.experiments.executors`)
runs the jobs here or on a Ray cluster (``ntkplast sweep … --executor ray``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast import analysis, models, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.experiments import grid as grid_lib
from ntkplast.experiments import selection as selection_lib
from ntkplast.experiments.executors import Executor
from ntkplast.io.files import atomic_write_bytes
from ntkplast.io.lock import folder_lock
from ntkplast.io.safe_read import CONFIG_BYTES, read_bytes
from ntkplast.plain import from_plain
from ntkplast.table import COLUMNS
from ntkplast.training.sizes import check_sizes

__all__ = ["Point", "expand", "load_grid", "point_config", "run_sweep"]

GRID_KEYS = ("seeds", "base", "config", "methods", "axes", "analysis", "selection")
METHOD_AXIS = "methods."
"""Prefix of an axis over one method's option: ``methods.<name>.<option>``."""
OPTION = "method."
"""Prefix of a method's option in a point's name and values: ``method.<option>``."""


class Point:
    """One combination of axis values: its folder name, its config overrides and the options it
    sets in a method's table."""

    def __init__(self, values: Sequence[tuple[str, Any]]):
        self.values = tuple(values)
        self.name = ",".join(f"{k}={_fmt(v)}" for k, v in self.values) or "base"
        self.overrides = [f"{k}={json.dumps(v)}" for k, v in self.values
                          if not k.startswith(OPTION)]
        self.options = {k[len(OPTION):]: v for k, v in self.values if k.startswith(OPTION)}

    def __repr__(self) -> str:
        return f"Point({self.name})"


def _fmt(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return "".join(c if c.isalnum() or c in "-_.=+" else "_" for c in text)


def _check_axis(path: Path, key: str, methods: Mapping[str, Any]) -> None:
    """Refuse an axis over the ``[method]`` table, or over a method the grid does not have."""
    section, _, rest = key.partition(".")
    if section == "method":
        raise NtkplastError(f"{path}: axes.{key!r}: each method's options come from its own "
                            f"[methods.<name>] table; vary one with "
                            f"\"methods.<name>.{rest or '<option>'}\"")
    if key.startswith(METHOD_AXIS):
        name, _, option = rest.rpartition(".")
        if name not in methods or not option:
            raise NtkplastError(f"{path}: axes.{key!r}: an axis over a method's option is "
                                f"\"methods.<name>.<option>\" with <name> one of "
                                f"{sorted(methods)}")


def load_grid(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a grid file; returns its plain data with ``base`` resolved to a path and
    ``[selection]`` (when given) checked, its defaults filled in."""
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
    grid.setdefault("methods", {"none": {}})
    for name, values in grid.get("axes", {}).items():
        if not isinstance(values, list) or not values:
            raise NtkplastError(f"{path}: axes.{name!r} must be a non-empty list of values")
        _check_axis(path, name, grid["methods"])
    if "selection" in grid:
        grid["selection"] = selection_lib.check_selection(grid["selection"], seeds, str(path))
        if all(math.prod(len(v) for _, v in _axes(grid, m)) == 1 for m in grid["methods"]):
            raise NtkplastError(f"{path}: [selection]: no method has an axis of two or more "
                                f"values, so there is nothing to select; add [axes] (e.g. "
                                f"\"methods.<name>.lam\" = [...]) or remove [selection]")
    return grid


def _axes(grid: Mapping[str, Any], method: str | None) -> list[tuple[str, list[Any]]]:
    """The axes of ``method``'s points, in file order: (point key, values); its own options
    under the key ``method.<option>``. Without ``method``, the config axes only."""
    out = []
    for key, values in grid.get("axes", {}).items():
        if not key.startswith(METHOD_AXIS):
            out.append((key, values))
        elif method is not None:
            name, _, option = key[len(METHOD_AXIS):].rpartition(".")
            if name == method:
                out.append((OPTION + option, values))
    return out


def expand(grid: Mapping[str, Any], method: str | None = None) -> list[Point]:
    """The points of ``method``: every combination of the values of the config axes and of its
    own axes (``methods.<method>.<option>``), in file order. Without ``method``, the
    combinations of the config axes alone."""
    combos = itertools.product(*[[(k, v) for v in values] for k, values in _axes(grid, method)])
    return [Point(c) for c in combos]


def point_config(grid: Mapping[str, Any], point: Point, where: str) -> training.RunConfig:
    """The run config of ``point``: the base file, then ``[config]``, then the config axes'
    values (a method's options go into its table, :func:`run_sweep`)."""
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
    machines). With ``[selection]``, the selection runs are one round of jobs and the evaluated
    runs of the chosen points a second (module docstring).

    Returns point name → :class:`~ntkplast.experiments.grid.GridResult` of the evaluated runs
    (with ``[selection]``: each method's chosen point only; the choice is in
    ``OUT/selection.json``, :func:`ntkplast.experiments.selection.read_record`). Every
    configuration is built and checked before the first run trains — its sizes too, as
    ``train`` checks them (:func:`ntkplast.training.sizes.check_sizes`: batch against the
    task's examples, steps, parameters against memory) — so a bad point fails fast with nothing
    written.
    """
    grid = load_grid(grid_path)
    where = str(grid_path)
    methods = grid["methods"]
    for name, method in methods.items():
        try:
            grid_lib.check_method_name(name)
            training.config_from_dict({"method": method}, where=f"{where}: methods.{name}")
        except NtkplastError as e:
            raise NtkplastError(f"{where}: methods.{name}: {e}") from None
    if "selection" in grid and not analyze:
        raise NtkplastError(f"{where}: [selection] scores the selection runs' analysis tables; "
                            f"run the sweep with its analysis (without --no-analysis)")
    plan = {name: expand(grid, name) for name in methods}
    bases: dict[str, training.RunConfig] = {}
    for name, points in plan.items():
        for point in points:
            if point.name not in bases:
                bases[point.name] = point_config(grid, point, where)
            try:
                training.config_from_dict({"method": {**methods[name], **point.options}},
                                          where=f"methods.{name}")
            except NtkplastError as e:
                raise NtkplastError(f"{where}: point {point.name}: {e}") from None
    settings = from_plain(analysis.Settings, grid.get("analysis", {}),
                          where=f"{where}: analysis")
    group = max(len(grid["seeds"]), len(grid.get("selection", {}).get("seeds", [])))
    for point_name, base in bases.items():  # sizes, as train checks them
        try:
            check_sizes(base, models.build(base.model), streams.make_stream(base.stream),
                        seeds=group if vectorise_seeds else 1)
        except NtkplastError as e:
            raise NtkplastError(f"{where}: point {point_name}: {e}") from None
    out = Path(out_dir)
    options = {"vectorise_seeds": vectorise_seeds, "settings": settings, "analyze": analyze,
               "progress": progress, "data_dir": data_dir}
    with folder_lock(out, "sweep"):  # one sweep per folder; each run and analysis locks its own
        _check_folder(out, grid)
        if "selection" in grid:
            plan = _select(grid, plan, bases, out, where, executor, options)
        results = _run_plan(methods, plan, bases, grid["seeds"], out, executor, options)
        if analyze:
            atomic_write_bytes(out / "summary.csv", _summary_csv(results))
        return results


def _run_plan(methods: Mapping[str, Mapping[str, Any]], plan: Mapping[str, Sequence[Point]],
              bases: Mapping[str, training.RunConfig], seeds: Sequence[int], out: Path,
              executor: Executor | None, options: Mapping[str, Any]
              ) -> dict[str, grid_lib.GridResult]:
    """Train and analyse each method of ``plan`` (method → its points) at its points under
    ``seeds`` into ``out/<point>/<method>/seed<k>``, all jobs through ``executor``; point name →
    its runs. ``options``: :func:`~ntkplast.experiments.grid.grid_jobs`' keyword arguments."""
    tables_at: dict[str, dict[str, dict[str, Any]]] = {}  # point -> method -> its table there
    for name, points in plan.items():
        for point in points:
            tables_at.setdefault(point.name, {})[name] = {**methods[name], **point.options}
    jobs = {point: grid_lib.grid_jobs(bases[point], tables, seeds, out / point, **options)
            for point, tables in tables_at.items()}
    flat = [job for point_jobs in jobs.values() for job in point_jobs]
    tables = iter(grid_lib.run_jobs(flat, executor))
    return {point: grid_lib.gather(point_jobs, [next(tables) for _ in point_jobs], seeds)
            for point, point_jobs in jobs.items()}


def _select(grid: Mapping[str, Any], plan: Mapping[str, list[Point]],
            bases: Mapping[str, training.RunConfig], out: Path, where: str,
            executor: Executor | None, options: Mapping[str, Any]) -> dict[str, list[Point]]:
    """Run every method that has several points at each of them on the selection seeds, choose
    each method's point, write ``out/selection.json``; the plan of the evaluated runs (method →
    its chosen point)."""
    selection = grid["selection"]
    several = {name: points for name, points in plan.items() if len(points) > 1}
    results = _run_plan(grid["methods"], several, bases, selection["seeds"], out / "selection",
                        executor, options)
    record = selection_lib.select({name: [p.name for p in points] for name, points in plan.items()},
                                  results, selection, grid["seeds"], where)
    atomic_write_bytes(out / selection_lib.RECORD, selection_lib.record_bytes(record))
    return {name: [p for p in points if p.name == record["methods"][name]["chosen"]]
            for name, points in plan.items()}


def _summary_csv(results: Mapping[str, grid_lib.GridResult]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["point", "method", "seed", *COLUMNS])
    for point, res in results.items():
        for method, tables in res.tables.items():
            for seed, table in zip(res.seeds, tables, strict=True):
                writer.writerows([point, method, seed, *row] for row in table.rows())
    return buf.getvalue().encode()
