"""``import ntkplast.config``: moved to :mod:`ntkplast.training.config` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("config")
