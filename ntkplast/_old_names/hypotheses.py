"""``import ntkplast.hypotheses``: an old name of :mod:`ntkplast.stats` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("hypotheses")
