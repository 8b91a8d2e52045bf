r"""Relating metrics across checkpoints and runs: rank correlation, partial correlation, lead–lag.

Functions a researcher calls on one :class:`~ntkplast.table.Table` per run (seed) to test a
hypothesis such as "NTK effective rank falls as plasticity is lost". A metric is named
``"metric"`` (layer ``"all"``) or ``("metric", "layer<l>")``. Two metrics are compared on the
checkpoints where both are finite (``at="task_end"`` keeps only task-end checkpoints, those with a
row of :data:`~ntkplast.table.TASK_END_METRICS`).

Statistics (every result prints its sample sizes):

* :func:`spearman`: per run, Spearman's ρ = Pearson correlation of the ranks (ties averaged);
  reported ``rho`` = mean of the per-run ρ_r (each run one replicate, so between-run level
  differences cannot create or mask a correlation). Spearman (1904).
* :func:`partial_spearman`: per run, ρ_{xy·Z}: rank-transform x, y and the controls Z, regress
  rank(x) and rank(y) on [1, rank(Z)] by least squares and correlate the residuals — the partial
  correlation of the ranks (Kendall & Stuart, *The Advanced Theory of Statistics* vol. 2, ch. 27;
  equal to −P_xy / √(P_xx P_yy) with P the inverse rank-correlation matrix).
* Confidence interval (:mod:`~ntkplast.stats.intervals`): with R ≥ 2 runs, the Student-t
  interval of the mean ρ over runs, ρ̄ ± t_{(1+level)/2, R−1} · s_ρ/√R clipped to [−1, 1] (the
  seed-to-seed spread; coverage near nominal from R = 3). With one run, the delete-one
  jackknife over its checkpoints on Fisher's z scale with t_{n−1} critical values;
  checkpoints of one run are autocorrelated, so that interval is optimistic.
* p-value: pool the within-run residualised ranks of all runs (the centred ranks when there are no
  controls), r = their Pearson correlation, t = r √(df / (1 − r²)) with df = N − R(k + 1) − 1
  (N points, R runs, k controls), two-sided Student-t. For one run without controls this is
  exactly ``scipy.stats.spearmanr``'s p; for equal-length runs without ties r equals ``rho``. It
  treats checkpoints as independent, which a time series is not: read it as a lower bound and
  prefer the interval over runs.
* :func:`lead_lag`: ρ between x at common checkpoint t and y at t + lag for lag = −max_lag …
  max_lag. **Positive lag = x leads y** (x's changes show up in y ``lag`` checkpoints later).
  Lags count positions in the sequence of common checkpoints, not steps. Monotone trends make
  every lag correlate; ``difference=True`` correlates first differences instead.

Onsets (which metric moves first) are in :mod:`~ntkplast.stats.onsets`, the predictor test in
:mod:`~ntkplast.stats.predictors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import At, MetricRef, check_level, ignore_bootstrap
from ntkplast.stats._inputs import name as _name
from ntkplast.stats._inputs import ref as _ref
from ntkplast.stats._inputs import series as _series
from ntkplast.stats._inputs import tables as _tables
from ntkplast.stats._ranks import correlation_p, partial, pearson, residual_ranks
from ntkplast.stats.intervals import correlation_interval, t_interval
from ntkplast.table import Table

__all__ = ["At", "CorrelationResult", "LeadLagResult", "MetricRef", "aligned", "lead_lag",
           "metric_series", "partial_spearman", "spearman"]


class CorrelationResult(NamedTuple):
    """A rank correlation with its interval and sample sizes (module docstring for the method).

    Attributes:
      rho: mean over runs of the per-run coefficient.
      ci_low, ci_high: interval at ``level`` (Student-t over runs; one run: jackknife over
        checkpoints).
      p_value: two-sided p of the pooled within-run test.
      n_runs: runs R.  n_points: points N summed over runs.  n_per_run: points in each run.
      per_run: the per-run coefficients.
      ci_over: ``"runs"`` or ``"checkpoints"`` (the interval's independent unit).
      level: interval coverage.  label: what was correlated.
    """

    rho: float
    ci_low: float
    ci_high: float
    p_value: float
    n_runs: int
    n_points: int
    n_per_run: tuple[int, ...]
    per_run: tuple[float, ...]
    ci_over: str
    level: float
    label: str

    def __str__(self) -> str:
        per = "/".join(map(str, self.n_per_run))
        return (f"{self.label}: rho = {self.rho:+.3f}, {100 * self.level:g}% CI "
                f"[{self.ci_low:+.3f}, {self.ci_high:+.3f}] ({_interval_name(self.ci_over)}, "
                f"R = {self.n_runs}), p = {self.p_value:.3g} (pooled within-run); "
                f"n_runs = {self.n_runs}, n_points = {self.n_points} ({per} per run)")


def _interval_name(ci_over: str) -> str:
    return ("Student-t over runs" if ci_over == "runs" else
            "jackknife over the checkpoints of one run, optimistic")


class LeadLagResult(NamedTuple):
    """Per-lag rank correlations; ``lags[i]`` > 0 means x leads y by that many checkpoints."""

    lags: np.ndarray
    results: tuple[CorrelationResult, ...]
    best_lag: int
    label: str

    @property
    def rho(self) -> np.ndarray:
        """ρ at each lag."""
        return np.array([r.rho for r in self.results])

    @property
    def best(self) -> CorrelationResult:
        """The result at :attr:`best_lag` (largest |ρ|; ties go to the smaller |lag|)."""
        return self.results[int(np.flatnonzero(self.lags == self.best_lag)[0])]

    def __str__(self) -> str:
        r0 = self.results[0]
        lines = [f"{self.label} (lag > 0: x leads y; {100 * r0.level:g}% CI: "
                 f"{_interval_name(r0.ci_over)}, R = {r0.n_runs}):",
                 "    lag  rho     CI                p        n_points"]
        for lag, r in zip(self.lags.tolist(), self.results):
            mark = " *" if lag == self.best_lag else ""
            lines.append(f"  {lag:+5d}  {r.rho:+.3f}  [{r.ci_low:+.3f}, {r.ci_high:+.3f}]  "
                         f"{r.p_value:<8.2g} {r.n_points}{mark}")
        lines.append(f"best lag {self.best_lag:+d} (largest |rho|)")
        return "\n".join(lines)


def metric_series(table: Table, metric: str, layer: str = "all", *,
                  at: At = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(checkpoint (n,), value (n,))`` of one metric's finite values, sorted by checkpoint.

    ``at="task_end"`` keeps only task-end checkpoints (those with a row of
    :data:`~ntkplast.table.TASK_END_METRICS`).
    """
    ckpt, _, value = _series(table, (metric, layer), at)
    return ckpt, value


def aligned(table: Table, metrics: Sequence[MetricRef], *,
            at: At = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(checkpoint (n,), values (n, k))``: the k metrics joined on the checkpoints where all
    are finite (an inner join on the checkpoint index), sorted by checkpoint."""
    refs = [_ref(m, f"metrics[{i}]") for i, m in enumerate(metrics)]
    if not refs:
        raise NtkplastError("metrics: expected at least one metric")
    series = [_series(table, r, at, f"metrics[{i}]") for i, r in enumerate(refs)]
    common = series[0][0]
    for ckpt, _, _ in series[1:]:
        common = np.intersect1d(common, ckpt)
    values = [v[np.searchsorted(c, common)] for c, _, v in series]
    return common, np.stack(values, axis=1) if values else np.empty((len(common), 0))


# ----------------------------------------------------------------------------------- core


def _run_data(runs: list[Table], refs: list[tuple[str, str]], *, fn: str, lag: int,
              difference: bool, at: At) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per run ``(x (n,), y (n,), z (n, k))``: x at common checkpoint t, y at t + lag, the
    controls at t (first differences with ``difference``); refs = [x, y, *controls]."""
    xr, yr, k = refs[0], refs[1], len(refs) - 2
    need = k + 3
    data = []
    for i, t in enumerate(runs):
        _, v = aligned(t, refs, at=at)
        if difference:
            v = np.diff(v, axis=0)
        n = len(v) - abs(lag)
        xs, ys = (v[:n, 0], v[lag:, 1]) if lag >= 0 else (v[-lag:, 0], v[:n, 1])
        zs = v[:n, 2:] if lag >= 0 else v[-lag:, 2:]
        if n < need:
            raise NtkplastError(
                f"{fn}: run {i} has {max(n, 0)} usable checkpoint(s) with {_name(xr)} and "
                f"{_name(yr)}{' and the controls' if k else ''} both finite"
                f"{f' at lag {lag}' if lag else ''}{' after differencing' if difference else ''}"
                f"; at least {need} are needed ({k} control(s) + 3); use at='all', fewer "
                "controls or a smaller lag")
        data.append((xs, ys, zs))
    return data


def _pooled_p(data: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int) -> float:
    """p of the pooled within-run test (module docstring): r of the residualised ranks of all
    runs, df = N − R(k + 1) − 1."""
    rx = np.concatenate([residual_ranks(d[0], d[2]) for d in data])
    ry = np.concatenate([residual_ranks(d[1], d[2]) for d in data])
    r = float(np.clip(pearson(rx, ry), -1.0, 1.0))
    return correlation_p(r, len(rx) - len(data) * (k + 1) - 1)


def _correlate(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef,
               controls: Sequence[MetricRef], *, fn: str, lag: int = 0, difference: bool = False,
               at: At, level: float) -> CorrelationResult:
    runs = _tables(tables, fn)
    xr, yr = _ref(x, "x"), _ref(y, "y")
    zr = [_ref(c, f"controls[{i}]") for i, c in enumerate(controls)]
    check_level(level)
    k = len(zr)
    data = _run_data(runs, [xr, yr, *zr], fn=fn, lag=lag, difference=difference, at=at)
    per_run = np.array([float(partial(*d)) for d in data])
    bad = np.flatnonzero(~np.isfinite(per_run))
    if len(bad):
        raise NtkplastError(f"{fn}: correlation undefined in run {int(bad[0])}: {_name(xr)} or "
                            f"{_name(yr)} is constant over its {len(data[bad[0]][0])} checkpoints"
                            f"{' or fully explained by the controls' if k else ''}")
    p = _pooled_p(data, k)
    if len(data) >= 2:     # Student-t over the per-run ρ
        _, lo, hi = t_interval(per_run, level)
        lo, hi, over = max(lo, -1.0), min(hi, 1.0), "runs"
    else:                  # one run: delete-one jackknife over its checkpoints
        xs, ys, zs = data[0]
        n = len(xs)
        idx = np.arange(n)[None, :].repeat(n, 0)[~np.eye(n, dtype=bool)].reshape(n, n - 1)
        lo, hi = correlation_interval(per_run[0], partial(xs[idx], ys[idx], zs[idx]), level)
        over = "checkpoints"
    what = "partial spearman" if k else "spearman"
    label = f"{what} rho({_name(xr)}, {_name(yr)}"
    label += f" | {', '.join(map(_name, zr))})" if k else ")"
    label += (f" at lag {lag:+d}" if lag else "") + (" of first differences" if difference else "")
    label += " at task ends" if at == "task_end" else ""
    return CorrelationResult(float(per_run.mean()), float(lo), float(hi), p, len(data),
                             sum(len(d[0]) for d in data), tuple(len(d[0]) for d in data),
                             tuple(per_run.tolist()), over, level, label)


# ----------------------------------------------------------------------------------- public


def spearman(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef, *, lag: int = 0,
             at: At = "all", level: float = 0.95, n_boot: int | None = None,
             seed: int | None = None) -> CorrelationResult:
    r"""Spearman rank correlation of two metrics across checkpoints, averaged over runs.

    ρ_r = corr(rank x_t, rank y_{t+lag}) over the common checkpoints t of run r (ties get average
    ranks; Spearman 1904); ``rho`` = (1/R) Σ_r ρ_r. Interval and p-value: module docstring.

    Args:
      tables: one Table per run (a single Table is one run).
      x, y: ``"metric"`` (layer ``"all"``) or ``("metric", "layer<l>")``.
      lag: pair x at common checkpoint t with y at t + lag (lag > 0: x leads y).
      at: ``"all"`` checkpoints or only ``"task_end"`` ones.
      level: interval coverage.
      n_boot, seed: deprecated, ignored with a warning (the interval no longer resamples).

    Raises:
      NtkplastError: no tables, an empty table, an unknown metric or layer, fewer than 3 common
        checkpoints in a run, or a constant series.
    """
    if not isinstance(lag, int | np.integer):
        raise NtkplastError(f"lag: expected an integer number of checkpoints, got {lag!r}")
    ignore_bootstrap("spearman", n_boot, seed)
    return _correlate(tables, x, y, (), fn="spearman", lag=int(lag), at=at, level=level)


def partial_spearman(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef,
                     controls: Sequence[MetricRef], *, at: At = "all", level: float = 0.95,
                     n_boot: int | None = None, seed: int | None = None) -> CorrelationResult:
    r"""Partial Spearman correlation ρ_{xy·Z} of two metrics given control metrics Z, per run.

    With R_x, R_y, R_Z the within-run ranks and D = [1, R_Z] (n × (k+1)),
    e_x = R_x − D D⁺ R_x, e_y = R_y − D D⁺ R_y and ρ_r = corr(e_x, e_y) (Kendall & Stuart vol. 2,
    ch. 27); ``rho`` = mean over runs. Interval and p-value (df = N − R(k+1) − 1): module
    docstring. Needs k + 3 common checkpoints per run. Only the part of the ranks that is
    linear in the control ranks is removed: a driver that acts on x through a rank-nonlinear
    path leaves a residual correlation.

    Args:
      controls: metrics to partial out, e.g. ``["ntk_trace", ("dormant_fraction_tau0.025",
        "layer1")]``; ``[]`` gives :func:`spearman`.
      Others as in :func:`spearman`.
    """
    if isinstance(controls, str) or (isinstance(controls, tuple) and len(controls) == 2
                                     and all(isinstance(s, str) for s in controls)):
        raise NtkplastError(f"controls: expected a list of metrics, got {controls!r}; wrap it: "
                            f"[{controls!r}]")
    ignore_bootstrap("partial_spearman", n_boot, seed)
    return _correlate(tables, x, y, list(controls), fn="partial_spearman", at=at, level=level)


def lead_lag(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef, *, max_lag: int = 5,
             difference: bool = False, at: At = "all", level: float = 0.95,
             n_boot: int | None = None, seed: int | None = None) -> LeadLagResult:
    r"""Lagged Spearman correlation ρ(lag) = ρ(x_t, y_{t+lag}) for lag = −max_lag … max_lag.

    Lag > 0 means x leads y: a peak of |ρ| at lag L > 0 says y follows x L checkpoints later
    (lags count positions among the common checkpoints). With ``difference=True`` the series are
    first-differenced per run (Δx_t = x_{t+1} − x_t), removing the shared trend that makes
    every lag correlate. Each lag is a :func:`spearman` (same interval and p-value); ``best_lag``
    maximises |ρ|, ties to the smaller |lag|. Needs 3 + max_lag (+1 when differencing) common
    checkpoints per run.
    """
    if not isinstance(max_lag, int | np.integer) or max_lag < 0:
        raise NtkplastError(f"max_lag: expected a non-negative integer, got {max_lag!r}")
    ignore_bootstrap("lead_lag", n_boot, seed)
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    results = tuple(_correlate(tables, x, y, (), fn="lead_lag", lag=int(lag),
                               difference=difference, at=at, level=level) for lag in lags)
    rho = np.abs([r.rho for r in results])
    by_size = np.argsort(np.abs(lags), kind="stable")
    best = int(lags[by_size[np.argmax(rho[by_size])]])
    label = (f"lead-lag spearman rho({_name(_ref(x, 'x'))}_t, {_name(_ref(y, 'y'))}_t+lag)"
             + (" of first differences" if difference else ""))
    return LeadLagResult(lags, results, best, label)
