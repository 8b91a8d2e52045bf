"""``import ntkplast.hypotheses``: the flat name of :mod:`ntkplast.stats`."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("hypotheses")
