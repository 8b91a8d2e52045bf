r"""Relating metrics across checkpoints and runs: rank correlation, partial correlation, lead–lag.

Functions a researcher calls on one :class:`~ntkplast.table.Table` per run (seed) to test a
hypothesis such as "NTK effective rank falls as plasticity is lost". A metric is named
``"metric"`` (layer ``"all"``), ``("metric", "layer<l>")``, ``("metric", "mean")`` (the strict
layer mean, :func:`ntkplast.table.layer_mean`) or ``"task"`` / ``"step"`` (each checkpoint's task
index or step, e.g. as a control). Two metrics are compared on the checkpoints where both are
finite (``at="task_end"`` keeps only task-end checkpoints, those with a row of
:data:`~ntkplast.table.TASK_END_METRICS`).

**Trend control (default).** Every diagnostic and every plasticity measure drifts with the task
index, so a correlation of two of them across the checkpoints of a run mostly measures the trend
they share — Yule's (1926) "nonsense correlation", Granger & Newbold's (1974) "spurious
regression" of two random walks. Every test here therefore takes ``trend``:

* ``"difference"`` (default): per run, first differences Δx_t = x_{t+1} − x_t of x, y and the
  controls (Granger & Newbold 1974), then the position t among the common checkpoints is
  partialled out of their ranks as one more control; with lag ≠ 0, y's own change at x's
  checkpoint is a control too (differencing makes consecutive changes negatively correlated,
  so an x that only moves *with* y would otherwise read as leading y's opposite change —
  with the control the question is Granger's (1969): does Δx_t predict Δy_{t+lag} beyond
  Δy_t?). Differencing removes a linear trend and
  any random-walk component; partialling the position out of the *ranks* of the differences
  also removes a trend whose slope changes monotonically with t (a saturating or accelerating
  curve: its differences are monotone in t, hence linear in rank). Simulated (R = 5 runs × 30
  tasks, 200 trials each, ``tests/stats/test_trend_control.py`` and
  ``benchmarks/trend_control_coverage.py``): with x and y sharing only a monotone trend of 2–4
  noise standard deviations plus independent AR(1) noise, the 95% interval covers 0 in 92.5–
  97.5% of trials for linear, saturating and sigmoid trends and φ up to 0.9. Not removed: a
  steep shared step (ten noise sd within a few tasks) on strongly autocorrelated noise — its
  differences rise and fall, so they are not monotone in t (31–52% coverage at φ = 0.9).
* ``"task"``: the position partialled out of the ranks of the levels (a linear detrend in
  rank); weaker against random-walk-like noise and curved trends.
* ``"none"``: the raw correlation, for comparison (a shared trend alone gives |ρ| near 1).

Statistics (every result prints its trend control, lag, scope and sample sizes):

* :func:`spearman`: per run, Spearman's ρ = Pearson correlation of the ranks (ties averaged;
  Spearman 1904) of the trend-controlled series; reported ``rho`` = mean of the per-run ρ_r
  (each run one replicate, so between-run level differences cannot create or mask a
  correlation).
* :func:`partial_spearman`: per run, ρ_{xy·Z}: rank-transform x, y and the controls Z, regress
  rank(x) and rank(y) on [1, rank(Z)] by least squares and correlate the residuals — the partial
  correlation of the ranks (Kendall & Stuart, *The Advanced Theory of Statistics* vol. 2, ch. 27;
  equal to −P_xy / √(P_xx P_yy) with P the inverse rank-correlation matrix). The trend control's
  position is one more column of Z.
* Confidence interval (:mod:`~ntkplast.stats.intervals`): with R ≥ 2 runs, the Student-t
  interval of the mean ρ over runs, ρ̄ ± t_{(1+level)/2, R−1} · s_ρ/√R clipped to [−1, 1] (the
  seed-to-seed spread; coverage near nominal from R = 3). With one run, where no between-run
  spread exists and checkpoints are dependent, the moving-block bootstrap over its checkpoints
  (Künsch 1989): B = 2,000 resamples of ⌈n/b⌉ blocks of b = ⌈n^{1/3}⌉ consecutive points,
  the statistic recomputed on each, the percentile interval (a fixed generator seed, so the
  same data give the same interval); approximate, read it with R = 1 in mind.
* p-value: pool the within-run residualised ranks of all runs (the centred ranks when there are no
  controls), r = their Pearson correlation, t = r √(df / (1 − r²)) with df = N − R(k + 1) − 1
  (N points, R runs, k controls including the trend's position), two-sided Student-t. For one
  run, no trend control and no controls this is exactly ``scipy.stats.spearmanr``'s p. It treats
  checkpoints as independent, which a time series is not: read it as a lower bound and prefer
  the interval over runs.
* :func:`lead_lag`: ρ between x at common checkpoint t and y at t + lag for lag = −max_lag …
  max_lag. **Positive lag = x leads y** (x's changes show up in y ``lag`` checkpoints later).
  Lags count positions in the sequence of common checkpoints, not steps; with differences, the
  lag is applied to the differenced series.

The series and the trend control's data step (differences, position, lag alignment) are in
:mod:`~ntkplast.stats.trend`; onsets (which metric moves first) in
:mod:`~ntkplast.stats.onsets`, the predictor test in :mod:`~ntkplast.stats.predictors`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import (
    TREND_TEXT,
    At,
    MetricRef,
    Trend,
    check_level,
    check_trend,
    ignore_bootstrap,
)
from ntkplast.stats._inputs import name as _name
from ntkplast.stats._inputs import ref as _ref
from ntkplast.stats._inputs import tables as _tables
from ntkplast.stats._ranks import correlation_p, partial, pearson, residual_ranks
from ntkplast.stats.intervals import t_interval
from ntkplast.stats.trend import aligned, metric_series, run_data
from ntkplast.table import Table

__all__ = ["At", "CorrelationResult", "LeadLagResult", "MetricRef", "Trend", "aligned",
           "lead_lag", "metric_series", "partial_spearman", "spearman"]

BLOCK_RESAMPLES = 2000
"""Moving-block bootstrap resamples of the one-run interval."""


class CorrelationResult(NamedTuple):
    """A rank correlation with its interval and sample sizes (module docstring for the method).

    Attributes:
      rho: mean over runs of the per-run coefficient.
      ci_low, ci_high: interval at ``level`` (Student-t over runs; one run: jackknife over
        checkpoints).
      p_value: two-sided p of the pooled within-run test.
      n_runs: runs R.  n_points: points N summed over runs.  n_per_run: points in each run.
      per_run: the per-run coefficients.
      ci_over: ``"runs"`` (Student-t over runs) or ``"blocks"`` (one run: moving-block
        bootstrap over its checkpoints).
      level: interval coverage.  label: what was correlated.
      trend: the trend control (:data:`~ntkplast.stats.Trend`).  lag: y's offset in positions.
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
    trend: str = "none"
    lag: int = 0

    def __str__(self) -> str:
        per = "/".join(map(str, self.n_per_run))
        return (f"{self.label}: rho = {self.rho:+.3f}, {100 * self.level:g}% CI "
                f"[{self.ci_low:+.3f}, {self.ci_high:+.3f}] ({_interval_name(self.ci_over)}, "
                f"R = {self.n_runs}), p = {self.p_value:.3g} (pooled within-run); "
                f"trend: {TREND_TEXT[self.trend]}"
                + (", y's own change at x's checkpoint partialled out"
                   if self.trend == "difference" and self.lag else "")
                + f"; lag {self.lag:+d}; "
                f"n_runs = {self.n_runs}, n_points = {self.n_points} ({per} per run)")


