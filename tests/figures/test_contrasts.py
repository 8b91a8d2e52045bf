"""The paired-contrast figure draws each contrast where its numbers say."""

import matplotlib.text
import numpy as np
import pytest

from ntkplast import figures, stats
from ntkplast.errors import NtkplastError
from ntkplast.figures import render


def test_each_contrast_is_a_point_with_its_interval():
    a = stats.paired_contrast([0.5, 0.7, 0.6], [0.3, 0.45, 0.38], label="a − b")
    b = stats.paired_contrast([0.1, 0.3, 0.2, 0.0], [0.2, 0.1, 0.3, 0.1], label="c − b")
    fig = figures.paired_contrasts({"one": [a, b], "two": [b]}, title="t")
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_yticklabels()] == ["a − b (R = 3)", "c − b (R = 4)"]
    points = [line for line in left.get_lines() if len(line.get_xdata()) == 1
              and line.get_marker() == "o"]
    assert sorted(float(p.get_xdata()[0]) for p in points) == sorted([a.diff, b.diff])
    filled = {float(p.get_xdata()[0]): p.get_markerfacecolor() != "white" for p in points}
    assert a.ci_low > 0 and b.ci_low < 0 < b.ci_high
    assert filled[a.diff] and not filled[b.diff]
    assert right.get_title() == "two"
    bars = [c for c in left.collections if len(c.get_segments())]
    ends = sorted(np.round([s[0][0] for c in bars for s in c.get_segments()], 12))
    assert np.round(a.ci_low, 12) in ends and np.round(b.ci_low, 12) in ends


def test_no_groups_is_refused():
    with pytest.raises(NtkplastError, match="no groups"):
        figures.paired_contrasts({})


@pytest.mark.parametrize("name", [r"$\frac{$", r"lr=$1e-3$ \n", "<b>&amp;</b> 100%"])
def test_user_strings_are_drawn_literally(name):
    """A method, folder or stream name is text, never mathtext: ``$\\frac{$`` drew a
    ParseException, ``$1e-3$`` came out as math (issue 35)."""
    c = stats.paired_contrast([0.5, 0.7, 0.6], [0.4, 0.5, 0.5], label=name)
    fig = figures.paired_contrasts({name: [c]}, title=name)
    assert render(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    texts = [t for t in fig.findobj(matplotlib.text.Text) if name in t.get_text()]
    assert texts and not any(t.get_parse_math() for t in texts)
