"""``import ntkplast.reactivation``: moved to :mod:`ntkplast.experiments.reactivation` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("reactivation")
