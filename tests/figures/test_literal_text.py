"""Figures draw every name literally (never as mathtext), and log axes still label their ticks
as powers: matplotlib writes those as mathtext, ntkplast as Unicode."""

import numpy as np

from ntkplast.figures import _style


def drawn_tick_labels(ax):
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.get_yticklabels() + ax.get_yminorticklabels()
            if t.get_visible() and t.get_text()]


def test_log_axis_ticks_are_unicode_powers_and_names_stay_literal():
    fig, ax = _style.subplots()
    ax.plot(np.arange(5), [0.02, 1.0, 30.0, 900.0, 2e4], label="$\\frac{$ method")
    ax.set_yscale("log")
    ax.set_title("λ = $1e-3$")
    ax.legend()
    labels = drawn_tick_labels(ax)  # drawing a "$\frac{$" name does not raise
    assert labels and not any("mathdefault" in t or "$" in t for t in labels)
    assert {"10⁰", "10²", "10⁴"} <= set(labels) and "10⁻²" in labels
    assert ax.get_title() == "λ = $1e-3$"
    _style.render(fig)  # the whole figure, legend included, renders


def test_narrow_log_axis_labels_minor_ticks_with_mantissas():
    fig, ax = _style.subplots()
    ax.plot([0, 1], [110.0, 190.0])
    ax.set_yscale("log")
    labels = drawn_tick_labels(ax)
    assert any("×10²" in t for t in labels), labels
    assert not any("mathdefault" in t for t in labels)
