"""The points of the predictor test (:mod:`~ntkplast.stats.predictors`), read from the runs.

Per run (method, seed): each predictor's value at the end of task t and the target's at the end
of task t + lag (``_task_values``, with an error that says where a missing metric is), paired by
``_paired`` — first differences over the analysed task ends under ``trend="difference"``, with
the target's own change as a control when lag ≠ 0 — and collected by ``_predictor_points``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import Trend
from ntkplast.stats._inputs import tables as _tables
from ntkplast.table import TASK_END_METRICS, Table, task_end_checkpoints, task_end_values

__all__ = ["RunPoints", "Runs"]

Runs = Mapping[str, Sequence[Table]] | Sequence[Table] | Table
"""Method name → one Table per seed; a list of Tables (or one Table) is one method."""
RunPoints = list[tuple[tuple[str, int], np.ndarray, np.ndarray, np.ndarray]]
"""Per run: ``(method, seed index)``, predictors x (n, P) at task t, target y (n,) at t + lag."""


def _task_values(table: Table, ends: np.ndarray, ref: tuple[str, str], what: str) -> np.ndarray:
    """:func:`ntkplast.table.task_end_values` (T,) of one predictor or the target, with an error
    that says where the metric is when the table has no row of it on that layer."""
    metric, layer = ref
    c = table.columns
    sel = c["metric"] == metric
    sel &= (c["layer"] != "all") if layer == "mean" else (c["layer"] == layer)
    if not sel.any():
        layers = sorted(set(c["layer"][c["metric"] == metric].tolist()))
        if layers:
            hint = f"'{metric}' exists on layer(s) {layers}" + (
                "; per-layer rows are needed for layer 'mean'" if layer == "mean" else "")
        else:
            hint = (f"the table has no '{metric}' rows at all; analyse the runs with the family "
                    "that writes it, or drop it")
        if metric == "weight_norm":
            hint += ("; the analysis writes it with its isometry family (layer 'all'), so "
                     "re-analyse with that family (tables analysed before it was added lack it) "
                     "or use ('weight_chi', 'mean'), the layer mean of ‖W_l‖_F² / "
                     "min(fan_in, fan_out), a scale metric of the same family")
        raise NtkplastError(f"{what}: no rows of '{metric}' on layer '{layer}'; {hint}")
    try:
        return task_end_values(table, metric, layer, ends=ends)
    except NtkplastError as e:
        raise NtkplastError(f"{what}: {e}") from None


def _predictor_points(tables: Runs, refs: Sequence[tuple[str, str]], names: Sequence[str],
                      target: tuple[str, str], lag: int, trend: Trend) -> RunPoints:
    """Per run: (method, seed), x (n, P) predictor at task t, y (n,) target at task t + lag
    (:func:`_paired`: first differences under ``trend="difference"``)."""
    if isinstance(tables, Table) or (isinstance(tables, Sequence)
                                     and not isinstance(tables, str)):
        tables = {"": _tables(tables, "compare_predictors")}
    if not isinstance(tables, Mapping) or not tables:
        raise NtkplastError("compare_predictors: expected tables as method name → a list of "
                            f"Tables (one per seed), e.g. run_grid(...).tables; got {tables!r}")
    out = []
    for method, runs in tables.items():
        runs = [runs] if isinstance(runs, Table) else list(runs)
        if not runs:
            raise NtkplastError(f"compare_predictors: method {method!r} has no tables")
        for s, table in enumerate(_tables(runs, f"compare_predictors[{method!r}]")):
            where = f"method {method!r}, seed {s}" if method else f"run {s}"
            ends = task_end_checkpoints(table)
            if len(ends) == 0:
                raise NtkplastError(f"compare_predictors: {where} has no task ends (no "
                                    f"{list(TASK_END_METRICS)} rows); analyse with the "
                                    "plasticity family")
            xs = np.stack([_task_values(table, ends, r, f"predictor {n!r} ({where})")
                           for r, n in zip(refs, names)], axis=1)
            y = _task_values(table, ends, target, f"target ({where})")
            out.append(((str(method), s), *_paired(xs, y, lag, trend)))
    return out


def _paired(xs: np.ndarray, y: np.ndarray, lag: int,
            trend: Trend) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x (n, P), y (n,), own (n, c))``: predictors at task t with the target at t + lag, and
    the controls every predictor shares besides the position.

    Under ``trend="difference"``: Δx between consecutive task ends where some predictor was
    analysed (every task end, or every k-th when the analysis skipped some), Δy over the same
    span shifted by ``lag`` — Δx_i = x_{a_{i+1}} − x_{a_i}, Δy_i = y_{a_{i+1}+lag} − y_{a_i+lag}
    — and, when lag ≠ 0, the target's own change over the predictor's span,
    y_{a_{i+1}} − y_{a_i}, as a control (c = 1). Differencing makes consecutive changes of a
    series negatively correlated (Δy_{t+1} = e_{t+1} − e_t shares −e_t with Δy_t), so a
    predictor that merely moves *with* the target at task t would otherwise read as predicting
    the opposite change at t + 1; with the control the test asks whether Δx_t predicts the
    target's next change beyond the target's own present change (Granger 1969)."""
    if trend == "difference":
        analysed = np.flatnonzero(np.isfinite(xs).any(axis=1))
        at = [np.full(len(analysed), np.nan) for _ in range(2)]
        for values, shift in zip(at, (lag, 0)):
            src = analysed + shift
            inside = (src >= 0) & (src < len(y))
            values[inside] = y[src[inside]]
        own = np.diff(at[1])[:, None] if lag else np.empty((max(len(analysed) - 1, 0), 0))
        return np.diff(xs[analysed], axis=0), np.diff(at[0]), own
    n = max(len(y) - abs(lag), 0)
    x, y = (xs[:n], y[lag:]) if lag >= 0 else (xs[-lag:], y[:n])
    return x, y, np.empty((len(y), 0))
