"""analyses/*.py open as notebooks, and the tutorial executes as one at a tiny size."""

import pytest
from notebooks import ROOT, TINY, run_notebook

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SCRIPTS = sorted((ROOT / "analyses").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_analysis_opens_as_a_notebook(script):
    nb = jupytext.read(script)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds[0] == "markdown" and kinds.count("code") >= 2
    for cell in nb.cells:
        if cell.cell_type == "code":
            compile(cell.source, f"{script.name} cell", "exec")


def test_tutorial_executes_as_a_notebook(tmp_path):
    out = run_notebook(ROOT / "analyses" / "tutorial.py", *TINY["tutorial"], cwd=tmp_path)
    assert "kernel distance first → last" in out
    assert "interval over R = 3 runs" in out and "Flax MLP: NTK condition number" in out
    assert (tmp_path / "tutorial" / "diagnostics.png").exists()


def test_a_failing_cell_fails_the_notebook(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("# %% [markdown]\n# A notebook\n\n# %%\nprint('first')\n\n"
                      "# %%\nraise RuntimeError('cell two fails')\n")
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="cell two fails"):
        run_notebook(script, cwd=tmp_path)
