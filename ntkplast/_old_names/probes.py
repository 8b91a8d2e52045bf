"""``import ntkplast.probes``: moved to :mod:`ntkplast.analysis.probes` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("probes")
