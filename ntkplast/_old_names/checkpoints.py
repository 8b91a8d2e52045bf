"""``import ntkplast.checkpoints``: the flat name of :mod:`ntkplast.runs.checkpoints`."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("checkpoints")
