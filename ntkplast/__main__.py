"""``python -m ntkplast`` is the ``ntkplast`` command."""

import sys

from ntkplast.cli import main

sys.exit(main())
