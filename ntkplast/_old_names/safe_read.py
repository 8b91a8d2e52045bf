"""``import ntkplast.safe_read``: moved to :mod:`ntkplast.io.safe_read` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("safe_read")
