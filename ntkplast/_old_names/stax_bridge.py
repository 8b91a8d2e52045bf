"""``import ntkplast.stax_bridge``: moved to :mod:`ntkplast.ntk._stax` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("stax_bridge")
