"""Figures a user calls on their own metrics tables; each returns a matplotlib figure.

============================  =============================================================
function                      what it shows
============================  =============================================================
:func:`diagnostics`           one run: plasticity, NTK, isometry, dormancy against the step
:func:`plasticity_curves`     methods × seeds: accuracy on each new task, online accuracy
:func:`theory_panels`         methods × seeds: NTK conditioning/rank/scale, isometry, dormancy
:func:`kernel_regime`         methods × seeds: kernel distance from init and infinite width
:func:`predictor_comparison`  which end-of-task quantity predicts the next task's plasticity
:func:`lead_lag_plot`         the same correlations at task lags (who leads whom)
:func:`reactivation_curves`   fraction of initially dead units firing again, per method
============================  =============================================================

All share one style (Okabe–Ito colour-blind-safe palette, labelled axes) and :func:`save`
writes PNG and PDF atomically. ``ntkplast figures RUN_DIR`` draws :func:`diagnostics`.
"""

from ntkplast.figures._style import PALETTE, save
from ntkplast.figures.comparison import (
    kernel_regime,
    per_task_panels,
    plasticity_curves,
    task_values,
    theory_panels,
)
from ntkplast.figures.diagnostics import diagnostics, run_figures
from ntkplast.figures.predictors import lead_lag_plot, predictor_comparison
from ntkplast.figures.reactivation import reactivation_curves

__all__ = ["PALETTE", "diagnostics", "kernel_regime", "lead_lag_plot", "per_task_panels",
           "plasticity_curves", "predictor_comparison", "reactivation_curves", "run_figures",
           "save", "task_values", "theory_panels"]
