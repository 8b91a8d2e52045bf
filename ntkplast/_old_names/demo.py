"""``import ntkplast.demo``: moved to :mod:`ntkplast.experiments.demo` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("demo")
