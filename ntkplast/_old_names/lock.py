"""``import ntkplast.lock``: moved to :mod:`ntkplast.io.lock` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("lock")
