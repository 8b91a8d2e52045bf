"""``import ntkplast.train``: an old name of :mod:`ntkplast.training` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("train")
