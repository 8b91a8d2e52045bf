"""The diagnostics of an RL agent: each network analysed on the states the agent visited.

``ntkplast analyze RUN_DIR`` on an agent's folder (:mod:`ntkplast.rl.loop`) gathers the
observations saved at every task end (``visited/task_<t>.npz``) into one probe file, runs the
analysis of :func:`ntkplast.analysis.analyze` — NTK, isometry, dormancy and the rest, as on any
run — on the actor and on the critic with that probe, and writes their rows together to
``OUT/metrics.csv`` with every layer named ``actor/<layer>`` or ``critic/<layer>`` (each
network's own folder, ``OUT/actor`` and ``OUT/critic``, keeps its spectra and cache).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ntkplast.analysis import Settings, analyze
from ntkplast.errors import NtkplastError
from ntkplast.io.files import load_arrays, save_arrays
from ntkplast.io.lock import folder_lock
from ntkplast.rl.loop import NETWORKS, read_agent
from ntkplast.table import Table

__all__ = ["analyze_agent", "visited_states"]


def visited_states(run_dir: str | os.PathLike) -> np.ndarray:
    """The observations saved at the agent's task ends, in task order (``N × H × W × C``)."""
    files = sorted((Path(run_dir) / "visited").glob("task_*.npz"))
    if not files:
        raise NtkplastError(f"{run_dir}: no visited states (visited/task_*.npz); train at least "
                            f"one task before analysing")
    return np.concatenate([load_arrays(f, within=run_dir)["x"] for f in files])


def analyze_agent(run_dir: str | os.PathLike, settings: Settings | None = None, *,
                  out_dir: str | os.PathLike | None = None, progress: bool = True) -> Table:
    """Analyse the actor and the critic of the agent in ``run_dir`` (module docstring).

    Args:
      run_dir: an agent's folder (``agent.json``, ``actor/``, ``critic/``).
      settings: what to compute (:class:`ntkplast.analysis.Settings`); its ``probe`` is
        replaced by the visited states, its ``probe_size`` (default 256) draws from them.
      out_dir: where the results go (default ``RUN_DIR/analysis``).
      progress: show progress bars.

    Returns:
      Both networks' rows, layers prefixed with the network's name.
    """
    read_agent(run_dir)
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "analysis"
    settings = settings or Settings()
    with folder_lock(out, "analyze"):
        probe = out / "visited_states.npz"
        save_arrays(probe, {"x": visited_states(run_dir)})
        per_net = dataclasses.replace(settings, probe=str(probe))
        tables = []
        for net in NETWORKS:
            table = analyze(run_dir / net, per_net, out_dir=out / net, progress=progress)
            columns = dict(table.columns)
            columns["layer"] = np.asarray([f"{net}/{layer}" for layer in columns["layer"]])
            tables.append(Table(columns))
        merged = Table.concat(tables)
        merged.write(out)
    return merged
