"""Checked inputs of the statistics: metric references, lists of run tables, one metric's series.

A metric is named ``"metric"`` (layer ``"all"``) or ``("metric", "layer")``; a run is one
:class:`~ntkplast.table.Table`. These helpers turn what a user passes into ``(metric, layer)``
pairs, a non-empty list of tables and sorted finite series, or raise one
:class:`~ntkplast.errors.NtkplastError` that says what was expected and what arrived.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.table import TASK_END_METRICS, Table, layer_mean, task_end_checkpoints

__all__ = ["POSITION_METRICS", "TREND_TEXT", "At", "MetricRef", "Trend", "check_level",
           "check_trend", "ignore_bootstrap", "name", "ref", "series", "tables"]

MetricRef = str | tuple[str, str]
"""``"metric"`` (layer ``"all"``) or ``("metric", "layer")``; layer ``"mean"`` is the strict
mean over the metric's per-layer rows (:func:`ntkplast.table.layer_mean`), and ``"task"`` /
``"step"`` (``POSITION_METRICS``) are each checkpoint's task index and training step."""
At = Literal["all", "task_end"]
"""Which checkpoints: all of them, or only task ends (those with a row of
:data:`ntkplast.table.TASK_END_METRICS`)."""


Trend = Literal["difference", "task", "none"]
"""How an association test controls for the trend that every metric shares with the task index
(:mod:`ntkplast.stats.correlation` has the formulas): ``"difference"`` first differences with the
position partialled out of their ranks (the default), ``"task"`` the position partialled out of
the ranks of the levels, ``"none"`` the raw correlation."""
TREND_TEXT = {"difference": "first differences, position partialled out",
              "task": "position (task index) partialled out",
              "none": "raw, no trend control"}
"""How results print each :data:`Trend`."""
POSITION_METRICS = ("task", "step")
"""Pseudo-metrics read from the table's own columns: the task index and the training step of
each checkpoint (usable as a metric or a control wherever the table has no metric of that
name)."""


def check_trend(trend: object) -> Trend:
    """``trend`` if it is a :data:`Trend`, else an error that lists them."""
    if trend not in TREND_TEXT:
        raise NtkplastError(f"trend: expected one of {list(TREND_TEXT)}, got {trend!r}")
    return trend  # type: ignore[return-value]


def name(metric_ref: tuple[str, str]) -> str:
    """``"metric[layer]"``, how results print a metric."""
    return f"{metric_ref[0]}[{metric_ref[1]}]"


def ref(metric_ref: MetricRef, what: str) -> tuple[str, str]:
    """``(metric, layer)`` of ``"metric"`` (layer ``"all"``) or a ``(metric, layer)`` pair."""
    if isinstance(metric_ref, str):
        return metric_ref, "all"
    if (isinstance(metric_ref, tuple | list) and len(metric_ref) == 2
            and all(isinstance(s, str) for s in metric_ref)):
        return metric_ref[0], metric_ref[1]
    raise NtkplastError(f"{what}: expected a metric name or a (metric, layer) pair such as "
                        f"('jac_isometry_index', 'layer1'), got {metric_ref!r}")


def tables(runs: Table | Sequence[Table], fn: str) -> list[Table]:
    """One non-empty :class:`Table` per run; a single Table is one run."""
    out = [runs] if isinstance(runs, Table) else list(runs)
    if not out:
        raise NtkplastError(f"{fn}: no tables given; pass a Table or a list of Tables, one per run")
    for i, t in enumerate(out):
        if not isinstance(t, Table):
            raise NtkplastError(f"{fn}: tables[{i}] is a {type(t).__name__}, not a Table; "
                                "load one with Table.read_csv or ntkplast.analysis.analyze")
        if len(t) == 0:
            raise NtkplastError(f"{fn}: table {i} is empty; analyse the run first")
    return out


def series(table: Table, metric_ref: tuple[str, str], at: At,
           what: str = "metric") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(checkpoint, step, value)`` of the finite rows of one metric, sorted by checkpoint."""
    if at not in ("all", "task_end"):
        raise NtkplastError(f"at: expected 'all' or 'task_end', got {at!r}")
    metric, layer = metric_ref
    cols = table.columns
    if layer == "mean":
        ckpt, step, value = layer_mean(table, metric)
        if len(ckpt) == 0:
            layers = sorted(set(cols["layer"][cols["metric"] == metric].tolist()))
            raise NtkplastError(f"{what}: no per-layer rows of metric '{metric}' for layer "
                                f"'mean'; " + (f"it exists on layer(s) {layers}" if layers else
                                               "the table has no rows of it"))
    elif metric in POSITION_METRICS and layer == "all" and not (cols["metric"] == metric).any():
        ckpt, first = np.unique(cols["checkpoint"], return_index=True)
        step = cols["step"][first]
        value = (cols[metric][first]).astype(np.float64)
    else:
        ckpt, step, value = _stored(table, metric, layer, what)
    ok = np.isfinite(value)
    if at == "task_end":
        ends = task_end_checkpoints(table)
        if len(ends) == 0:
            raise NtkplastError(f"at='task_end': the table has no {list(TASK_END_METRICS)} rows "
                                "to mark task ends; use at='all'")
        ok &= np.isin(ckpt, ends)
    order = np.argsort(ckpt[ok], kind="stable")
    return ckpt[ok][order], step[ok][order], value[ok][order]


def _stored(table: Table, metric: str, layer: str,
            what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(checkpoint, step, value)`` of the rows of ``metric`` on ``layer``, as stored."""
    cols = table.columns
    keep = (cols["metric"] == metric) & (cols["layer"] == layer)
    if not keep.any():
        on_layer = sorted(set(cols["metric"][cols["layer"] == layer].tolist()))
        layers = sorted(set(cols["layer"][cols["metric"] == metric].tolist()))
        hint = (f"'{metric}' exists on layer(s) {layers}" if layers else
                f"metrics on layer '{layer}': {on_layer}" if on_layer else
                f"layers in the table: {sorted(set(cols['layer'].tolist()))}")
        raise NtkplastError(f"{what}: no rows of metric '{metric}' on layer '{layer}'; {hint}")
    ckpt, step, value = cols["checkpoint"][keep], cols["step"][keep], cols["value"][keep]
    if len(np.unique(ckpt)) != len(ckpt):
        raise NtkplastError(f"{what}: '{metric}' on layer '{layer}' has several rows at one "
                            "checkpoint; is the table several runs concatenated? Pass one Table "
                            "per run as a list")
    return ckpt, step, value


def check_level(level: float) -> None:
    """Raise unless ``level`` is an interval coverage in (0, 1)."""
    if not 0 < level < 1:
        raise NtkplastError(f"level: expected a coverage in (0, 1) such as 0.95, got {level!r}")


def ignore_bootstrap(fn: str, n_boot: object, seed: object) -> None:
    """Warn that ``n_boot`` / ``seed`` (arguments of the percentile bootstrap that intervals
    used before 0.3) no longer do anything: the intervals are Student-t / jackknife, with no
    resampling (:mod:`ntkplast.stats.intervals`)."""
    given = [name for name, v in (("n_boot", n_boot), ("seed", seed)) if v is not None]
    if given:
        warnings.warn(f"{fn}: {' and '.join(given)} no longer do anything (intervals are "
                      "Student-t / delete-one jackknife since ntkplast 0.3, with no "
                      "resampling); drop the argument", DeprecationWarning, stacklevel=3)
