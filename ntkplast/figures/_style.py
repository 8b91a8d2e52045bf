"""The look shared by every figure: a colour-blind-safe palette, one rc style, atomic saving."""

from __future__ import annotations

import functools
import io
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.figure
import matplotlib.text
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from ntkplast.io.files import atomic_write_bytes  # noqa: E402
from ntkplast.table import Table, task_end_checkpoints  # noqa: E402

# Okabe & Ito (2008), "Color universal design": distinguishable under every common colour-vision
# deficiency. Black leads, for the first series (by convention the baseline); the pale yellow
# comes last.
PALETTE = ("#000000", "#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
           "#F0E442")
LINESTYLES = ("-", "--", "-.", ":")
STYLE = {
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "legend.frameon": False, "figure.dpi": 100, "savefig.dpi": 150,
    "savefig.bbox": "tight", "lines.linewidth": 1.4, "pdf.fonttype": 42,
}


def color(i: int) -> str:
    """The i-th palette colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def style(i: int) -> dict[str, Any]:
    """Colour and line style of series i: the line style changes after each pass of the palette,
    so series stay distinct in greyscale print too."""
    return {"color": color(i), "ls": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}


class LiteralFigure(matplotlib.figure.Figure):
    """A figure whose every text is drawn as written, never as mathtext.

    Folder, method, stream and intervention names reach titles, legends and tick labels;
    ``$1e-3$`` in one would come out as math and ``$\\frac{$`` would stop the drawing with a
    ``ParseException``. Whatever lays out or draws the figure (``draw``, ``tight_layout``,
    ``get_tightbbox``) first turns mathtext off for every text it holds and runs with
    ``text.parse_math`` off, so tick labels made on the way are literal too. ntkplast's own
    labels use no mathtext. Log axes, whose tick labels matplotlib writes as mathtext
    (``$\\mathdefault{10^{2}}$``), get them as Unicode instead (``10²``, ``1.8×10²``).
    """

    def _literally(self, method: Any, *args: Any, **kw: Any) -> Any:
        for text in self.findobj(matplotlib.text.Text):
            text.set_parse_math(False)
        for ax in self.axes:
            for axis in (ax.xaxis, ax.yaxis):
                for formatter in (axis.get_major_formatter(), axis.get_minor_formatter()):
                    if isinstance(formatter, matplotlib.ticker.LogFormatterMathtext):
                        formatter.__class__ = _unicode_log_formatter(type(formatter))
        with plt.rc_context({"text.parse_math": False}):
            return method(*args, **kw)

    def draw(self, renderer: Any) -> None:
        self._literally(super().draw, renderer)

    def tight_layout(self, *args: Any, **kw: Any) -> None:
        self._literally(super().tight_layout, *args, **kw)

    def get_tightbbox(self, *args: Any, **kw: Any) -> Any:
        return self._literally(super().get_tightbbox, *args, **kw)


_SUPERSCRIPT = str.maketrans("0123456789-.", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻·")


def unicode_tick_label(label: str) -> str:
    """A log-axis tick label of matplotlib's, ``$\\mathdefault{1.8\\times10^{-2}}$``, as plain
    Unicode, ``1.8×10⁻²``; any other label unchanged."""
    match = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
    if match is None:
        return label
    body = re.sub(r"\^\{([^{}]*)\}", lambda m: m.group(1).translate(_SUPERSCRIPT), match.group(1))
    return body.replace("\\times", "×").replace("\\cdot", "·").replace("-", "−").strip("{}")


@functools.cache
def _unicode_log_formatter(cls: type) -> type:
    """``cls`` (a log formatter) with its tick labels passed through :func:`unicode_tick_label`."""
    def call(self: Any, x: float, pos: int | None = None) -> str:
        return unicode_tick_label(cls.__call__(self, x, pos))

    return type(f"Unicode{cls.__name__}", (cls,), {"__call__": call})


def subplots(*args: Any, **kw: Any) -> tuple[Any, Any]:
    """``plt.subplots`` under the shared style, as a :class:`LiteralFigure`."""
    with plt.rc_context(STYLE):
        return plt.subplots(*args, FigureClass=LiteralFigure, **kw)


def render(fig: Any, fmt: str = "png") -> bytes:
    """``fig`` as the bytes of a ``fmt`` file, under the shared style."""
    buf = io.BytesIO()
    with plt.rc_context(STYLE):
        fig.savefig(buf, format=fmt)
    return buf.getvalue()


def save(fig: Any, path_stem: str | os.PathLike,
         formats: Sequence[str] = ("png", "pdf"), show: bool = True) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<fmt>`` for each format, atomically; returns the paths.

    The figure is closed afterwards, so in a Jupyter kernel nothing would be shown; there the
    PNG just written is displayed below the cell instead (``show=False``: not), so that a script
    opened as a notebook shows the very file it wrote. Outside a kernel ``show`` does nothing.
    """
    out = []
    for fmt in formats:
        path = Path(f"{path_stem}.{fmt}")
        data = render(fig, fmt)
        atomic_write_bytes(path, data)
        out.append(path)
        if show and fmt == "png":
            display_in_kernel(data)
    plt.close(fig)
    return out


def display_in_kernel(png: bytes) -> bool:
    """Display ``png`` as a cell output when running in a Jupyter kernel; whether it did."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; a script need not
    shell = ipython.get_ipython() if ipython is not None else None
    if getattr(shell, "kernel", None) is None:
        return False
    from IPython.display import Image, display

    display(Image(data=png, format="png"))
    return True


def plot_metric(ax: Any, table: Table, metric: str, label_prefix: str = "",
                layers: Sequence[str] | None = None, **kw: Any) -> bool:
    """Draw ``metric`` against the step on ``ax``, one line per layer (default: every layer the
    table has it on, :func:`layers_of`), labelled ``label_prefix + layer``; whether any was."""
    drew = False
    for layer in layers if layers is not None else layers_of(table, metric):
        steps, values = table.series(metric, layer)
        if len(steps):
            ax.plot(steps, values, marker=".", ms=3, lw=1, label=f"{label_prefix}{layer}", **kw)
            drew = True
    return drew


def say_empty(ax: Any, why: str) -> None:
    """Write in an empty panel why it is empty."""
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=7,
            color="0.35", wrap=True)


def layers_of(table: Table, metric: str) -> list[str]:
    """The layers a table has ``metric`` on: ``"all"`` first, then ``layer<l>`` in order."""
    layers = set(table.select(metric).columns["layer"].tolist())
    return sorted(layers, key=lambda name: (name != "all", len(name), name))


def task_boundaries(ax: Any, table: Table) -> None:
    """A pale vertical line at the step of every task end of ``table``."""
    c = table.columns
    ends = np.isin(c["checkpoint"], task_end_checkpoints(table)) & (c["layer"] == "all")
    for s in np.unique(c["step"][ends]):
        ax.axvline(s, color="0.85", lw=0.6, zorder=0)


def finish_run_figure(fig: Any, axes: Any, table: Table, title: str = "", **layout: Any) -> Any:
    """The common end of a run figure's 2 × 2 panels against training step: task ends marked
    in every panel (:func:`task_boundaries`), the bottom row's x label, ``title`` above, a tight
    layout (``layout``: :meth:`~matplotlib.figure.Figure.tight_layout`'s keywords); returns
    ``fig``."""
    for ax in axes.ravel():
        task_boundaries(ax, table)
    for ax in axes[1]:
        ax.set_xlabel("training step (grey lines: task ends)")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(**layout)
    return fig
