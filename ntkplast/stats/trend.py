"""The per-run series the correlation tests work on, and their trend control's data step.

:func:`metric_series` reads one metric's finite values of a run, :func:`aligned` joins several
on the checkpoints where all are finite, and :func:`run_data` turns each run into what
:mod:`~ntkplast.stats.correlation` correlates: x at common checkpoint t and y at t + lag (the
lag alignment), first-differenced under ``trend="difference"``, with the controls, y's own change
at x's checkpoint (difference with lag ≠ 0) and the position 0 … n − 1 (any trend control) as
the columns partialled out. The reasoning and the formulas are in
:mod:`~ntkplast.stats.correlation`'s docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import At, MetricRef, Trend
from ntkplast.stats._inputs import name as _name
from ntkplast.stats._inputs import ref as _ref
from ntkplast.stats._inputs import series as _series
from ntkplast.table import Table

__all__ = ["aligned", "metric_series", "run_data"]


def metric_series(table: Table, metric: str, layer: str = "all", *,
                  at: At = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(checkpoint (n,), value (n,))`` of one metric's finite values, sorted by checkpoint.

    ``at="task_end"`` keeps only task-end checkpoints (those with a row of
    :data:`~ntkplast.table.TASK_END_METRICS`).

    Examples:
      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> run = Table.from_rows([(1, 100, 0, "all", "ntk_trace", 2.5),
      ...                        (0, 0, 0, "all", "ntk_trace", 3.0),
      ...                        (2, 200, 1, "all", "ntk_trace", float("nan"))])
      >>> ckpt, value = stats.metric_series(run, "ntk_trace")   # sorted, finite values only
      >>> ckpt.tolist(), value.tolist()
      ([0, 1], [3.0, 2.5])
    """
    ckpt, _, value = _series(table, (metric, layer), at)
    return ckpt, value


def aligned(table: Table, metrics: Sequence[MetricRef], *,
            at: At = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(checkpoint (n,), values (n, k))``: the k metrics joined on the checkpoints where all
    are finite (an inner join on the checkpoint index), sorted by checkpoint.

    Examples:
      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> run = Table.from_rows([(0, 0, 0, "all", "a", 1.0), (1, 10, 0, "all", "a", 2.0),
      ...                        (1, 10, 0, "all", "b", 5.0), (2, 20, 1, "all", "b", 6.0)])
      >>> ckpt, values = stats.aligned(run, ["a", "b"])   # checkpoints where both exist
      >>> ckpt.tolist(), values.tolist()
      ([1], [[2.0, 5.0]])
    """
    refs = [_ref(m, f"metrics[{i}]") for i, m in enumerate(metrics)]
    if not refs:
        raise NtkplastError("metrics: expected at least one metric")
    series = [_series(table, r, at, f"metrics[{i}]") for i, r in enumerate(refs)]
    common = series[0][0]
    for ckpt, _, _ in series[1:]:
        common = np.intersect1d(common, ckpt)
    values = [v[np.searchsorted(c, common)] for c, _, v in series]
    return common, np.stack(values, axis=1) if values else np.empty((len(common), 0))


def run_data(runs: list[Table], refs: list[tuple[str, str]], *, fn: str, lag: int,
             trend: Trend, at: At) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per run ``(x (n,), y (n,), z (n, k))``: x at common checkpoint t, y at t + lag, the
    controls at t (all first-differenced under ``trend="difference"``), and under a trend
    control the position 0 … n − 1 as the last control; refs = [x, y, *controls]."""
    xr, yr, k = refs[0], refs[1], len(refs) - 2
    position = trend != "none"
    own = int(trend == "difference" and lag != 0)
    own_text = " + y's own change"
    need = k + position + own + 3
    data = []
    for i, t in enumerate(runs):
        _, v = aligned(t, refs, at=at)
        if trend == "difference":
            v = np.diff(v, axis=0)
        n = len(v) - abs(lag)
        if n < need:
            raise NtkplastError(
                f"{fn}: run {i} has {max(n, 0)} usable checkpoint(s) with {_name(xr)} and "
                f"{_name(yr)}{' and the controls' if k else ''} both finite"
                f"{f' at lag {lag}' if lag else ''}"
                f"{' after differencing' if trend == 'difference' else ''}; at least {need} are "
                f"needed ({k} control(s){' + the position' if position else ''}"
                f"{own_text if own else ''} + 3); use "
                "at='all', fewer controls, a smaller lag or trend='none'")
        xs, ys = (v[:n, 0], v[lag:, 1]) if lag >= 0 else (v[-lag:, 0], v[:n, 1])
        zs = v[:n, 2:] if lag >= 0 else v[-lag:, 2:]
        if trend == "difference" and lag:   # y's own change at x's time (module docstring)
            zs = np.column_stack([zs, v[:n, 1] if lag >= 0 else v[-lag:, 1]])
        if position:
            zs = np.column_stack([zs, np.arange(n, dtype=np.float64)])
        data.append((xs, ys, zs))
    return data
