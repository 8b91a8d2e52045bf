"""Hyper-parameter selection on seeds of its own: a sweep's ``[selection]`` table.

A grid's ``[selection]`` (:mod:`ntkplast.experiments.sweep`) names the *selection seeds*, the
metric that scores a run, over how many final tasks, and whether lower or higher is better::

    [selection]
    seeds = [100, 101]                    # disjoint from the grid's (evaluated) seeds
    metric = "plasticity_loss_baseline"   # a task-end metric of the analysis table (default)
    last = 10                             # its mean over a run's last 10 tasks (default 10)
    goal = "min"                          # or "max" (default "min")

A selection run's score is the mean of ``metric`` at the task ends of its last ``last`` tasks,
tasks without a value (NaN: a task without reset references, for the plasticity losses) left
out; a point's score is the mean of its runs' scores over the selection seeds. Each method gets
the point with the best score, the first in the grid's order on a tie; a point where some
selection run has no value in that window, or an infinite one (a diverged run), is never
chosen. What was scored and
chosen is written to ``OUT/selection.json`` (:func:`record_bytes`, :func:`read_record`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.experiments.grid import GridResult
from ntkplast.io.safe_read import CONFIG_BYTES, read_bytes
from ntkplast.table import Table, per_task

__all__ = ["DEFAULTS", "GOALS", "RECORD", "SELECTION_KEYS", "check_selection", "choose",
           "read_record", "record_bytes", "seed_score", "select", "summary_lines"]

SELECTION_KEYS = ("seeds", "metric", "last", "goal")
DEFAULTS: dict[str, Any] = {"metric": "plasticity_loss_baseline", "last": 10, "goal": "min"}
GOALS = ("min", "max")
RECORD = "selection.json"
"""The file in a sweep folder that records the selection."""


def _seed_list(value: Any) -> bool:
    """Whether ``value`` is a non-empty list of distinct non-negative integers."""
    return (isinstance(value, list) and bool(value) and len(set(value)) == len(value)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value))


def check_selection(table: Any, seeds: Sequence[int], where: str) -> dict[str, Any]:
    """The ``[selection]`` table of the grid file ``where``, checked, with defaults filled in.

    Raises:
      NtkplastError: not a table, an unknown key, selection seeds that are not a list of
        distinct non-negative integers or that share a seed with the evaluated ``seeds``, a
        metric that is not a name, ``last`` < 1, or a goal other than min / max.
    """
    if not isinstance(table, Mapping):
        raise NtkplastError(f"{where}: [selection] must be a table")
    unknown = sorted(set(table) - set(SELECTION_KEYS))
    if unknown:
        raise NtkplastError(f"{where}: selection: unknown key(s) {unknown}; [selection] has "
                            f"{list(SELECTION_KEYS)}")
    out = {**DEFAULTS, **table}
    if not _seed_list(out.get("seeds")):
        raise NtkplastError(f"{where}: selection.seeds must be a list of distinct non-negative "
                            f"integers, got {out.get('seeds')!r}")
    shared = sorted(set(out["seeds"]) & set(seeds))
    if shared:
        raise NtkplastError(f"{where}: selection.seeds {out['seeds']} and the evaluated seeds "
                            f"{list(seeds)} share {shared}; choose on seeds that are not "
                            f"evaluated")
    if not isinstance(out["metric"], str) or not out["metric"]:
        raise NtkplastError(f"{where}: selection.metric must be a metric name, "
                            f"got {out['metric']!r}")
    last = out["last"]
    if not isinstance(last, int) or isinstance(last, bool) or last < 1:
        raise NtkplastError(f"{where}: selection.last must be an integer >= 1, got {last!r}")
    if out["goal"] not in GOALS:
        raise NtkplastError(f"{where}: selection.goal must be one of {list(GOALS)}, "
                            f"got {out['goal']!r}")
    return {key: out[key] for key in SELECTION_KEYS}


def seed_score(table: Table, metric: str, last: int, run_dir: str | os.PathLike) -> float:
    """One selection run's score: the mean of ``metric`` at its last ``last`` task ends, NaN
    tasks left out (NaN when none has a value).

    Raises:
      NtkplastError: the table of ``run_dir`` has no row of ``metric``, or no task ends.
    """
    if not np.any(table.columns["metric"] == metric):
        raise NtkplastError(
            f"selection: metric {metric!r} is not in the analysis table of {run_dir}; name a "
            f"metric that the analysis records at task ends in selection.metric (the "
            f"plasticity losses and reference scores need reset references among the last "
            f"tasks: set train.reference_tasks, e.g. \"every:3\", and keep the plasticity "
            f"family in [analysis] metrics)")
    try:
        window = per_task([table], metric)[0, -last:]
    except NtkplastError as e:
        raise NtkplastError(f"selection: {run_dir}: {e}") from None
    if np.isnan(window).all():
        return math.nan
    with warnings.catch_warnings():  # inf - inf in the window: NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(window))


def choose(means: Sequence[float], goal: str) -> int | None:
    """Index of the best of ``means`` (lowest for ``goal="min"``, highest for ``"max"``), the
    first on a tie, a NaN or infinite mean never; None when no mean is finite."""
    best = None
    for i, m in enumerate(means):
        if not math.isfinite(m):
            continue
        if best is None or (m < means[best] if goal == "min" else m > means[best]):
            best = i
    return best


def select(candidates: Mapping[str, Sequence[str]], results: Mapping[str, GridResult],
           selection: Mapping[str, Any], seeds: Sequence[int], where: str) -> dict[str, Any]:
    """Score and choose: the selection record (what :func:`record_bytes` writes).

    Args:
      candidates: method → the names of its points, in the grid's order; a method with one
        point has nothing to choose (and no selection runs).
      results: point name → the selection runs of that point (their analysis tables).
      selection: the checked ``[selection]`` table (:func:`check_selection`).
      seeds: the evaluated seeds (recorded beside the selection seeds).
      where: the grid file, for errors.

    Raises:
      NtkplastError: the metric is missing from a selection run's table, or no point of a
        method has a score.
    """
    metric, last, goal = selection["metric"], selection["last"], selection["goal"]
    methods: dict[str, Any] = {}
    for method, names in candidates.items():
        if len(names) == 1:
            methods[method] = {"chosen": names[0], "score": None, "points": {}}
            continue
        points = {}
        for name in names:
            res = results[name]
            try:
                scores = [seed_score(t, metric, last, d) for t, d in
                          zip(res.tables[method], res.run_dirs[method], strict=True)]
            except NtkplastError as e:
                raise NtkplastError(f"{where}: {e}") from None
            points[name] = (scores, float(np.mean(scores)))
        best = choose([mean for _, mean in points.values()], goal)
        if best is None:
            raise NtkplastError(
                f"{where}: selection: no point of method {method!r} has a value of {metric!r} "
                f"in the last {last} tasks of every selection run; widen selection.last or "
                f"give the runs reset references there (train.reference_tasks)")
        chosen = names[best]
        methods[method] = {"chosen": chosen, "score": points[chosen][1],
                           "points": {name: {"scores": [_finite(s) for s in scores],
                                             "mean": _finite(mean)}
                                      for name, (scores, mean) in points.items()}}
    return {"metric": metric, "last": last, "goal": goal,
            "selection_seeds": list(selection["seeds"]), "seeds": list(seeds),
            "methods": methods}


def _finite(value: float) -> float | None:
    """``value``, or None (JSON null) where it is NaN or infinite."""
    return value if math.isfinite(value) else None


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes of ``selection.json``: the same record gives the same bytes."""
    return (json.dumps(record, indent=1) + "\n").encode()


def read_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The selection record of the sweep folder ``folder``; None when it has none."""
    path = Path(folder) / RECORD
    if not os.path.lexists(path):
        return None
    try:
        return json.loads(read_bytes(path, limit=CONFIG_BYTES, within=folder))
    except ValueError as e:
        raise NtkplastError(f"{path}: not a selection record ({e})") from None


def summary_lines(record: Mapping[str, Any]) -> list[str]:
    """One line per method: its chosen point and that point's selection score."""
    r = len(record["selection_seeds"])
    lines = []
    for method, choice in record["methods"].items():
        if not choice["points"]:
            lines.append(f"selected for {method}: {choice['chosen']} (its only point: nothing "
                         f"to select)")
            continue
        lines.append(f"selected for {method}: {choice['chosen']}, mean {record['metric']} over "
                     f"the last {record['last']} tasks {choice['score']:+.4g} ({record['goal']} "
                     f"of {len(choice['points'])} points; R = {r} selection seeds "
                     f"{record['selection_seeds']})")
    return lines
