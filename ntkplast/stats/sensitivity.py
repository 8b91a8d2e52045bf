"""How a predictor verdict depends on the analyst's choices: trend control × lag × measure.

A verdict such as "NTK conditioning predicts the next task's plasticity" rests on choices — the
measure, the trend control, the lag. :func:`sensitivity` reruns
:func:`~ntkplast.stats.predictors.compare_predictors` over a grid of them on the same runs
and returns one row per (trend, lag, scope, predictor), so a reader sees which choice, if any,
turns the verdict. A verdict that holds only under ``trend="none"`` rides the shared time
trend (Yule 1926; Granger & Newbold 1974).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import TREND_TEXT, MetricRef, Trend
from ntkplast.stats.predictors import PredictorSpec, Runs, compare_predictors

__all__ = ["Sensitivity", "SensitivityRow", "sensitivity"]


class SensitivityRow(NamedTuple):
    """One predictor's coefficient under one (trend, lag, scope); ``best``: whether it had the
    largest |ρ| in that comparison, ``beats``: how many others it beat with a paired contrast
    interval above 0 (only for the best)."""

    trend: str
    lag: int
    scope: str
    predictor: str
    rho: float
    ci_low: float
    ci_high: float
    n_runs: int
    best: bool
    beats: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


class Sensitivity(NamedTuple):
    """Rows of :func:`sensitivity`; ``print`` gives the table, :meth:`verdicts` one line per
    predictor."""

    target: str
    rows: tuple[SensitivityRow, ...]
    level: float

    def verdicts(self, predictor: str) -> str:
        """``"k/n settings exclude 0 (signs +/−), best in b/n"`` for one predictor."""
        rows = [r for r in self.rows if r.predictor == predictor]
        ex = [r for r in rows if r.excludes_zero]
        signs = "".join(sorted({"+" if r.rho > 0 else "−" for r in ex}))
        return (f"{predictor}: interval excludes 0 in {len(ex)}/{len(rows)} settings"
                + (f" (sign {signs})" if ex else "")
                + f", best in {sum(r.best for r in rows)}/{len(rows)}")

    def __str__(self) -> str:
        width = max(len(r.predictor) for r in self.rows)
        lines = [f"sensitivity of the predictor test for {self.target} "
                 f"({100 * self.level:g}% jackknife-t intervals over runs):",
                 f"  {'trend':<44} {'lag':>3}  {'scope':<8} {'predictor':<{width}}  rho     "
                 "interval           R   "]
        for r in self.rows:
            mark = (f"  best, beats {r.beats}" if r.best else "")
            lines.append(f"  {TREND_TEXT[r.trend]:<44} {r.lag:+3d}  {r.scope:<8} "
                         f"{r.predictor:<{width}}  {r.rho:+.3f}  [{r.ci_low:+.3f}, "
                         f"{r.ci_high:+.3f}]  {r.n_runs:<3d}{mark}")
        return "\n".join(lines)


def sensitivity(tables: Runs, predictors: Mapping[str, PredictorSpec],
                target: MetricRef = "online_accuracy", *,
                trends: Sequence[Trend] = ("difference", "task", "none"),
                lags: Sequence[int] = (1, 0, 2), complete_cases: bool = True,
                level: float = 0.95) -> Sensitivity:
    """:func:`~ntkplast.stats.predictors.compare_predictors` of ``predictors`` for ``target``
    under every ``trend`` × ``lag``, both scopes (pooled, within-run), one row each. A setting
    the runs are too short for (too few tasks after differencing and the lag) is left out.
    ``complete_cases=False`` lets each predictor keep its own finite points (needed when one
    measure is undefined where another is not, e.g. a non-zero-σ measure at a dead layer).

    Raises:
      NtkplastError: no setting could be computed.

    Examples:
      x shares only a trend with the target y, and "noise" nothing: the raw setting reads x as a
      strong predictor, the trend-controlled one does not:

      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> def run(r, tasks=12):   # one task end per task; deterministic scatter around the trends
      ...     rows = []
      ...     for t in range(tasks):
      ...         values = {"test_accuracy": 0.9, "x": t + ((7 * t + 3 * r) % 11 - 5) / 4,
      ...                   "y": -t + ((5 * t + 2 * r + 1) % 13 - 6) / 4,
      ...                   "noise": ((3 * t + 5 * r + 2) % 7 - 3) / 2}
      ...         rows += [(t, 10 * t, t, "all", m, float(v)) for m, v in values.items()]
      ...     return Table.from_rows(rows)
      >>> sens = stats.sensitivity([run(r) for r in range(4)], {"x": "x", "noise": "noise"},
      ...                               "y", trends=("none", "difference"), lags=(1,))
      >>> for row in sens.rows:
      ...     if row.predictor == "x":
      ...         print(f"{row.trend:<10} {row.scope:<6} {row.rho:+.3f} {row.excludes_zero}")
      none       pooled -0.939 True
      none       within -0.901 True
      difference pooled +0.050 False
      difference within -0.012 False
      >>> sens.verdicts("x")
      'x: interval excludes 0 in 2/4 settings (sign −), best in 4/4'
    """
    rows = []
    for trend in trends:
        for lag in lags:
            try:
                res = compare_predictors(tables, predictors, target, lag=lag, trend=trend,
                                         complete_cases=complete_cases, level=level)
            except NtkplastError:
                continue
            for scope, ranking in (("pooled", res.pooled), ("within", res.within)):
                rows += [SensitivityRow(trend, lag, scope, s.name, s.rho, s.ci_low, s.ci_high,
                                        s.n_runs, s.name == ranking.best,
                                        len(ranking.beats) if s.name == ranking.best else 0)
                         for s in ranking.stats]
    if not rows:
        raise NtkplastError("sensitivity: no (trend, lag) setting could be computed on these "
                            "runs; they need more task ends than the largest lag + 5")
    name = target if isinstance(target, str) else f"{target[0]}[{target[1]}]"
    return Sensitivity(name, tuple(rows), float(level))
