"""``import ntkplast.experiment``: moved to :mod:`ntkplast.experiments.grid` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("experiment")
