"""``import ntkplast.custom_streams``: an old name of :mod:`ntkplast.data.custom` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("custom_streams")
