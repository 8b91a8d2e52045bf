"""The overview figure of one run, drawn from its metrics table (:mod:`ntkplast.analysis`).

``diagnostics(table)`` is the overview of one run: observed plasticity, NTK conditioning,
layer-Jacobian isometry and unit dormancy against the training step, with task boundaries
marked, so one can read which changed first. Every function takes a :class:`~ntkplast.table.
Table` (a user's own too) and returns the matplotlib figure; ``save`` writes PNG and PDF
atomically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.figures._style import (
    PALETTE,
    finish_run_figure,
    plot_metric,
    say_empty,
    subplots,
)
from ntkplast.table import Table


def _mark_floor(ax: Any, table: Table) -> None:
    """Open black triangles on the condition numbers whose λ_min is at the eigenvalue floor."""
    steps, floor = table.series("ntk_condition_at_floor", "all")
    cond_steps, cond = table.series("ntk_condition", "all")
    at = np.isin(cond_steps, steps[floor > 0])
    if at.any():
        ax.plot(cond_steps[at], cond[at], ls="none", marker="v", ms=5, mfc="none", color="k",
                label="at the floor (a lower bound)")


def diagnostics(table: Table, title: str = "") -> Any:
    """Four panels against training step: (a) each task's plasticity measure at its end
    (``plasticity_score``; the test accuracy for runs written before it was recorded) with the
    method's own reset reference and the common baseline, (b) NTK effective rank and condition
    number (open black triangles: λ_min at the eigenvalue floor, where the number is the cap
    1/eps, a lower bound), (c) layer-Jacobian isometry deviation per layer (mean tanh²(log σ)
    over all singular values, zeros included: 0 at isometry, 1 for a dead layer), (d) τ = 0
    dormant (dead) fraction per hidden layer."""
    if len(table) == 0:
        raise NtkplastError("figures: the metrics table is empty; run `ntkplast analyze` first")
    fig, axes = subplots(2, 2, figsize=(11, 7), sharex=True)
    (a, b), (c, d) = axes
    new = bool(np.any(table.columns["metric"] == "plasticity_score"))
    curves = ([("plasticity_score", "plasticity measure"), ("reference_score", "own reference"),
               ("baseline_score", "common baseline")] if new else
              [("test_accuracy", "end-of-task test accuracy"),
               ("reference_test_accuracy", "reset reference")])
    drawn = [label for k, (metric, label) in enumerate(curves)
             if plot_metric(a, table, metric, layers=["all"], color=PALETTE[k],
                            ls="-" if k == 0 else "--")]
    if drawn:
        a.legend(drawn, fontsize=8)
    else:
        say_empty(a, "no per-task scores in this run: label its task ends with\n"
                     "`ntkplast tasks RUN_DIR FILE.csv` (or import --tasks), then analyse")
    a.set_ylabel("score")
    a.set_title("(a) observed plasticity", fontsize=10)
    if plot_metric(b, table, "ntk_effective_rank", layers=["all"], color=PALETTE[0]):
        b.set_ylabel("NTK effective rank", color=PALETTE[0])
        b2 = b.twinx()
        plot_metric(b2, table, "ntk_condition", layers=["all"], color=PALETTE[1])
        _mark_floor(b2, table)
        b2.set_yscale("log")
        b2.set_ylabel("NTK condition number", color=PALETTE[1])
    b.set_title("(b) empirical NTK on the probe set", fontsize=10)
    if plot_metric(c, table, "jac_isometry_deviation"):
        c.legend(fontsize=7, ncol=2)
    else:
        say_empty(c, "not analysed: the isometry family was not computed\n(or the model "
                     "has no layer structure to take Jacobians of)")
    c.set_ylabel("isometry deviation\n(0 = isometric, 1 = dead)")
    c.set_title("(c) layer-Jacobian isometry", fontsize=10)
    if plot_metric(d, table, "dormant_fraction_tau0"):
        d.legend(fontsize=7, ncol=2)
    else:
        say_empty(d, "not analysed: the dormancy family was not computed\n(or the model "
                     "exposes no hidden activations)")
    d.set_ylabel("dead-unit fraction (τ = 0)")
    d.set_title("(d) dormancy", fontsize=10)
    return finish_run_figure(fig, axes, table, title)
