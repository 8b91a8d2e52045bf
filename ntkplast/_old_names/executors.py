"""``import ntkplast.executors``: moved to :mod:`ntkplast.experiments.executors` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("executors")
