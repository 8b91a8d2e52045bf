"""The rival explanations of one run, drawn from its metrics table (:mod:`ntkplast.analysis`).

``rival_diagnostics(table)`` is the companion of :func:`ntkplast.figures.diagnostics.diagnostics`:
the quantities that compete with the NTK account of plasticity loss — curvature (the
``curvature`` family), gradient signal (``gradient``), output churn and parameter drift
(``churn``) and, at task ends, forgetting (``plasticity``, from the run's accuracy matrix) —
against the same training steps and task ends, so the two figures can be read side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.figures._style import PALETTE, finish_run_figure, say_empty, subplots
from ntkplast.table import Table, task_end_checkpoints

Curve = tuple[str, str, dict[str, Any]]  # (metric at layer "all", legend label, plot keywords)


def _has(table: Table, curves: Sequence[Curve]) -> bool:
    return any(len(table.series(metric, "all")[0]) for metric, _, _ in curves)


def _draw(ax: Any, table: Table, curves: Sequence[Curve], log: bool) -> list[Any]:
    """Each curve's metric (layer ``"all"``) against the step, on a log axis if ``log`` and a
    value is positive; the lines drawn."""
    lines: list[Any] = []
    for metric, label, kw in curves:
        steps, values = table.series(metric, "all")
        if len(steps):
            lines += ax.plot(steps, values, **{"marker": ".", "ms": 3, "lw": 1, **kw},
                             label=label)
    if log and any(np.any(np.asarray(line.get_ydata()) > 0) for line in lines):
        ax.set_yscale("log")  # not without a positive value: nothing could be drawn on it
    return lines


def _panel(ax: Any, table: Table, left: Sequence[Curve], right: Sequence[Curve],
           labels: tuple[str, str], logs: tuple[bool, bool], why: str) -> None:
    """``left`` on ``ax``, ``right`` on a twin axis made only when it has rows, one legend for
    both; ``why`` in the panel when neither has."""
    lines = _draw(ax, table, left, logs[0])
    if lines:
        ax.set_ylabel(labels[0])
    if _has(table, right):
        twin = ax.twinx()  # in the shared style: no top spine, small tick labels
        twin.spines["top"].set_visible(False)
        twin.tick_params(which="both", labelsize=8)
        lines += _draw(twin, table, right, logs[1])
        twin.set_ylabel(labels[1], fontsize=9)
    if lines:
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7)
    else:
        say_empty(ax, why)


def _run_analyze(family: str) -> str:
    return f"run `ntkplast analyze --metrics …,{family}`"


def rival_diagnostics(table: Table, title: str = "") -> Any:
    """Four panels against training step, the rivals of the NTK account, each with the grey
    task-end lines of :func:`~ntkplast.figures.diagnostics.diagnostics` to read them against:

    (a) curvature: λ_max of the probe loss's Hessian (sharpness) and of its Gauss–Newton matrix
    (log scale, solid) and, dotted on the right axis, the effective rank of their top-k
    eigenvalues. Look for sharpness that climbs task after task (Lyle et al. 2023) or a rank
    that collapses (Lewandowski et al. 2024) before the plasticity measure falls.

    (b) gradient signal: the probe gradient's norm ‖∇L‖ and optimization readiness R = S·ρ
    (log scale) with, on the right axis, its signal-to-noise ratio over minibatches (log).
    Look for a norm and readiness that sink towards zero at the start of new tasks (the
    network no longer gets a usable step), or an SNR that falls (the step is mostly noise).

    (c) churn and drift: output churn, the mean squared change per output on the probe set
    since the previous analysed checkpoint (log scale), and on the right axis the relative
    distance ‖θ − θ₀‖ / ‖θ₀‖ from initialisation. Look for drift that keeps growing across
    tasks, and whether churn shrinks (the outputs stop moving) as plasticity is lost.

    (d) forgetting, at task ends only: average accuracy over the tasks so far (ACC), backward
    transfer (BWT, below 0 when earlier tasks are forgotten) and forgetting (F). Falling ACC
    with flat F is a failure to learn the new tasks (plasticity), rising F a failure to keep
    the old ones.

    A panel without rows says why in place of its lines. A log axis leaves out non-positive
    values (and stays linear when it has no positive one). Prediction churn and per-layer
    feature norms are in the table but not drawn."""
    if len(table) == 0:
        raise NtkplastError("figures: the metrics table is empty; run `ntkplast analyze` first")
    fig, axes = subplots(2, 2, figsize=(11, 7), sharex=True)
    (a, b), (c, d) = axes
    solid = [{"color": PALETTE[k]} for k in range(3)]
    dotted = [{"color": PALETTE[k], "ls": ":"} for k in range(3)]
    _panel(a, table, [("hessian_lambda_max", "Hessian λ_max", solid[0]),
                      ("ggn_lambda_max", "Gauss–Newton λ_max", solid[1])],
           [("hessian_effective_rank", "Hessian effective rank (right)", dotted[0]),
            ("ggn_effective_rank", "Gauss–Newton effective rank (right)", dotted[1])],
           ("top eigenvalue λ_max", "effective rank of the top k"), (True, False),
           "not analysed: " + _run_analyze("curvature"))
    a.set_title("(a) curvature of the probe loss", fontsize=10)
    _panel(b, table, [("grad_norm", "gradient norm ‖∇L‖", solid[0]),
                      ("optimization_readiness", "optimization readiness", solid[1])],
           [("grad_snr", "gradient SNR (right)", {"color": PALETTE[2], "ls": "--"})],
           ("norm, readiness", "signal-to-noise ratio"), (True, True),
           "not analysed: " + _run_analyze("gradient")
           + "\n(it is skipped when the probe set has no labels)")
    b.set_title("(b) gradient signal", fontsize=10)
    _panel(c, table, [("output_churn", "output churn", solid[0])],
           [("param_distance_init_rel", "‖θ − θ₀‖ / ‖θ₀‖ (right)", solid[1])],
           ("output churn (mean sq. change)", "relative distance from init"), (True, False),
           "not analysed: " + _run_analyze("churn"))
    c.set_title("(c) churn and drift", fontsize=10)
    if len(task_end_checkpoints(table)):
        why_d = ("no accuracy matrix: the run was trained with eval_previous = false\n"
                 "(or imported without accuracies on earlier tasks)")
    else:
        why_d = "no task ends in this table: " + _run_analyze("plasticity")
    forgetting = [(metric, label, {"color": PALETTE[k], "marker": "o", "ms": 4})
                  for k, (metric, label) in enumerate([
                      ("average_accuracy", "average accuracy (ACC)"),
                      ("backward_transfer", "backward transfer (BWT)"),
                      ("forgetting", "forgetting (F)")])]
    _panel(d, table, forgetting, [], ("accuracy (ACC), its change (BWT, F)", ""),
           (False, False), why_d)
    if _has(table, forgetting):
        d.axhline(0, color="0.6", lw=0.6, zorder=0)
    d.set_title("(d) forgetting at task ends", fontsize=10)
    return finish_run_figure(fig, axes, table, title, w_pad=2)
