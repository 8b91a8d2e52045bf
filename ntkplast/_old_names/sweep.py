"""``import ntkplast.sweep``: moved to :mod:`ntkplast.experiments.sweep` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("sweep")
