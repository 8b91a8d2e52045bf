"""Figures a user calls on their own metrics tables; each returns a matplotlib figure.

============================  =============================================================
function                      what it shows
============================  =============================================================
:func:`diagnostics`           one run: plasticity, NTK, isometry, dormancy against the step
:func:`rival_diagnostics`     one run: curvature, gradient signal, churn and drift, forgetting
:func:`plasticity_curves`     methods × seeds: accuracy on each new task, online accuracy
:func:`theory_panels`         methods × seeds: NTK conditioning/rank/scale, isometry, dormancy
:func:`kernel_regime`         methods × seeds: kernel distance from init and infinite width
:func:`predictor_comparison`  which end-of-task quantity predicts the next task's plasticity
:func:`lead_lag_plot`         the same correlations at task lags (who leads whom)
:func:`reactivation_curves`   fraction of initially dead units firing again, per method
:func:`ntk_spectra`           one run: NTK eigenvalue decay (total and per layer) by task
:func:`jacobian_spectra`      one run: layer-Jacobian singular-value distributions by task
:func:`ntk_layer_shares`      one run: each layer's share of tr Θ beside its dead fraction
:func:`kernel_vs_plasticity`  methods × seeds: a task-end quantity vs next task's plasticity
:func:`branch_effects`        counterfactual branches: each intervention's paired effect and
                              the diagnostics it moved
:func:`paired_contrasts`      paired contrasts with their intervals, one panel per group
============================  =============================================================

All share one style (Okabe–Ito colour-blind-safe palette, labelled axes) and :func:`save`
writes PNG and PDF atomically. ``ntkplast figures RUN_DIR`` draws :func:`diagnostics`,
:func:`rival_diagnostics` (as ``rivals``), :func:`ntk_spectra`, :func:`jacobian_spectra` and
:func:`ntk_layer_shares` (:func:`run_figures`).
"""

from ntkplast.figures._style import PALETTE, render, save
from ntkplast.figures.branches import branch_effects
from ntkplast.figures.comparison import (
    kernel_regime,
    per_task_panels,
    plasticity_curves,
    task_values,
    theory_panels,
)
from ntkplast.figures.contrasts import paired_contrasts
from ntkplast.figures.diagnostics import diagnostics
from ntkplast.figures.predictors import lead_lag_plot, predictor_comparison
from ntkplast.figures.reactivation import reactivation_curves
from ntkplast.figures.rivals import rival_diagnostics
from ntkplast.figures.run import run_figure_set, run_figures
from ntkplast.figures.spectra import (
    jacobian_spectra,
    kernel_vs_plasticity,
    ntk_layer_shares,
    ntk_spectra,
)

__all__ = ["PALETTE", "branch_effects", "diagnostics", "jacobian_spectra", "kernel_regime",
           "kernel_vs_plasticity", "lead_lag_plot", "ntk_layer_shares", "ntk_spectra",
           "paired_contrasts", "per_task_panels", "plasticity_curves", "predictor_comparison",
           "reactivation_curves", "render", "rival_diagnostics", "run_figure_set", "run_figures",
           "save", "task_values", "theory_panels"]
