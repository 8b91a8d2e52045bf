"""Result types of the predictor test (:mod:`ntkplast.stats.predictors`): one predictor's
statistic, a paired contrast, a ranking in one scope, the comparison and its lead–lag sweep.
Each prints the table a reader needs, with its trend control, interval and R."""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from ntkplast.stats._inputs import TREND_TEXT
from ntkplast.stats._inputs import name as _name

__all__ = ["Contrast", "PredictorComparison", "PredictorLeadLag", "PredictorRanking",
           "PredictorStat"]


class PredictorStat(NamedTuple):
    """One predictor's rank correlation with the target in one scope (pooled or within-run).

    Attributes:
      name: display name.  metric, layer: what was read.
      rho: the coefficient (pooled ρ, or the mean of per-run ρ_r).
      ci_low, ci_high: jackknife-t interval at the comparison's ``level`` (pooled: Fisher z
        scale; within-run: the Student-t interval of the mean ρ_r).
      p_value: analytic two-sided p (pooled: Spearman's t-test treating points as independent,
        optimistic under clustering; within-run: one-sample t-test of ρ_r over runs, NaN with
        fewer than 2 runs).
      p_jackknife: two-sided jackknife-t p of ρ = 0, 2 P(T_{U−1} > |ρ| / se_J) over the U
        units (runs).
      n_points: (predictor, target) pairs used.  n_runs: runs contributing (within-run: runs
        whose ρ_r is defined).
    """

    name: str
    metric: str
    layer: str
    rho: float
    ci_low: float
    ci_high: float
    p_value: float
    p_jackknife: float
    n_points: int
    n_runs: int


class Contrast(NamedTuple):
    """Paired jackknife contrast Δ = |ρ_best| − |ρ_other| (the same unit left out of both)."""

    best: str
    other: str
    diff: float
    ci_low: float
    ci_high: float
    p_jackknife: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 on the positive side: best beats other at the level."""
        return bool(self.ci_low > 0)


class PredictorRanking(NamedTuple):
    """All predictors in one scope, the one with the largest |ρ|, and its contrasts."""

    scope: str
    stats: tuple[PredictorStat, ...]
    best: str
    contrasts: tuple[Contrast, ...]
    level: float

    @property
    def beats(self) -> tuple[str, ...]:
        """Predictors the best one beats with the contrast interval above 0."""
        return tuple(c.other for c in self.contrasts if c.significant)

    def summary(self) -> str:
        pct = f"{100 * self.level:g}%"
        width = max(len("predictor"), *(len(s.name) for s in self.stats))
        diffs = {c.other: c for c in self.contrasts}
        lines = [f"{self.scope}:",
                 f"  {'predictor':<{width}}  {'rho':<6}  {pct + ' CI':<16}  {'p':<8} "
                 f"{'p_jack':<8} {'n_pts':<6} {'runs':<5} |rho_best|-|rho| [{pct} CI]"]
        for s in self.stats:
            c = diffs.get(s.name)
            tail = ("best" if s.name == self.best else
                    f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                    + (" *" if c.significant else "") if c is not None else "")
            lines.append(f"  {s.name:<{width}}  {s.rho:+.3f}  [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"
                         f"  {s.p_value:<8.2g} {s.p_jackknife:<8.2g} {s.n_points:<6d} "
                         f"{s.n_runs:<5d} {tail}")
        beats = self.beats
        lines.append(f"  best: {self.best} (largest |rho|); interval of the difference above 0 "
                     f"against {len(beats)}/{len(self.contrasts)} others"
                     + (f": {', '.join(beats)}" if beats else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class PredictorComparison(NamedTuple):
    """Result of :func:`compare_predictors`; ``print(result)`` shows both tables.

    Attributes:
      target: ``(metric, layer)`` predicted.
      lag: target task = predictor task + lag.
      pooled: the :class:`PredictorRanking` of the pooled points.
      within: the :class:`PredictorRanking` of the mean of per-run ρ.
      runs: ``(method, seed index)`` of every run.
      ci_over: ``"runs"`` (runs left out one at a time) or ``"tasks"`` (one run: its tasks
        left out instead).
      complete_cases: whether every predictor used the same points.
      level: interval coverage.
      trend: the trend control (:data:`~ntkplast.stats.Trend`).
    """

    target: tuple[str, str]
    lag: int
    pooled: PredictorRanking
    within: PredictorRanking
    runs: tuple[tuple[str, int], ...]
    ci_over: str
    complete_cases: bool
    level: float
    trend: str = "none"

    def summary(self) -> str:
        methods = sorted({m for m, _ in self.runs})
        head = (f"which task-end metric predicts {_name(self.target)} {self.lag:+d} task(s) "
                f"later? Spearman rho, trend: {TREND_TEXT[self.trend]}"
                + (", the target's own change at task t partialled out"
                   if self.trend == "difference" and self.lag else "") + "; "
                f"{100 * self.level:g}% jackknife-t interval over "
                f"{self.ci_over}"
                + (" (one run: tasks are autocorrelated, optimistic)"
                   if self.ci_over == "tasks" else "")
                + f"; R = {len(self.runs)} run(s) of "
                f"{len(methods)} method(s)"
                + (f" ({', '.join(methods)}); " if any(methods) else "; ")
                + ("same points for every predictor" if self.complete_cases else
                   "each predictor on its own finite points"))
        return "\n".join([head, self.pooled.summary(), self.within.summary()])

    def __str__(self) -> str:
        return self.summary()


class PredictorLeadLag(NamedTuple):
    """:func:`compare_predictors` at each lag; lag > 0: the predictor leads the target."""

    lags: np.ndarray
    results: tuple[PredictorComparison, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.results[0].pooled.stats)

    def table(self, scope: Literal["pooled", "within"] = "pooled") -> np.ndarray:
        """``(lags, predictors, 3)``: ρ, ci_low, ci_high."""
        return np.array([[(s.rho, s.ci_low, s.ci_high) for s in getattr(r, scope).stats]
                         for r in self.results])

    def __str__(self) -> str:
        lines = [f"lead-lag of predictors with {_name(self.results[0].target)} over tasks "
                 "(lag > 0: predictor leads); rho pooled / within-run:"]
        width = max(len(n) for n in self.names)
        lines.append(f"  {'lag':>4}  " + "  ".join(f"{n[:width]:>{width}}" for n in self.names))
        for lag, r in zip(self.lags.tolist(), self.results):
            cells = [f"{p.rho:+.2f}/{w.rho:+.2f}" for p, w in zip(r.pooled.stats, r.within.stats)]
            lines.append(f"  {lag:+4d}  " + "  ".join(f"{c:>{width}}" for c in cells))
        return "\n".join(lines)
