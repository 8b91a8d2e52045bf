"""Rendering executed notebooks as Markdown pages (the documentation site's notebooks)."""

import base64

import pytest

nbformat = pytest.importorskip("nbformat")

from ntkplast.experiments import notebooks  # noqa: E402

PNG = base64.b64decode(  # a 1×1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def executed_by_hand():
    v4 = nbformat.v4
    argv = v4.new_code_cell("import sys\nsys.argv = ['x.py', '--tiny']")
    argv.metadata["tags"] = [notebooks.ARGV_TAG]
    code = v4.new_code_cell("print('hello')\nshow()\n1 + 1")
    code.outputs = [
        v4.new_output("stream", name="stdout", text="hello\n"),
        v4.new_output("stream", name="stderr", text="SomeWarning: at /a/local/path\n"),
        v4.new_output("display_data", data={"image/png": base64.b64encode(PNG).decode(),
                                            "text/plain": "<Image>"}),
        v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1),
    ]
    fenced = v4.new_code_cell("s = '```'")
    fenced.outputs = [v4.new_output("stream", name="stdout", text="a ```` run\n")]
    return v4.new_notebook(cells=[argv, v4.new_markdown_cell("# Title\n\nProse."), code,
                                  fenced, v4.new_code_cell("")])


def test_markdown_cells_code_output_and_figures_in_order(tmp_path):
    md = notebooks.to_markdown(executed_by_hand(), tmp_path / "img", image_prefix="img/")
    assert "sys.argv" not in md  # the hidden argv cell is left out
    assert "SomeWarning" not in md  # stderr is not shown
    order = [md.index(s) for s in ("# Title", "```python\nprint('hello')", "```text\nhello\n```",
                                   "![figure of cell 2](img/cell2_2.png)", "```text\n2\n```")]
    assert order == sorted(order)
    assert (tmp_path / "img" / "cell2_2.png").read_bytes() == PNG
    assert "`````text\na ```` run\n`````" in md  # a fence longer than any run inside
    assert md.count("```python") == 2  # the empty cell is dropped


def test_the_page_shows_the_very_png_the_script_wrote(tmp_path):
    pytest.importorskip("nbclient")
    pytest.importorskip("jupytext")
    pytest.importorskip("ipykernel")
    script = tmp_path / "draw.py"
    script.write_text(
        "# %% [markdown]\n# # Draw\n\n# %%\nimport sys\nimport matplotlib.pyplot as plt\n"
        "from ntkplast import figures\n\n# %%\nfig, ax = plt.subplots()\nax.plot([0, 1])\n"
        "print('argv', sys.argv[1:])\nfigures.save(fig, 'line', formats=('png',))\n")
    nb = notebooks.execute(script, ["--flag", 3], cwd=tmp_path)
    assert notebooks.stdout_text(nb) == "argv ['--flag', '3']\n"
    md = notebooks.to_markdown(nb, tmp_path / "page")
    (png,) = (tmp_path / "page").glob("*.png")
    assert png.read_bytes() == (tmp_path / "line.png").read_bytes()
    assert f"]({png.name})" in md and md.startswith("# Draw")
