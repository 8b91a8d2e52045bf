"""``import ntkplast.interop``: moved to :mod:`ntkplast.runs.interop` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("interop")
