"""Paired contrasts side by side: one panel per group (a stream, a setting; three panels a
row), one row per contrast, its mean paired difference and interval
(:class:`ntkplast.stats.PairedContrast`), R in the row's label and a line at 0. A row whose
interval excludes 0 is drawn filled, one that covers 0 open; a label keeps its colour across
panels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.figures._style import say_empty, style, subplots
from ntkplast.stats import PairedContrast

__all__ = ["paired_contrasts"]


def paired_contrasts(groups: Mapping[str, Sequence[PairedContrast]], *, xlabel: str = "paired "
                     "difference", title: str = "") -> Any:
    """The figure of ``groups`` (module docstring): group name → its contrasts, in order.

    Examples:
      >>> from ntkplast import figures, stats
      >>> c = stats.paired_contrast([0.5, 0.7, 0.6], [0.4, 0.5, 0.5], label="a − b")
      >>> fig = figures.paired_contrasts({"stream": [c]})
      >>> [ax.get_title() for ax in fig.axes]
      ['stream']
    """
    if not groups:
        raise NtkplastError("paired_contrasts: no groups to draw")
    rows = max(len(v) for v in groups.values())
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = subplots(nrows, ncols, figsize=(4.6 * ncols, nrows * (0.9 + 0.42 * rows)),
                         sharex=True, squeeze=False)
    colours = {label: style(i)["color"] for i, label in enumerate(
        dict.fromkeys(c.label for v in groups.values() for c in v))}  # one colour per label
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax, (name, contrasts) in zip(axes.flat, groups.items()):
        ax.set_title(name, fontsize=9)
        if not contrasts:
            say_empty(ax, "no contrasts")
            continue
        y = np.arange(len(contrasts))[::-1]
        for c, yi in zip(contrasts, y, strict=True):
            excludes = c.ci_low > 0 or c.ci_high < 0
            colour = colours[c.label]
            ax.errorbar([c.diff], [yi], xerr=[[c.diff - c.ci_low], [c.ci_high - c.diff]],
                        fmt="o", capsize=3, color=colour,
                        mfc=colour if excludes else "white")
        ax.axvline(0.0, color="0.5", lw=0.8)
        ax.set_yticks(y, [f"{c.label} (R = {c.n_pairs})" for c in contrasts], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_tick_params(labelbottom=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
