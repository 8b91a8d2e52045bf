"""``import ntkplast.streams``: an old name of :mod:`ntkplast.data.streams` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("streams")
