"""``import ntkplast.streams``: the flat name of :mod:`ntkplast.data.streams`."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("streams")
