"""Which metric predicts plasticity: forest plot of rank correlations and their lead–lag.

Both functions draw results of :mod:`ntkplast.stats` (compute first, draw second, so a user
can print the numbers the figure shows) and return the matplotlib figure:

* :func:`predictor_comparison` draws a :func:`~ntkplast.stats.compare_predictors` result:
  per predictor, Spearman's ρ with its jackknife-over-runs interval, pooled and within-run, the
  best predictor marked and its paired contrast |ρ_best| − |ρ_other| written beside each other.
* :func:`lead_lag_plot` draws ρ against the lag in tasks with its interval band, from
  :func:`~ntkplast.stats.predictor_lead_lag` or from a mapping name →
  :func:`~ntkplast.stats.lead_lag` result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.figures._style import PALETTE, style, subplots
from ntkplast.stats import TREND_TEXT, LeadLagResult, PredictorComparison, PredictorLeadLag

__all__ = ["predictor_comparison", "lead_lag_plot"]

_SCOPES = (("pooled", None), ("within", "within-run (mean of ρ_r)"))  # pooled: its own scope


def _target(result: PredictorComparison) -> str:
    metric, layer = result.target
    return metric if layer == "all" else f"{metric}[{layer}]"


def predictor_comparison(result: PredictorComparison, title: str = "") -> Any:
    """Forest plot: each predictor's ρ(predictor at the end of task t, target on task t + lag)
    with its delete-one-run jackknife-t interval, pooled and within-run (two panels).

    The largest |ρ| of each panel is drawn filled with a ★ on its label; beside every other
    predictor stands Δ = |ρ_best| − |ρ_other| with its paired interval, bold where the interval
    lies above 0 (the best predicts better at the result's level). A dotted line marks ρ = 0.
    """
    if not isinstance(result, PredictorComparison):
        raise NtkplastError("predictor_comparison: expected the result of "
                            f"stats.compare_predictors, got {type(result).__name__}")
    names = [s.name for s in result.pooled.stats]
    n = len(names)
    fig, axes = subplots(1, 2, figsize=(10.5, 0.45 * n + 1.6), sharey=True, squeeze=False)
    y = np.arange(n)[::-1]
    for j, (ax, (scope, label)) in enumerate(zip(axes[0], _SCOPES)):
        rank = getattr(result, scope)
        label = label or rank.scope
        diffs = {c.other: c for c in rank.contrasts}
        for i, s in enumerate(rank.stats):
            best = s.name == rank.best
            col = PALETTE[1] if best else PALETTE[0]
            if np.isfinite(s.ci_low):
                ax.plot([s.ci_low, s.ci_high], [y[i]] * 2, color=col, lw=2.2 if best else 1.4,
                        solid_capstyle="butt")
            ax.plot([s.rho], [y[i]], marker="D" if best else "o", ms=7 if best else 5,
                    color=col, mfc=col if best else "white", mew=1.4, ls="none")
            c = diffs.get(s.name)
            text = "best" if best else (f"Δ|ρ| {c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
                                        if c is not None else "")
            ax.annotate(text, (1.01, y[i]), xycoords=("axes fraction", "data"), va="center",
                        fontsize=7, color=col,
                        fontweight="bold" if best or (c is not None and c.significant)
                        else "normal", annotation_clip=False)
        ax.axvline(0.0, color="0.45", lw=0.8, ls=":", zorder=0)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_title(f"{label}\n{result.pooled.stats[0].n_points} points, "
                     f"R = {len(result.runs)} runs" if j == 0 else
                     f"{label}\nR = {len(result.runs)} runs")
        ax.set_xlabel(f"Spearman ρ(predictor at task t, {_target(result)} at t{result.lag:+d})\n"
                      f"trend: {TREND_TEXT[result.trend]}\n{100 * result.level:g}% "
                      f"jackknife-t interval over {result.ci_over}", fontsize=8)
    axes[0, 0].set_yticks(y)
    axes[0, 0].set_yticklabels([f"★ {nm}" if nm == result.pooled.best else nm for nm in names])
    axes[0, 0].set_ylabel("predictor (end of task t)")
    if result.within.best != result.pooled.best:
        axes[0, 1].text(0.02, 0.02, f"within-run best: {result.within.best}",
                        transform=axes[0, 1].transAxes, fontsize=7, color=PALETTE[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout(w_pad=9.0)
    return fig


def _series(result: PredictorLeadLag | Mapping[str, LeadLagResult],
            scope: str) -> tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    if isinstance(result, PredictorLeadLag):
        table = result.table(scope)                  # (lags, predictors, 3)
        first = result.results[0]
        target = _target(first)
        return target, [(name, result.lags, table[:, p].T)
                        for p, name in enumerate(result.names)]
    if isinstance(result, Mapping) and result and all(isinstance(v, LeadLagResult)
                                                      for v in result.values()):
        rows = []
        for name, res in result.items():
            stats = np.array([(r.rho, r.ci_low, r.ci_high) for r in res.results]).T
            rows.append((str(name), np.asarray(res.lags), stats))
        return "target", rows
    raise NtkplastError("lead_lag_plot: expected stats.predictor_lead_lag(...) or a mapping "
                        "name → stats.lead_lag(...) result, got "
                        f"{type(result).__name__}")


def lead_lag_plot(result: PredictorLeadLag | Mapping[str, LeadLagResult], *,
                  scope: Literal["pooled", "within"] = "pooled", title: str = "") -> Any:
    """ρ(predictor at task t, target at task t + lag) against the lag, one line per predictor
    with its interval as a band (jackknife-t over runs). Lag > 0: the predictor leads (a driver
    of plasticity loss peaks right of the dashed line at lag 0). ``scope`` picks the pooled or
    within-run ρ of a :func:`~ntkplast.stats.predictor_lead_lag` result (ignored for
    :func:`~ntkplast.stats.lead_lag` results, whose ρ is the within-run mean and whose lags
    count checkpoints)."""
    if scope not in ("pooled", "within"):
        raise NtkplastError(f"scope: expected 'pooled' or 'within', got {scope!r}")
    target, rows = _series(result, scope)
    fig, ax = subplots(1, 1, figsize=(6.0, 3.6))
    for i, (name, lags, (rho, lo, hi)) in enumerate(rows):
        st = style(i)
        ax.plot(lags, rho, marker="o", ms=3.5, label=name, **st)
        if np.isfinite(lo).any():
            ax.fill_between(lags, lo, hi, color=st["color"], alpha=0.12, lw=0)
    ax.axhline(0.0, color="0.45", lw=0.8, ls=":")
    ax.axvline(0.0, color="0.45", lw=0.8, ls="--")
    ax.set_xticks(np.unique(np.concatenate([r[1] for r in rows])))
    ax.set_xlabel("lag (tasks; > 0: predictor leads)")
    ax.set_ylabel(f"Spearman ρ(predictor_t, {target}_t+lag)\n"
                  + ("pooled" if scope == "pooled" else "within-run"))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
