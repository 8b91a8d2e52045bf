"""``ntkplast demo``: Adam loses plasticity on random-label memorisation; does AdamO keep it?

Trains :func:`demo_config` — a 3×100 ReLU MLP that memorises random labels of the same 256 digits
task after task (the protocol of Lyle et al. 2023 and Kumar et al. 2023; plasticity = training
accuracy at the end of each task) — under plain Adam, under AdamO (the isometry step decoupled
from Adam's moments) and under the coupled isometry penalty, with λ = 2e-3 (the paper's 1e-3 on
its unhalved penalty ‖WᵀW − I‖²_F), several seeds each (:func:`ntkplast.experiments.grid.run_grid`:
finished runs are skipped, interrupted ones resume). Every third task gets both reset references:
the method's own and the common baseline (a fresh network with plain Adam). It analyses every
checkpoint, draws the per-method comparison figures and, for each method's first seed, the run
figures (diagnostics, rival explanations, NTK and Jacobian spectra, layer shares), prints the
plasticity loss against the common baseline over the last tasks (mean over seeds, Student-t 95%
interval, R seeds) and which diagnostics moved before plasticity was lost, and writes the report
page:

    runs/demo/adam/seed0/ …            one run folder per (method, seed), each with analysis/
    runs/demo/figures/*.png, *.pdf     plasticity, theory, kernel regime, predictors, and per
                                       method diagnostics_, rivals_, ntk_spectra_,
                                       jacobian_spectra_, ntk_layer_shares_<method>
    runs/demo/report.html              all of it on one page (ntkplast report)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast import analysis, figures, stats, training
from ntkplast.errors import NtkplastError
from ntkplast.experiments import grid as grid_lib
from ntkplast.experiments import report
from ntkplast.figures.comparison import unit_interval

__all__ = ["DEMO_LAMBDA", "DEMO_METHODS", "DEMO_PROBE_SIZE", "demo_config", "run_demo"]

DEMO_LAMBDA = 2e-3
DEMO_METHODS = {"adam": {}, "adamo": {"name": "adamo", "lam": DEMO_LAMBDA},
                "isometry": {"name": "isometry", "lam": DEMO_LAMBDA}}
LAST_TASKS = report.LAST_TASKS  # the summary's window: the last this many tasks
DEMO_PROBE_SIZE = 128  # probe inputs of the demo's analyses (half the default: half the time)
ONSET_METRICS = (("plasticity_score", "all"), ("dormant_fraction_tau0", "layer1"),
                 ("jac_isometry_deviation", "layer1"), ("ntk_effective_rank", "all"),
                 ("ntk_condition", "all"))  # layer1: the middle hidden layer


CLAIM_PREDICTORS = {
    "NTK condition number (log)": ("ntk_condition", "all"),
    "NTK trace": ("ntk_trace", "all"),
    "NTK effective rank": ("ntk_effective_rank", "all"),
    "isometry deviation, zeros included": ("jac_isometry_deviation", "mean"),
    "mean (log σ)², non-zero σ only": ("jac_mean_log_sigma_sq", "mean"),
    "fraction of σ in [1/2, 2]": ("jac_frac_sigma_in_half_two", "mean"),
    "dead fraction": ("dormant_fraction_tau0", "mean"),
}
"""The measures behind the paper's claims 1 (conditioning vs scale), 2 (isometry: three
measures, one blind to dead units) and 4 (dead units), for the sensitivity table."""


def _summary(tables: dict, metric: str, layer: str = "all",
             log: bool = False) -> dict[str, tuple[float, ...]]:
    """Per method: mean over seeds of the last-five-tasks mean of ``metric``, with interval;
    with ``log``, the same on log ``metric`` mapped back (a geometric mean and its interval, for
    a positive quantity spread over orders of magnitude, whose t-interval on the raw scale can
    reach below zero). The interval of a quantity in [0, 1] (a fraction, an accuracy, the
    isometry deviation: :func:`ntkplast.figures.comparison.unit_interval`) is clipped to it."""
    out = {}
    for name, runs in tables.items():
        values = figures.task_values(runs, metric, layer)
        mean, low, high = (np.exp(stats.final_tasks_interval(stats.log_positive(values), 5)) if log
                           else stats.final_tasks_interval(values, 5))
        if unit_interval(metric):
            low, high = max(low, 0.0), min(high, 1.0)
        out[name] = (float(mean), float(low), float(high))
    return out


def _at_floor(tables: dict) -> dict[str, tuple[int, int]]:
    """Per method: how many of its seeds' last-five-task NTK condition numbers sit at the
    eigenvalue floor (censored: the true value is at least the cap), of how many."""
    out = {}
    for name, runs in tables.items():
        try:
            floor = figures.task_values(runs, "ntk_condition_at_floor")[:, -5:]
        except NtkplastError:
            continue
        out[name] = (int(np.nansum(floor)), int(np.isfinite(floor).sum()))
    return out


def _predictors(tables: dict) -> stats.PredictorComparison | None:
    """The head-to-head predictor test on the demo's runs; None where the analysis left out a
    family it needs (``--metrics``)."""
    try:
        return stats.compare_predictors(tables, stats.PREDICTORS, target="plasticity_score",
                                        lag=1)
    except NtkplastError:
        return None


def demo_config(quick: bool = False, overrides: Sequence[str] = ()) -> training.RunConfig:
    """The ``ntkplast demo`` run: random labels on a fixed subset of 256 digits, 30 tasks of 400
    Adam steps (batch 16, lr 1e-3), a 3×100 ReLU MLP.

    Checkpoints at task ends; every third task gets the two reset references. ``quick`` shrinks
    the budget to 20 steps a task (for smoke tests), not the stream length.
    """
    d: dict[str, Any] = {
        "seed": 0,
        "model": {"kind": "mlp", "widths": [100, 100, 100], "activation": "relu"},
        "stream": {"kind": "random_labels", "dataset": "digits", "num_tasks": 30,
                   "train_size": 256, "fixed_subset": True},
        "train": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 16,
                  "steps_per_task": 20 if quick else 400, "reference_tasks": "every:3",
                  "eval_previous": False},
    }
    return training.config_from_dict(training.apply_overrides(d, overrides), where="demo config")


def _onsets(tables: dict) -> stats.OnsetOrder | None:
    """Which diagnostic passes half of its total change first, in the plain run's seeds."""
    try:
        return stats.onset_order(next(iter(tables.values())), ONSET_METRICS, at="task_end")
    except NtkplastError:
        return None


