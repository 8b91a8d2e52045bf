"""``import ntkplast.checkpoints``: an old name of :mod:`ntkplast.runs.checkpoints` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("checkpoints")
