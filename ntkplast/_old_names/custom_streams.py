"""``import ntkplast.custom_streams``: the flat name of :mod:`ntkplast.data.custom`."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("custom_streams")
