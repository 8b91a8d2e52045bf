"""The diagnostics of an RL agent: each network analysed on the states the agent visited.

``ntkplast analyze RUN_DIR`` on an agent's folder (:mod:`ntkplast.rl.loop`) gathers the
observations saved at every task end (``visited/task_<t>.npz``) into one probe file, runs the
analysis of :func:`ntkplast.analysis.analyze` — NTK, isometry, dormancy and the rest, as on any
run — on the actor and on the critic with that probe, and writes their rows together to
``OUT/metrics.csv`` with every layer named ``actor/<layer>`` or ``critic/<layer>`` (each
network's own folder, ``OUT/actor`` and ``OUT/critic``, keeps its spectra and cache). The
agent's own numbers at each task end — its returns, the fresh agent's, the plasticity loss —
are rows of no network: they keep the layer ``all`` and appear once, so the figures of
``ntkplast figures RUN_DIR`` draw them as for any run.
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
from ntkplast.runs import checkpoints
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
        tasks = {k for c in checkpoints.open_run(run_dir / "actor").checkpoints
                 for k in c.metrics}  # the agent's returns and losses: rows of no network
        tables = []
        for net in NETWORKS:
            table = analyze(run_dir / net, per_net, out_dir=out / net, progress=progress)
            columns = {k: np.asarray(v) for k, v in table.columns.items()}
            agent_row = (columns["layer"] == "all") & np.isin(columns["metric"], list(tasks))
            keep = ~agent_row if net != NETWORKS[0] else np.ones(len(agent_row), bool)
            columns = {k: v[keep] for k, v in columns.items()}
            columns["layer"] = np.asarray([
                layer if shared else f"{net}/{layer}"
                for layer, shared in zip(columns["layer"], agent_row[keep], strict=True)])
            tables.append(Table(columns))
        merged = Table.concat(tables)
        merged.write(out)
    return merged
