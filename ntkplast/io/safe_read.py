"""Bounded reads of files that someone else wrote: regular files only, sizes and nesting bounded.

Every reader of a run folder, an analysis folder, a config or a dataset opens its file through
:func:`open_regular`, which refuses what would hang or exhaust memory before reading a byte: a
FIFO, a device (``/dev/zero``), a socket or a folder; a file larger than the reader's bound; and,
given ``within``, a name whose link leads out of that folder. :func:`read_json` and
:func:`read_toml` parse with a nesting bound (:data:`MAX_DEPTH`) and refuse integers outside
int64, so a document nested 100,000 deep or holding ``10**30`` is a clear error, not a
``RecursionError`` or an ``OverflowError`` later on.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ntkplast.errors import NtkplastError

__all__ = ["CONFIG_BYTES", "MANIFEST_BYTES", "MAX_DEPTH", "TABLE_BYTES", "array_file_bytes",
           "check_limits", "loads_json", "loads_toml", "open_regular", "read_bytes", "read_json",
           "read_toml"]

MAX_DEPTH = 64
"""Deepest nesting of lists and objects a JSON or TOML document may have."""
CONFIG_BYTES = 4 << 20
"""Largest config, grid or spec file read (4 MiB)."""
MANIFEST_BYTES = 256 << 20
"""Largest ``manifest.json`` read (256 MiB: millions of checkpoints)."""
TABLE_BYTES = 4 << 30
"""Largest metrics table (CSV) read (4 GiB)."""
_INT64 = 2**63
_KIND = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def array_file_bytes() -> int:
    """Largest array file (``.npz``) read: this machine's physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _check_within(path: Path, within: str | os.PathLike) -> None:
    real, folder = Path(os.path.realpath(path)), Path(os.path.realpath(within))
    if not real.is_relative_to(folder):
        raise NtkplastError(f"{path} is a link to {real}, outside {within}; a folder's files "
                            f"must lie inside it (copy the file in instead of linking it)")


def open_regular(path: str | os.PathLike, *, limit: int,
                 within: str | os.PathLike | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file of at most ``limit`` bytes.

    Opening never blocks (``O_NONBLOCK``: a FIFO is refused, not waited on). With ``within``
    the file, links followed, must lie inside that folder.

    Raises:
      FileNotFoundError: ``path`` does not exist (callers word that case themselves).
      NtkplastError: anything else that makes the file unreadable or unsafe to read.
    """
    path = Path(path)
    if within is not None:
        _check_within(path, within)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise NtkplastError(f"{path} cannot be opened ({e.strerror or e}); check the path "
                            f"and its permissions") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KIND.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise NtkplastError(f"{path} is {kind}, not a regular file; refused to read it "
                                f"(give the path of an ordinary file)")
        if st.st_size > limit:
            raise NtkplastError(f"{path} holds {st.st_size} bytes, more than the {limit} this "
                                f"reader accepts; is it the right file?")
        os.set_blocking(fd, True)
        return open(fd, "rb")  # noqa: SIM115 (the caller closes it)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, *, limit: int,
               within: str | os.PathLike | None = None) -> bytes:
    """All bytes of the regular file ``path`` (:func:`open_regular`), at most ``limit``."""
    with open_regular(path, limit=limit, within=within) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(size + 1)  # the size at opening, plus a byte to notice growth
        while len(data) <= limit and (more := f.read(1 << 20)):
            data += more
    if len(data) > limit:
        raise NtkplastError(f"{path} grew past {limit} bytes while it was read; is another "
                            f"program writing it?")
    return data


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _json_depth(raw: bytes) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings not counted)."""
    a = np.frombuffer(_JSON_STRING.sub(b'""', raw), np.uint8)
    opens = (a == ord("[")) | (a == ord("{"))
    closes = (a == ord("]")) | (a == ord("}"))
    depth = np.cumsum(opens.astype(np.int64) - closes.astype(np.int64))
    return int(depth.max()) if depth.size else 0


def _json_int(text: str) -> int:
    if len(text) > 20 or not -_INT64 <= (v := int(text)) < _INT64:
        raise ValueError(f"integer {text[:30]}{'…' if len(text) > 30 else ''} is outside the "
                         f"64-bit range")
    return v


def _json_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:30]} overflows a 64-bit float")
    return v


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number (JSON has no NaN or Infinity; a missing "
                     f"value is null)")


def loads_json(raw: bytes | str, source: str, *, finite: bool = False) -> Any:
    """Parse JSON text with the limits of this module; ``source`` names it in errors.

    With ``finite`` the literals ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's
    ``json`` writes and reads by default, though JSON has no such values) are refused too.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if (depth := _json_depth(raw)) > MAX_DEPTH:
        raise NtkplastError(f"{source} nests lists/objects {depth} deep, more than the "
                            f"{MAX_DEPTH} accepted; it is not a file ntkplast wrote")
    try:
        return json.loads(raw.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                          parse_constant=_no_constant if finite else None)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise NtkplastError(f"{source} is not readable JSON ({type(e).__name__}: {e}); "
                            f"restore it from a copy") from None


def read_json(path: str | os.PathLike, *, limit: int = MANIFEST_BYTES,
              within: str | os.PathLike | None = None, finite: bool = False) -> Any:
    """Parse the JSON file ``path`` (:func:`open_regular`, then :func:`loads_json`)."""
    return loads_json(read_bytes(path, limit=limit, within=within), str(path), finite=finite)


def _walk(doc: Any) -> Iterator[tuple[int, Any]]:
    """(depth, value) of every value in a parsed document, without recursion."""
    stack = [(0, doc)]
    while stack:
        depth, v = stack.pop()
        yield depth, v
        if isinstance(v, dict):
            stack.extend((depth + 1, x) for x in v.values())
        elif isinstance(v, list):
            stack.extend((depth + 1, x) for x in v)


def loads_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text with the limits of this module; ``source`` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise NtkplastError(f"{source} is not valid TOML: {e}") from None
    except (RecursionError, ValueError) as e:  # ValueError: an integer of > 4,300 digits
        raise NtkplastError(f"{source} cannot be parsed ({type(e).__name__}: {e}); it nests "
                            f"too deep or holds a number too large") from None
    check_limits(doc, source)
    return doc


def check_limits(doc: Any, source: str) -> None:
    """Refuse a parsed document nested deeper than :data:`MAX_DEPTH` or holding an integer
    outside int64 (``source`` names it in the error)."""
    for depth, v in _walk(doc):
        if depth > MAX_DEPTH:
            raise NtkplastError(f"{source} nests tables/arrays more than {MAX_DEPTH} deep")
        if isinstance(v, int) and not isinstance(v, bool) and not -_INT64 <= v < _INT64:
            raise NtkplastError(f"{source}: integer {str(v)[:30]}… is outside the 64-bit range")


def read_toml(path: str | os.PathLike, *, limit: int = CONFIG_BYTES) -> dict[str, Any]:
    """Parse the TOML file ``path`` (:func:`open_regular`, then :func:`loads_toml`)."""
    raw = read_bytes(path, limit=limit)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NtkplastError(f"{path} is not UTF-8 text ({e}); a config must be TOML") from None
    return loads_toml(text, str(path))
