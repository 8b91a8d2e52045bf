"""Every figure of one analysed run, by name: what ``ntkplast figures RUN_DIR`` draws."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.figures import spectra as spectra_figures
from ntkplast.figures._style import plt, save
from ntkplast.figures.diagnostics import diagnostics
from ntkplast.figures.rivals import rival_diagnostics
from ntkplast.io.files import load_arrays
from ntkplast.io.lock import folder_lock
from ntkplast.table import Table


def run_figure_set(analysis_dir: str | os.PathLike, title: str = "") -> dict[str, Any]:
    """The figures of one analysed run (``RUN_DIR/analysis``), by name: ``diagnostics`` and
    ``rivals`` (:func:`~ntkplast.figures.rivals.rival_diagnostics`; a panel the analysis has no
    rows for says why), and where the analysis has what they draw ``ntk_spectra``,
    ``jacobian_spectra`` (from ``spectra.npz``) and ``ntk_layer_shares``."""
    csv = Path(analysis_dir) / "metrics.csv"
    if not os.path.lexists(csv):
        raise NtkplastError(f"{csv} does not exist; run `ntkplast analyze` on the run first")
    table = Table.read_csv(csv, within=analysis_dir)
    figs = {"diagnostics": diagnostics(table, title), "rivals": rival_diagnostics(table, title)}
    raw = Path(analysis_dir) / "spectra.npz"
    arrays = load_arrays(raw, within=analysis_dir) if os.path.lexists(raw) else {}
    if any(k.startswith("ntk_eigenvalues/") for k in arrays):
        figs["ntk_spectra"] = spectra_figures.ntk_spectra(arrays, table, title=title)
    if any(k.startswith(("jac_sv/", "io_sv/")) for k in arrays):
        figs["jacobian_spectra"] = spectra_figures.jacobian_spectra(arrays, table, title=title)
    if np.any(table.columns["metric"] == "ntk_trace_share"):
        figs["ntk_layer_shares"] = spectra_figures.ntk_layer_shares(table, title=title)
    return figs


def run_figures(analysis_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                title: str = "") -> list[Path]:
    """Draw :func:`run_figure_set` into ``out_dir`` (default: the analysis folder), PNG and PDF
    each; returns the paths.

    Both folders' locks (:func:`ntkplast.io.lock.folder_lock`) are held from before the first
    read to the last write: an ``analyze`` replacing the analysis meanwhile stops the figures
    with its name instead of leaving figures that mix two analyses. An analysis folder this
    user cannot write (an archive) is read without its lock: no writer of ours can change it.
    """
    out = Path(out_dir) if out_dir is not None else Path(analysis_dir)
    with contextlib.ExitStack() as locks:  # a bad output path fails before anything is drawn
        if Path(analysis_dir).resolve() != out.resolve() and os.access(analysis_dir, os.W_OK):
            locks.enter_context(folder_lock(analysis_dir, "figures"))
        locks.enter_context(folder_lock(out, "figures"))
        figs = run_figure_set(analysis_dir, title)
        try:
            return [path for name, fig in figs.items() for path in save(fig, out / name)]
        finally:  # save closes what it wrote; an error part-way must not leave figures open
            for fig in figs.values():
                plt.close(fig)
