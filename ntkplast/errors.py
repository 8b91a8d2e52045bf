"""The one exception type that ntkplast raises for bad input."""

from __future__ import annotations


class NtkplastError(ValueError):
    """Bad input: a missing or corrupt file, an unknown setting, a wrong shape.

    The message names the file or argument, says what was expected and what to do. The CLI
    prints it as one line and exits with status 2.
    """
