"""figures.save shows the PNG it wrote in a Jupyter kernel, and only there."""

import sys
import types

import matplotlib.pyplot as plt

from ntkplast import figures


def fake_ipython(monkeypatch, kernel):
    """An ``IPython`` module whose shell has (or lacks) a kernel; returns what it displayed."""
    shown = []
    shell = types.SimpleNamespace(kernel=kernel)
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    display_mod = types.ModuleType("IPython.display")
    display_mod.Image = lambda data, format: (format, data)
    display_mod.display = shown.append
    ipython.display = display_mod
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    return shown


def test_a_kernel_is_shown_the_png_it_wrote(tmp_path, monkeypatch):
    fig, ax = plt.subplots()  # before the fake: pyplot asks a real IPython about its backend
    ax.plot([0, 1], [1, 0])
    shown = fake_ipython(monkeypatch, kernel=object())
    paths = figures.save(fig, tmp_path / "line", formats=("png",))
    assert shown == [("png", paths[0].read_bytes())]


def test_outside_a_kernel_or_with_show_false_nothing_is_shown(tmp_path, monkeypatch):
    first, second = plt.subplots()[0], plt.subplots()[0]
    shown = fake_ipython(monkeypatch, kernel=None)  # a terminal IPython has no kernel
    figures.save(first, tmp_path / "a", formats=("png",))
    shown_too = fake_ipython(monkeypatch, kernel=object())
    figures.save(second, tmp_path / "b", formats=("png",), show=False)
    assert shown == [] and shown_too == []
    assert (tmp_path / "a.png").exists() and (tmp_path / "b.png").exists()
