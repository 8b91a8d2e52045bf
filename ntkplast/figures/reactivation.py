"""Reactivation curves: the fraction of initially dead units that fire again, per method.

``curves`` maps a method name to a ``seeds × points`` array of revived fractions
(:func:`ntkplast.experiments.reactivation.reactivation_curve`, one row per seed); ``steps`` gives
the training step of each point. Each method is drawn as the mean over seeds with its 95%
Student-t band (:func:`ntkplast.stats.intervals.mean_interval`; no band for one seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.figures._style import style, subplots
from ntkplast.stats.intervals import mean_interval

__all__ = ["reactivation_curves"]


def reactivation_curves(curves: Mapping[str, np.ndarray], steps: np.ndarray, title: str = "",
                        *, ax: Any = None) -> Any:
    """Revived fraction against training steps, mean line + Student-t band per method (R seeds
    in the legend).

    Args:
      curves: method name → ``seeds × points`` revived fractions in [0, 1] (NaN: no dead unit).
      steps: ``(points,)`` training step of each column.
      title: axes title.
      ax: draw into this matplotlib axes instead of a new figure.

    Returns:
      The matplotlib figure.
    """
    steps = np.asarray(steps)
    if not curves:
        raise NtkplastError("reactivation_curves: expected method name → seeds × points array, "
                            "got nothing")
    if ax is None:
        fig, ax = subplots(figsize=(4.6, 3.2))
    else:
        fig = ax.figure
    for i, (name, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2 or values.shape[1] != steps.shape[0]:
            raise NtkplastError(f"reactivation_curves: {name!r} has shape {values.shape}; "
                                f"expected seeds × {steps.shape[0]} (one column per step)")
        mean, low, high = mean_interval(values)
        st = style(i)
        ax.plot(steps, mean, label=f"{name} (R = {len(values)})", **st)
        if len(values) > 1:
            ax.fill_between(steps, low, high, color=st["color"], alpha=0.18, lw=0)
    ax.set_xlabel("training steps from the dead-unit state")
    ax.set_ylabel("revived fraction of the\ninitially dead units")
    ax.set_ylim(-0.03, 1.03)
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    return fig
