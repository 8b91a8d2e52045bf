"""Running the ``analyses/`` scripts as notebooks, and rendering an executed one as Markdown.

Each script in ``analyses/`` is a jupytext percent file: a Python script whose ``# %%`` cells
open as a notebook. :func:`execute` runs one in a fresh Jupyter kernel with chosen command-line
options (a hidden first cell sets ``sys.argv``; :func:`ntkplast.experiments.scripts.script_args`
reads it); :func:`to_markdown` writes the executed notebook as a Markdown page with its printed
output and figures, which is how the documentation site shows the notebooks. Needs jupytext,
nbclient, nbformat and ipykernel (the full environment has them).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ARGV_TAG", "execute", "stdout_text", "to_markdown"]

ARGV_TAG = "ntkplast-argv"  # the tag of the hidden first cell that sets sys.argv


def execute(script: str | os.PathLike, args: Sequence[Any] = (), *, cwd: str | os.PathLike,
            timeout: int = 600) -> Any:
    """Open ``script`` as a notebook, set ``sys.argv = [name, *args]`` in a first cell (tagged
    :data:`ARGV_TAG`), execute every cell in a fresh ``python3`` kernel whose working directory
    is ``cwd``, and return the executed notebook. A failing cell raises
    ``nbclient.exceptions.CellExecutionError``."""
    import jupytext
    import nbclient
    import nbformat

    script = Path(script)
    nb = jupytext.read(script)
    argv = [script.name, *map(str, args)]
    first = nbformat.v4.new_code_cell(f"import sys\nsys.argv = {argv!r}")
    first.metadata["tags"] = [ARGV_TAG]
    nb.cells.insert(0, first)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def stdout_text(nb: Any) -> str:
    """Everything the code cells of an executed notebook printed to stdout."""
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs
                   if out.output_type == "stream" and out.name == "stdout")


def _fence(text: str, lang: str = "") -> str:
    """``text`` in a Markdown code fence longer than any backtick run inside it."""
    ticks = "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def to_markdown(nb: Any, image_dir: str | os.PathLike, image_prefix: str = "") -> str:
    """An executed notebook as Markdown: its Markdown cells as they are, each code cell as a
    Python block followed by what it printed to stdout (a text block; stderr's warnings and
    progress bars are left out) and the PNG figures it displayed,
    written to ``image_dir`` as ``cell<i>_<j>.png`` and linked as
    ``<image_prefix>cell<i>_<j>.png``. The hidden ``sys.argv`` cell is left out."""
    image_dir = Path(image_dir)
    parts = []
    for i, cell in enumerate(nb.cells):
        if ARGV_TAG in cell.metadata.get("tags", ()):
            continue
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            continue
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        parts.append(_fence(cell.source, "python"))
        text = ""
        for j, out in enumerate(cell.outputs):
            data = out.get("data", {})
            if out.output_type == "stream":
                text += out.text if out.name == "stdout" else ""  # not warnings, progress bars
            elif "image/png" in data:
                if text:
                    parts.append(_fence(text, "text"))
                    text = ""
                image_dir.mkdir(parents=True, exist_ok=True)
                name = f"cell{i}_{j}.png"
                (image_dir / name).write_bytes(base64.b64decode(data["image/png"]))
                parts.append(f"![figure of cell {i}]({image_prefix}{name})")
            elif "text/plain" in data:
                text += data["text/plain"] + "\n"
            elif out.output_type == "error":
                text += "\n".join(out.get("traceback", ())) + "\n"
        if text:
            parts.append(_fence(text, "text"))
    return "\n\n".join(parts) + "\n"
