"""Executing ``analyses/*.py`` as notebooks in tests: jupytext converts, nbclient runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_notebook(script, *args, cwd, timeout=600):
    """Open ``script`` (a jupytext percent file) as a notebook, set ``sys.argv`` to
    ``[name, *args]`` in a first cell, execute every cell in a fresh kernel with working
    directory ``cwd``; return the text the cells printed. A failing cell raises
    ``nbclient.exceptions.CellExecutionError`` (the test fails)."""
    import jupytext
    import nbclient
    import nbformat

    script = Path(script)
    nb = jupytext.read(script)
    argv = [script.name, *map(str, args)]
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"import sys\nsys.argv = {argv!r}"))
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs
                   if out.output_type == "stream" and out.name == "stdout")
