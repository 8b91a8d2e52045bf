"""Executing ``analyses/*.py`` as notebooks in tests (:mod:`ntkplast.experiments.notebooks`)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = tomllib.loads((ROOT / "analyses" / "tiny_sizes.toml").read_text())
"""Each analyses/ script's options at its tiny size (shared with docs/render_notebooks.py)."""


def run_notebook(script, *args, cwd, timeout=600):
    """Execute ``script`` (a jupytext percent file) as a notebook with ``sys.argv`` set to
    ``[name, *args]``, in a fresh kernel with working directory ``cwd``; return the text the
    cells printed. A failing cell raises ``nbclient.exceptions.CellExecutionError``."""
    from ntkplast.experiments import notebooks

    return notebooks.stdout_text(notebooks.execute(script, args, cwd=cwd, timeout=timeout))
