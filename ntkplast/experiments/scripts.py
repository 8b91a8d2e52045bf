"""What the ``analyses/`` scripts share so that each also runs as a notebook.

A script run from the shell reads its options from the command line; the same file opened as a
notebook (jupytext) runs in a Jupyter kernel, whose ``sys.argv`` holds the kernel's own options
and where ``__file__`` is not defined. :func:`script_args` and :func:`repository_root` give
each the right answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["in_kernel", "repository_root", "script_args"]


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel started by ``ipykernel_launcher``."""
    return bool(sys.argv) and Path(sys.argv[0]).stem == "ipykernel_launcher"


def script_args(parser: argparse.ArgumentParser,
                notebook: Sequence[str] = ()) -> argparse.Namespace:
    """The command line's options, or ``notebook`` (e.g. ``["--quick"]``) in a kernel.

    A notebook run sets ``sys.argv = ["script.py", ...]`` in a first cell to choose others.
    """
    return parser.parse_args(list(notebook) if in_kernel() else sys.argv[1:])


def repository_root(script_globals: Mapping[str, Any]) -> Path:
    """The checkout a script belongs to: the parent of its ``analyses/`` folder, or, in a
    notebook (no ``__file__``), the folder that holds the ntkplast package being run."""
    path = script_globals.get("__file__")
    if path:
        return Path(path).resolve().parent.parent
    import ntkplast

    return Path(ntkplast.__file__).resolve().parent.parent