def run_demo(out: str | os.PathLike = "runs/demo", *, quick: bool = False, seeds: int = 5,
             settings: analysis.Settings | None = None, overrides: Sequence[str] = (),
             progress: bool = True) -> grid_lib.GridResult:
    """Run the demo into ``out`` (module docstring); returns the grid's tables and folders.
    ``settings`` default: every metric family on :data:`DEMO_PROBE_SIZE` probe inputs."""
    out = Path(out)
    settings = settings or analysis.Settings(probe_size=DEMO_PROBE_SIZE)
    base = demo_config(quick=quick, overrides=overrides)
    grid = grid_lib.run_grid(base, DEMO_METHODS, range(base.seed, base.seed + seeds), out,
                             settings=settings, progress=progress, vectorise_seeds=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    title = (f"random labels on {base.stream.train_size} digits, {base.stream.num_tasks} tasks × "
             f"{base.train.steps_per_task} steps; Adam, AdamO, isometry penalty (λ = "
             f"{DEMO_LAMBDA:g}); {seeds} seeds")
    paths = []
    for name, draw in [("plasticity", figures.plasticity_curves),
                       ("theory", figures.theory_panels),
                       ("kernel_regime", figures.kernel_regime)]:
        paths += figures.save(draw(grid.tables, title=title), fig_dir / name)
    for name, dirs in grid.run_dirs.items():  # one run per method: diagnostics and spectra
        for kind, fig in figures.run_figure_set(dirs[0] / "analysis",
                                                title=f"{name}, seed {base.seed}").items():
            paths += figures.save(fig, fig_dir / f"{kind}_{name}")
    comparison = _predictors(grid.tables)
    if comparison is not None:
        paths += figures.save(figures.predictor_comparison(comparison, title=title),
                              fig_dir / "predictors")
    print(f"trained and analysed {sum(map(len, grid.run_dirs.values()))} runs in {out}/")
    for line in report.verdict_lines(grid.tables, LAST_TASKS):
        print(f"  {line}")
    onsets = _onsets(grid.tables)
    if onsets is not None:
        (fig_dir / "onsets.txt").write_text(str(onsets) + "\n")
        first = [f"{onsets.refs[i][0]}" for i in onsets.order]
        print(f"  which moved first in {next(iter(grid.tables))} (half of its total change, "
              f"median over seeds): {' → '.join(first)} — details in {fig_dir / 'onsets.txt'}")
    runs = min(len(r) for r in grid.tables.values())
    for label, metric, layer, log in [
            ("plasticity measure", "plasticity_score", "all", False),
            ("online accuracy", "online_accuracy", "all", False),
            ("dead-unit fraction", "dormant_fraction_tau0", "mean", False),
            ("isometry deviation (zeros included)", "jac_isometry_deviation", "mean", False),
            ("NTK condition number", "ntk_condition", "all", True)]:
        try:
            summary = _summary(grid.tables, metric, layer, log)
        except NtkplastError:  # a metric family left out with --metrics
            continue
        if not all(np.isfinite(v[0]) for v in summary.values()):
            continue
        floor = _at_floor(grid.tables) if metric == "ntk_condition" else {}
        cells = "   ".join(
            f"{name} {'≥ ' if floor.get(name, (0,))[0] else ''}{m:.4g} [{lo:.4g}, {hi:.4g}]"
            + (f" ({floor[name][0]}/{floor[name][1]} at the floor)"
               if floor.get(name, (0,))[0] else "")
            for name, (m, lo, hi) in summary.items())
        how = ("geometric mean over seeds [95% t-interval of the log" if log
               else "mean over seeds [95% t-interval")
        print(f"  {label} (last 5 tasks, {how}, R = {runs}]): {cells}")
    if comparison is not None:
        best = comparison.pooled.best
        print(f"  best predictor of the next task's plasticity measure ({comparison.pooled.scope}"
              f", trend: {stats.TREND_TEXT[comparison.trend]}, R = {len(comparison.runs)} runs): "
              f"{best} — full table in {fig_dir / 'predictors.txt'}")
        (fig_dir / "predictors.txt").write_text(comparison.summary() + "\n")
    try:
        sens = stats.sensitivity(grid.tables, CLAIM_PREDICTORS, "plasticity_score",
                                 complete_cases=False)
    except NtkplastError:
        sens = None
    if sens is not None:
        (fig_dir / "sensitivity.txt").write_text(
            "\n".join([sens.verdicts(name) for name in CLAIM_PREDICTORS] + ["", str(sens)])
            + "\n")
        print(f"  how each measure's verdict depends on trend control × lag: "
              f"{fig_dir / 'sensitivity.txt'}")
    print("figures: " + ", ".join(str(p) for p in paths if p.suffix == ".png"))
    print(f"report: {report.write_report(out)}")
    return grid
