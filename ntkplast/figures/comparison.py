"""Methods side by side over a task stream: each metric at task ends, mean over seeds with a band.

Every function takes ``tables``: method name → one metrics :class:`~ntkplast.table.Table` per
seed (what :func:`~ntkplast.experiments.grid.run_grid` returns in ``.tables``, or your own), and
returns the matplotlib figure. The band is the 95% Student-t interval of the mean over the R seeds
(:func:`ntkplast.stats.intervals.mean_interval`; R is in the legend); with one seed there is no
band. On a log-scale panel (condition number, trace) line and band are the geometric mean
exp(mean log v) and the t-interval of log v mapped back. A metric measured per layer is
averaged over the layers first (``layer="mean"``, :func:`ntkplast.table.task_end_values`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.figures._style import style, subplots
from ntkplast.stats.intervals import log_positive, mean_interval
from ntkplast.table import Table, per_task

__all__ = ["PLASTICITY_PANELS", "REGIME_PANELS", "THEORY_PANELS", "UNIT_INTERVAL", "band",
           "kernel_regime", "mark_condition_floor", "per_task_panels", "plasticity_curves",
           "task_values", "theory_panels", "unit_interval"]

Tables = Mapping[str, Sequence[Table]]

# (metric, layer, axis label, log scale)
PLASTICITY_PANELS = (
    ("plasticity_score", "all", "plasticity measure of each new task\n(the run's "
     "plasticity_measure)", False),
    ("plasticity_loss_baseline", "all", "plasticity loss: common baseline\n− run "
     "(> 0: plasticity lost)", False),
    ("online_accuracy", "all", "online accuracy during the task", False),
    ("test_accuracy", "all", "test accuracy on the new task\n(end of its training)", False),
)
THEORY_PANELS = (
    ("ntk_condition", "all", "NTK condition number λ_max/λ_min", True),
    ("ntk_effective_rank", "all", "NTK effective rank", False),
    ("ntk_trace", "all", "NTK trace", True),
    ("ntk_decay_exponent", "all", "NTK eigenvalue decay exponent", False),
    ("jac_isometry_deviation", "mean", "isometry deviation, layer mean\n"
     "mean tanh²(log σ), zeros included", False),
    ("dormant_fraction_tau0", "mean", "dead-unit fraction (τ = 0),\nlayer mean", False),
)
REGIME_PANELS = (
    ("kernel_distance_init", "all", "kernel distance from initialisation", False),
    ("kernel_distance_init_deflated", "all", "kernel distance from initialisation,\n"
     "top eigendirection removed", False),
    ("kernel_distance_infinite", "all", "kernel distance from\nthe infinite-width kernel", False),
)


UNIT_INTERVAL = ("accuracy", "fraction", "kernel_distance", "isometry_deviation", "overlap",
                 "frac_sigma", "isometry_index", "at_floor")
"""Name parts of metrics that live in [0, 1]: their bands are clipped to it."""


def unit_interval(metric: str) -> bool:
    """Whether ``metric`` lives in [0, 1] (:data:`UNIT_INTERVAL`), so its interval must too."""
    return any(part in metric for part in UNIT_INTERVAL) and "loss" not in metric


def _check(tables: Tables) -> None:
    if not tables or any(len(v) == 0 for v in tables.values()):
        raise NtkplastError("figures: expected method name → a non-empty list of tables (one "
                            "per seed), e.g. run_grid(...).tables")


def task_values(runs: Sequence[Table], metric: str, layer: str = "all") -> np.ndarray:
    """``seeds × tasks`` values of ``metric`` at task ends (:func:`ntkplast.table.per_task`);
    ``layer="mean"`` averages the ``layer<l>`` rows; ``running_<metric>`` is the running mean
    v̄_t = (1/(t+1)) Σ_{s ≤ t} v_s of ``<metric>`` over tasks."""
    if metric.startswith("running_"):
        v = task_values(runs, metric[len("running_"):], layer)
        return np.cumsum(v, axis=1) / np.arange(1, v.shape[1] + 1)
    if layer == "mean" and not any(np.any((t.columns["metric"] == metric)
                                          & (t.columns["layer"] != "all")) for t in runs):
        raise NtkplastError(f"figures: no per-layer rows of {metric!r} in the tables")
    return per_task(runs, metric, layer)


def band(ax: Any, values: np.ndarray, i: int, label: str, x: np.ndarray | None = None,
         log: bool = False, bounds: tuple[float, float] | None = None) -> None:
    """Mean over seeds (rows of ``values``) as a line, its Student-t interval as a band; points
    no seed has (a metric recorded only on some tasks, such as the reference gaps) are skipped,
    and the line joins the rest with markers. ``log``: the geometric mean and the t-interval
    of log ``values`` mapped back (non-positive values left out), for a log-scale panel, where
    a raw-scale interval of a spread positive quantity can reach below zero. ``bounds``: the
    quantity's range (e.g. (0, 1) for a fraction or a kernel distance); the band is clipped to
    it, so an interval never claims values the quantity cannot take."""
    mean, low, high = mean_interval(log_positive(values) if log else values)
    if log:
        mean, low, high = np.exp(mean), np.exp(low), np.exp(high)
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    x = np.arange(values.shape[1]) if x is None else np.asarray(x)
    has = np.isfinite(values).any(axis=0)
    st = style(i)
    if not has.all():
        x, mean, low, high = x[has], mean[has], low[has], high[has]
        st = {**st, "marker": "o", "ms": 3}
    ax.plot(x, mean, label=f"{label} (R = {len(values)})", **st)
    if len(values) > 1:
        ax.fill_between(x, low, high, color=st["color"], alpha=0.18, lw=0)


def per_task_panels(tables: Tables, panels: Sequence[tuple[str, str, str, bool]], *,
                    ncols: int = 3, title: str = "", xlabel: str = "task") -> Any:
    """One panel per ``(metric, layer, label, log)``: every method's per-task mean and band
    (geometric, on a log axis, where ``log``). Panels whose metric no table carries say so
    instead of failing."""
    _check(tables)
    nrows = -(-len(panels) // ncols)
    fig, axes = subplots(nrows, ncols, figsize=(3.6 * ncols, 2.7 * nrows), squeeze=False)
    for ax, (metric, layer, label, log) in zip(axes.ravel(), panels):
        drew = False
        for i, (name, runs) in enumerate(tables.items()):
            try:
                values = task_values(runs, metric, layer)
            except NtkplastError:
                continue
            if np.isfinite(values).any():
                band(ax, values, i, name, log=log,
                     bounds=(0.0, 1.0) if unit_interval(metric) else None)
                drew = True
        if not drew:
            ax.text(0.5, 0.5, f"no {metric}\nin these tables", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="0.4")
        elif log:
            ax.set_yscale("log")
        ax.set_ylabel(f"{label}\n(geometric mean)" if log else label)
        ax.set_xlabel(xlabel)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:  # outside, right of the panels (saved with bbox_inches="tight")
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return fig


def plasticity_curves(tables: Tables, *, title: str = "") -> Any:
    """Observed plasticity per task, per method (mean over seeds, band: Student-t interval):

    * the plasticity measure of each new task (``plasticity_score``: training accuracy for
      random-label memorisation, online accuracy for online streams, test accuracy otherwise —
      what the manifest's ``plasticity_measure`` names), with, on the tasks that have them, each
      method's own reset reference (open markers: a fresh network trained on that task alone
      with the same budget and the same method) and the common baseline (grey: a fresh network,
      plain optimizer, no method — the same yardstick for every method);
    * the plasticity loss against the common baseline (baseline − run, or run − baseline for
      errors; above the dashed zero line the run learns the task worse than a fresh network);
    * the online accuracy during each task (Dohare et al. 2024) and the end-of-task test
      accuracy, where the runs have them.
    """
    fig = per_task_panels(tables, PLASTICITY_PANELS, ncols=2, title=title)
    score_ax, loss_ax = fig.axes[0], fig.axes[1]
    loss_ax.axhline(0.0, color="0.3", lw=0.8, ls="--", zorder=1)
    for i, (name, runs) in enumerate(tables.items()):
        if _has(runs, "reference_score"):
            _markers(score_ax, runs, "reference_score", marker="o", mfc="none",
                     color=style(i)["color"], label=f"own reference ({name})")
    first = next(iter(tables.values()))
    if _has(first, "baseline_score"):
        _markers(score_ax, first, "baseline_score", marker="o", color="0.55",
                 label="common baseline")
    refs = [ln for ln in score_ax.get_lines() if ln.get_label().startswith(("own", "common"))]
    if refs:
        score_ax.legend(handles=refs, loc="lower left", frameon=False, fontsize=7)
    return fig


def _markers(ax: Any, runs: Sequence[Table], metric: str, **kw: Any) -> None:
    """Mean over seeds of ``metric`` at the task ends that have it, as markers."""
    mean = mean_interval(task_values(runs, metric))[0]
    tasks = np.flatnonzero(np.isfinite(mean))
    if len(tasks):
        ax.plot(tasks, mean[tasks], ls="none", ms=4, zorder=5, **kw)


def _has(runs: Sequence[Table], metric: str) -> bool:
    return any(np.any(t.columns["metric"] == metric) for t in runs)


def theory_panels(tables: Tables, *, title: str = "") -> Any:
    """NTK condition number, effective rank, trace and decay exponent on the probe set, layer
    mean isometry deviation of the layer Jacobians (zeros included: a dead unit counts as far
    from isometry), and dead-unit fraction, at each task end. On the condition-number panel a
    black triangle marks each task end where some seed's λ_min sits at the eigenvalue floor
    (``ntk_condition_at_floor``): there the value is the cap 1/eps, a lower bound."""
    fig = per_task_panels(tables, THEORY_PANELS, title=title)
    mark_condition_floor(fig.axes[0], tables)
    return fig


def mark_condition_floor(ax: Any, tables: Tables) -> None:
    """Black triangles at the task ends where some seed's NTK condition number is at its floor
    (the geometric mean of the seeds there, a lower bound); nothing for tables without
    ``ntk_condition_at_floor`` rows."""
    label = "some seed at the eigenvalue floor\n(condition = cap, a lower bound)"
    for runs in tables.values():
        try:
            floor = task_values(runs, "ntk_condition_at_floor")
            cond = task_values(runs, "ntk_condition")
        except NtkplastError:
            continue
        hit = np.nansum(floor, axis=0) > 0
        if hit.any():
            geo = np.exp(mean_interval(log_positive(cond))[0])
            ax.plot(np.flatnonzero(hit), geo[hit], ls="none", marker="v", ms=5, mfc="none",
                    color="k", zorder=6, label=label)
            label = "_nolegend_"
    if label == "_nolegend_":
        ax.legend(handles=[ln for ln in ax.get_lines() if ln.get_marker() == "v"][:1],
                  fontsize=6, loc="upper left", frameon=False)


def kernel_regime(tables: Tables, *, title: str = "") -> Any:
    """Leaving the kernel regime: relative Frobenius distance of the empirical NTK from its value
    at initialisation (Fort et al. 2020), the same with each kernel's top eigendirection
    removed (not dominated by the one direction that holds most of an initial kernel's trace),
    and from the infinite-width NTK, at each task end."""
    return per_task_panels(tables, REGIME_PANELS, ncols=3, title=title)
