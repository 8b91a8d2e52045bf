"""``import ntkplast.files``: moved to :mod:`ntkplast.io.files` (warns)."""

import sys

import ntkplast

sys.modules[__name__] = ntkplast._old_module("files")
