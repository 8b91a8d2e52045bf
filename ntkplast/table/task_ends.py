"""Reading a metrics table at task ends: one value per task, and ``seeds × tasks`` arrays.

Task ends are the checkpoints with a :data:`TASK_END_METRICS` row (:func:`task_end_checkpoints`);
:func:`task_end_values` reads one metric there (one layer, or the strict mean over the layers,
:func:`layer_mean`) and :func:`per_task` stacks that over runs into a ``seeds × tasks`` array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.table.tidy import Table

__all__ = ["TASK_END_METRICS", "layer_mean", "per_task", "task_end_checkpoints",
           "task_end_values"]

TASK_END_METRICS = ("test_accuracy", "test_mse", "train_accuracy", "train_mse",
                    "plasticity_score")
"""Metrics only task-end checkpoints carry (classification, regression; test scores where the
task has a test set, training-set scores in every run written since they were recorded; the
plasticity measure's score, which an imported run gets from its task table,
:mod:`ntkplast.runs.task_scores`): any of them marks a task end."""


def task_end_checkpoints(table: Table) -> np.ndarray:
    """Sorted checkpoints that end a task: those with a finite :data:`TASK_END_METRICS` row.

    Examples:
      >>> from ntkplast.table import Table
      >>> table = Table.from_rows([
      ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
      ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
      >>> from ntkplast.table import task_end_checkpoints
      >>> task_end_checkpoints(table).tolist()             # checkpoints with a test_accuracy row
      [1]
    """
    c = table.columns
    mark = np.isin(c["metric"], TASK_END_METRICS) & (c["layer"] == "all") & np.isfinite(c["value"])
    return np.unique(c["checkpoint"][mark])


def layer_mean(table: Table, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(checkpoint, step, value)`` of the mean of ``metric`` over its per-layer rows (every
    layer but ``"all"``) at each checkpoint, sorted by checkpoint:
    v̄_c = (1/|L|) Σ_{l ∈ L} v_{l,c} over the set L of layers the table has the metric on.

    Strict: NaN at a checkpoint where any layer's value is NaN or missing, so a layer whose
    measure is undefined there (a fully dead layer under a measure over non-zero singular values)
    cannot drop out of the mean and leave the surviving layers to speak for the network. An
    infinite value makes the mean infinite. Empty arrays when the metric has no per-layer rows.

    Examples:
      >>> from ntkplast.table import Table, layer_mean
      >>> table = Table.from_rows([(0, 0, 0, "layer0", "chi", 1.0), (0, 0, 0, "layer1", "chi", 3.0),
      ...                          (1, 10, 0, "layer0", "chi", 2.0)])   # layer1 missing at 1
      >>> ckpt, step, value = layer_mean(table, "chi")
      >>> ckpt.tolist(), value.tolist()                     # strict: NaN where a layer is missing
      ([0, 1], [2.0, nan])
    """
    c = table.columns
    sel = (c["metric"] == metric) & (c["layer"] != "all")
    n_layers = len(set(c["layer"][sel].tolist()))
    ckpts, inverse = np.unique(c["checkpoint"][sel], return_inverse=True)
    if n_layers == 0:
        return ckpts, ckpts.copy(), np.empty(0)
    counts = np.bincount(inverse, minlength=len(ckpts))
    if counts.max(initial=0) > n_layers:
        raise NtkplastError(f"'{metric}' has several rows on one layer at one checkpoint; is "
                            "the table several runs concatenated? Pass one Table per run")
    with np.errstate(invalid="ignore"):
        sums = np.bincount(inverse, weights=c["value"][sel], minlength=len(ckpts))
    steps = np.zeros(len(ckpts), np.int64)
    steps[inverse] = c["step"][sel]
    return ckpts, steps, np.where(counts == n_layers, sums / n_layers, np.nan)


def task_end_values(table: Table, metric: str, layer: str = "all", *,
                    ends: np.ndarray | None = None) -> np.ndarray:
    """Values ``(T,)`` of ``metric`` at the T sorted task-end checkpoints ``ends`` (default
    :func:`task_end_checkpoints`), as stored; NaN where the table has no row there.

    ``layer="mean"`` averages over the metric's per-layer rows (:func:`layer_mean`: NaN at a
    task end where any layer is NaN or missing; an infinite value makes the mean infinite).

    Raises:
      NtkplastError: the metric has several rows on one layer at one checkpoint (several runs
        concatenated into one table).

    Examples:
      >>> from ntkplast.table import Table
      >>> table = Table.from_rows([
      ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
      ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
      >>> from ntkplast.table import task_end_values
      >>> task_end_values(table, "ntk_trace").tolist(), task_end_values(table, "missing").tolist()
      ([2.0], [nan])
    """
    ends = task_end_checkpoints(table) if ends is None else np.asarray(ends)
    c = table.columns
    if layer == "mean":
        ckpt, _, value = layer_mean(table, metric)
    else:
        sel = (c["metric"] == metric) & (c["layer"] == layer)
        ckpt, value = c["checkpoint"][sel], c["value"][sel]
        if len(np.unique(ckpt)) != len(ckpt):
            raise NtkplastError(f"'{metric}' on layer '{layer}' has several rows at one "
                                "checkpoint; is the table several runs concatenated? Pass one "
                                "Table per run")
    out = np.full(len(ends), np.nan)
    pos = np.clip(np.searchsorted(ends, ckpt), 0, max(len(ends) - 1, 0))
    hit = (ends[pos] == ckpt) if len(ends) else np.zeros(len(ckpt), bool)
    out[pos[hit]] = value[hit]
    return out


def per_task(tables: Sequence[Table], metric: str, layer: str = "all") -> np.ndarray:
    """``seeds × tasks`` values of ``metric`` at each task's end checkpoint (NaN where absent).

    Row k is :func:`task_end_values` of ``tables[k]`` (``layer="mean"``: the mean over the
    metric's per-layer rows); task index t is the t-th task-end checkpoint of a run. Runs of
    different lengths are padded with NaN.

    Raises:
      NtkplastError: a table without task ends, or with several rows of the metric at one
        checkpoint.

    Examples:
      Two runs (seeds) of different lengths, padded with NaN:

      >>> from ntkplast.table import Table, per_task
      >>> def run(accuracies):           # one task end per task
      ...     return Table.from_rows([(t, 10 * t, t, "all", "test_accuracy", a)
      ...                             for t, a in enumerate(accuracies)])
      >>> per_task([run([0.9, 0.8, 0.7]), run([0.95, 0.85])], "test_accuracy").tolist()
      [[0.9, 0.8, 0.7], [0.95, 0.85, nan]]
    """
    rows = []
    for i, table in enumerate(tables):
        ends = task_end_checkpoints(table)
        if len(ends) == 0:
            raise NtkplastError(f"per_task: table {i} has no task-end checkpoints (no "
                                f"{list(TASK_END_METRICS)} rows); analyse the run with the "
                                f"plasticity family")
        try:
            rows.append(task_end_values(table, metric, layer, ends=ends))
        except NtkplastError as e:
            raise NtkplastError(f"per_task: table {i}: {e}") from None
    width = max(len(r) for r in rows)
    return np.array([np.r_[r, np.full(width - len(r), np.nan)] for r in rows], dtype=np.float64)