def _interval_name(ci_over: str) -> str:
    return ("Student-t over runs" if ci_over == "runs" else
            "moving-block bootstrap over the checkpoints of one run, approximate")


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
        lines = [f"{self.label} (lag > 0: x leads y; trend: {TREND_TEXT[r0.trend]}; "
                 f"{100 * r0.level:g}% CI: {_interval_name(r0.ci_over)}, R = {r0.n_runs}):",
                 "    lag  rho     CI                p        n_points"]
        for lag, r in zip(self.lags.tolist(), self.results):
            mark = " *" if lag == self.best_lag else ""
            lines.append(f"  {lag:+5d}  {r.rho:+.3f}  [{r.ci_low:+.3f}, {r.ci_high:+.3f}]  "
                         f"{r.p_value:<8.2g} {r.n_points}{mark}")
        lines.append(f"best lag {self.best_lag:+d} (largest |rho|)")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------- core


def _pooled_p(data: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """p of the pooled within-run test (module docstring): r of the residualised ranks of all
    runs, df = N − R(k + 1) − 1."""
    rx = np.concatenate([residual_ranks(d[0], d[2]) for d in data])
    ry = np.concatenate([residual_ranks(d[1], d[2]) for d in data])
    r = float(np.clip(pearson(rx, ry), -1.0, 1.0))
    return correlation_p(r, len(rx) - len(data) * (data[0][2].shape[1] + 1) - 1)


def _block_interval(x: np.ndarray, y: np.ndarray, z: np.ndarray,
                    level: float) -> tuple[float, float]:
    """Moving-block bootstrap percentile interval of ρ_{xy·Z} over the n points of one run
    (Künsch 1989; module docstring): blocks of b = ⌈n^{1/3}⌉ consecutive points."""
    n = len(x)
    b = int(np.ceil(n ** (1 / 3)))
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n - b + 1, size=(BLOCK_RESAMPLES, -(-n // b)))
    idx = (starts[..., None] + np.arange(b)).reshape(BLOCK_RESAMPLES, -1)[:, :n]
    reps = partial(x[idx], y[idx], z[idx])
    reps = reps[np.isfinite(reps)]
    if len(reps) < BLOCK_RESAMPLES // 2:  # resamples mostly constant: no interval
        return float("nan"), float("nan")
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _correlate(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef,
               controls: Sequence[MetricRef], *, fn: str, lag: int, trend: Trend,
               at: At, level: float) -> CorrelationResult:
    runs = _tables(tables, fn)
    xr, yr = _ref(x, "x"), _ref(y, "y")
    zr = [_ref(c, f"controls[{i}]") for i, c in enumerate(controls)]
    check_level(level)
    trend = check_trend(trend)
    if not isinstance(lag, int | np.integer):
        raise NtkplastError(f"lag: expected an integer number of checkpoints, got {lag!r}")
    lag = int(lag)
    data = run_data(runs, [xr, yr, *zr], fn=fn, lag=lag, trend=trend, at=at)
    per_run = np.array([float(partial(*d)) for d in data])
    bad = np.flatnonzero(~np.isfinite(per_run))
    if len(bad):
        raise NtkplastError(f"{fn}: correlation undefined in run {int(bad[0])}: {_name(xr)} or "
                            f"{_name(yr)} is constant over its {len(data[bad[0]][0])} checkpoints"
                            f"{' or fully explained by the controls' if data[0][2].size else ''}")
    p = _pooled_p(data)
    if len(data) >= 2:     # Student-t over the per-run ρ
        _, lo, hi = t_interval(per_run, level)
        lo, hi, over = max(lo, -1.0), min(hi, 1.0), "runs"
    else:                  # one run: moving-block bootstrap over its checkpoints
        lo, hi = _block_interval(*data[0], level)
        over = "blocks"
    what = "partial spearman" if zr else "spearman"
    label = f"{what} rho({_name(xr)}, {_name(yr)}"
    label += f" | {', '.join(map(_name, zr))})" if zr else ")"
    label += (f" at lag {lag:+d}" if lag else "") + f" [{TREND_TEXT[trend]}]"
    label += " at task ends" if at == "task_end" else ""
    return CorrelationResult(float(per_run.mean()), float(lo), float(hi), p, len(data),
                             sum(len(d[0]) for d in data), tuple(len(d[0]) for d in data),
                             tuple(per_run.tolist()), over, level, label, trend, lag)


# ----------------------------------------------------------------------------------- public


def spearman(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef, *, lag: int = 0,
             trend: Trend = "difference", at: At = "all", level: float = 0.95,
             n_boot: int | None = None, seed: int | None = None) -> CorrelationResult:
    r"""Spearman rank correlation of two metrics across checkpoints, trend-controlled, averaged
    over runs.

    ρ_r = corr(rank x_t, rank y_{t+lag}) over the common checkpoints t of run r (ties get average
    ranks; Spearman 1904), after the trend control: by default first differences of both with
    the position partialled out of their ranks (module docstring); ``rho`` = (1/R) Σ_r ρ_r.
    Interval and p-value: module docstring.

    Args:
      tables: one Table per run (a single Table is one run).
      x: ``"metric"`` (layer ``"all"``), ``("metric", "layer<l>")``, ``("metric", "mean")``,
        or ``"task"`` / ``"step"``.
      y: the same forms as ``x``.
      lag: pair x at common checkpoint t with y at t + lag (lag > 0: x leads y).
      trend: ``"difference"`` (default), ``"task"`` or ``"none"`` (the raw correlation).
      at: ``"all"`` checkpoints or only ``"task_end"`` ones.
      level: interval coverage.
      n_boot: deprecated, ignored with a warning.
      seed: deprecated, ignored with a warning.

    Raises:
      NtkplastError: no tables, an empty table, an unknown metric or layer, too few common
        checkpoints in a run, or a constant series.

    Examples:
      y moves with x from checkpoint to checkpoint (y = 3x + 1), so their changes have the same
      ranks:

      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> def run(**series):       # one Table per run: checkpoint t, step 100·t, task t
      ...     return Table.from_rows([(t, 100 * t, t, "all", name, v)
      ...                             for name, values in series.items()
      ...                             for t, v in enumerate(values)])
      >>> x = [0.1, 0.5, 0.2, 1.0, 0.4, 1.3, 0.6, 1.8]
      >>> res = stats.spearman(run(x=x, y=[3 * v + 1 for v in x]), "x", "y")
      >>> print(f"rho = {res.rho:+.3f} over {res.n_points} changes, interval over {res.ci_over}")
      rho = +1.000 over 7 changes, interval over blocks

      Two series that share only a rising trend correlate strongly as they stand; the trend
      controls remove what the trend made:

      >>> x = [t + e for t, e in enumerate([0.6, -0.9, 0.3, 0.8, -0.5, -0.2, 0.9, -0.7, 0.1, 0.4])]
      >>> y = [t + e for t, e in enumerate([-0.4, 0.7, 0.9, -0.8, 0.2, -0.6, 0.5, 0.3, -0.9, 0.0])]
      >>> for trend in ("none", "task", "difference"):
      ...     print(trend, f"{stats.spearman(run(x=x, y=y), 'x', 'y', trend=trend).rho:+.3f}")
      none +0.915
      task -0.430
      difference -0.185
    """
    ignore_bootstrap("spearman", n_boot, seed)
    return _correlate(tables, x, y, (), fn="spearman", lag=lag, trend=trend, at=at,
                      level=level)


def partial_spearman(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef,
                     controls: Sequence[MetricRef], *, lag: int = 0,
                     trend: Trend = "difference", at: At = "all", level: float = 0.95,
                     n_boot: int | None = None, seed: int | None = None) -> CorrelationResult:
    r"""Partial Spearman correlation ρ_{xy·Z} of two metrics given control metrics Z, per run.

    With R_x, R_y, R_Z the within-run ranks (of the first differences, by default) and
    D = [1, R_Z] (n × (k+1); the trend control's position is one more column),
    e_x = R_x − D D⁺ R_x, e_y = R_y − D D⁺ R_y and ρ_r = corr(e_x, e_y) (Kendall & Stuart vol. 2,
    ch. 27); ``rho`` = mean over runs. Interval and p-value (df = N − R(k+1) − 1): module
    docstring. Only the part of the ranks that is linear in the control ranks is removed: a
    driver that acts on x through a rank-nonlinear path leaves a residual correlation.
    Arguments other than ``controls`` are as in :func:`spearman` (``lag``: y at t + lag, x and
    the controls at t).

    Args:
      controls: metrics to partial out, e.g. ``["ntk_trace", ("dormant_fraction_tau0",
        "mean")]``, or ``"task"`` / ``"step"``; ``[]`` gives :func:`spearman`.

    Examples:
      x and y both follow a driver z; given z, little of their correlation is left:

      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> z = [0.0, 2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 7.0, 9.0, 6.5, 10.0]
      >>> x = [v + e for v, e in zip(z, [-0.7, -0.6, 0.9, -1.2, 0.3, 0.7, -0.9, -1.3, -0.7, 0.5,
      ...                                0.2, -1.0])]
      >>> y = [v + e for v, e in zip(z, [-0.2, 0.5, -0.2, 0.4, 1.4, 0.5, -0.3, -0.9, -0.5, 0.0,
      ...                                1.2, 0.8])]
      >>> run = Table.from_rows([(t, 100 * t, t, "all", name, v)
      ...                        for name, values in (("x", x), ("y", y), ("z", z))
      ...                        for t, v in enumerate(values)])
      >>> print(f"{stats.spearman(run, 'x', 'y').rho:+.3f}")
      +0.642
      >>> print(f"{stats.partial_spearman(run, 'x', 'y', ['z']).rho:+.3f}")
      -0.052
    """
    if isinstance(controls, str) or (isinstance(controls, tuple) and len(controls) == 2
                                     and all(isinstance(s, str) for s in controls)):
        raise NtkplastError(f"controls: expected a list of metrics, got {controls!r}; wrap it: "
                            f"[{controls!r}]")
    ignore_bootstrap("partial_spearman", n_boot, seed)
    return _correlate(tables, x, y, list(controls), fn="partial_spearman", lag=lag,
                      trend=trend, at=at, level=level)


def lead_lag(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef, *, max_lag: int = 5,
             trend: Trend = "difference", difference: bool | None = None, at: At = "all",
             level: float = 0.95, n_boot: int | None = None,
             seed: int | None = None) -> LeadLagResult:
    r"""Lagged Spearman correlation ρ(lag) = ρ(x_t, y_{t+lag}) for lag = −max_lag … max_lag.

    Lag > 0 means x leads y: a peak of |ρ| at lag L > 0 says y follows x L checkpoints later
    (lags count positions among the common checkpoints). Each lag is a :func:`spearman` with the
    same ``trend`` control (same interval and p-value); without one (``trend="none"``) monotone
    trends make every lag correlate. ``best_lag`` maximises |ρ|, ties to the smaller |lag|.
    ``difference``: deprecated; True means ``trend="difference"``, False ``trend="none"``.

    Examples:
      y repeats x one checkpoint later, so the correlation peaks at lag +1 (x leads):

      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> x = [0.3, 1.0, 0.2, 0.8, 0.5, 0.9, 0.1, 0.7, 0.4, 0.6, 0.0, 1.1]
      >>> y = [0.5] + x[:-1]
      >>> run = Table.from_rows([(t, 100 * t, t, "all", name, v)
      ...                        for name, values in (("x", x), ("y", y))
      ...                        for t, v in enumerate(values)])
      >>> res = stats.lead_lag(run, "x", "y", max_lag=2)
      >>> res.lags.tolist(), res.best_lag, f"{res.best.rho:+.3f}"
      ([-2, -1, 0, 1, 2], 1, '+1.000')
    """
    if not isinstance(max_lag, int | np.integer) or max_lag < 0:
        raise NtkplastError(f"max_lag: expected a non-negative integer, got {max_lag!r}")
    ignore_bootstrap("lead_lag", n_boot, seed)
    if difference is not None:
        warnings.warn("lead_lag: difference= is deprecated; pass trend='difference' (the "
                      "default) or trend='none'", DeprecationWarning, stacklevel=2)
        trend = "difference" if difference else "none"
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    results = tuple(_correlate(tables, x, y, (), fn="lead_lag", lag=int(lag), trend=trend,
                               at=at, level=level) for lag in lags)
    rho = np.abs([r.rho for r in results])
    by_size = np.argsort(np.abs(lags), kind="stable")
    best = int(lags[by_size[np.argmax(rho[by_size])]])
    label = (f"lead-lag spearman rho({_name(_ref(x, 'x'))}_t, {_name(_ref(y, 'y'))}_t+lag)")
    return LeadLagResult(lags, results, best, label)
