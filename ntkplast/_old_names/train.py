"""``import ntkplast.train``: the flat name of :mod:`ntkplast.training`."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("train")
