"""Counterfactual branches (:mod:`ntkplast.branches`): what each intervention did.

Left, the paired effect on the next task's plasticity (intervention − control) at each branch
point, mean and paired t-interval over the seeds (R in the legend); right, how far each
intervention moved each diagnostic of the first checkpoint, log₂(intervention / control) of the
means over seeds × branch points (0: unchanged; a bar left out where the control's mean is 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntkplast.figures._style import say_empty, style, subplots

__all__ = ["branch_effects"]


def branch_effects(comparison: Any, title: str = "") -> Any:
    """The figure of a :class:`ntkplast.branches.BranchComparison` (module docstring; typed
    ``Any`` because figures never import :mod:`ntkplast.branches`, which trains)."""
    fig, (left, right) = subplots(1, 2, figsize=(11, 3.8))
    effects = comparison.effects
    width = 0.5 / max(len(effects), 1)
    drawn = False
    for i, e in enumerate(effects):
        points = sorted(e.per_point)
        if not points:
            continue
        c = [e.per_point[k] for k in points]
        x = np.arange(len(points)) + (i - (len(effects) - 1) / 2) * width
        mean = np.array([p.diff for p in c])
        err = np.array([[p.diff - p.ci_low for p in c], [p.ci_high - p.diff for p in c]])
        r = sorted({p.n_pairs for p in c})
        left.errorbar(x, mean, yerr=err, fmt="o", capsize=3, color=style(i)["color"],
                      label=f"{e.intervention} (R = {', '.join(map(str, r))})")
        left.set_xticks(np.arange(len(points)), [f"task {k}" for k in points])
        drawn = True
    if drawn:
        left.axhline(0.0, color="0.5", lw=0.8)
        left.set_xlabel("branch point (end of task)")
        left.set_ylabel(f"Δ next-task {comparison.measure}")
        left.set_title("intervention − control, paired over seeds", fontsize=9)
        left.legend(fontsize=7)
    else:
        say_empty(left, "fewer than 2 seeds per branch point: no interval")
    names = list(dict.fromkeys(n for e in effects for n in e.moved))  # the effects' order
    bar = 0.8 / max(len(effects), 1)
    for i, e in enumerate(effects):
        ratios = [np.log2(b / a) if a > 0 and b > 0 else np.nan
                  for a, b in (e.moved.get(n, (np.nan, np.nan)) for n in names)]
        right.bar(np.arange(len(names)) + (i - (len(effects) - 1) / 2) * bar, ratios, bar,
                  color=style(i)["color"], label=e.intervention)
    right.axhline(0.0, color="0.5", lw=0.8)
    right.set_xticks(np.arange(len(names)), [n.replace("_", " ") for n in names],
                     rotation=25, ha="right", fontsize=7)
    right.set_ylabel("log₂(intervention / control)")
    right.set_title("first checkpoint: what the intervention moved", fontsize=9)
    if effects:
        right.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
