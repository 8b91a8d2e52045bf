"""The one exception type that ntkplast raises for bad input, and the CLI's one-line format."""

from __future__ import annotations

import sys
from typing import TextIO


class NtkplastError(ValueError):
    """Bad input: a missing or corrupt file, an unknown setting, a wrong shape.

    The message names the file or argument, says what was expected and what to do. The CLI
    prints it as one line and exits with status 2.
    """


def one_line(message: object) -> str:
    """``message`` as one line of plain text: every run of whitespace (newlines included) folded
    to one space, and every other character a terminal would act on (escape sequences, bell,
    NUL, bidirectional overrides) shown as its Python escape, so a folder or config name is
    printed as written, never interpreted."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1]
                   for c in " ".join(str(message).split()))


def show_warning_line(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """A ``warnings.showwarning`` that prints ``ntkplast: warning: …`` as one line on stderr
    (the CLI's format; no source line, no file name)."""
    print(f"ntkplast: warning: {one_line(message)}", file=file or sys.stderr)
