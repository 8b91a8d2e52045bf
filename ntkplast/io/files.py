"""Crash-safe file I/O: atomic writes and guarded ``.npz`` reads.

Every write goes to a temporary name in the destination folder, is flushed to disk (``fsync``)
and renamed over the final name, so a reader never sees half a file and a killed writer leaves at
most a temporary (``.<name>.ntkplast-<random>.tmp``) that :func:`remove_stale_temporaries`
clears; no other file is ever removed (a user's own ``.draft.tmp`` stays). ``.npz`` files are
read with ``allow_pickle=False`` from regular files only
(:func:`ntkplast.io.safe_read.open_regular`), and each member's header is checked before it is
inflated, so a crafted archive (a zip bomb, an object array) is refused with a clear error instead
of exhausting memory. Used by the run-folder format, the dataset cache, tables, figures and sweeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.io.safe_read import array_file_bytes, open_regular

__all__ = ["array_writer", "atomic_file", "atomic_write_bytes", "load_arrays",
           "remove_stale_temporaries", "save_arrays"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: Path, e: OSError) -> NtkplastError:
    return NtkplastError(f"could not write {path}: {e.strerror or e} (errno {e.errno}); nothing "
                         f"was written under that name and its previous version, if any, is "
                         f"intact; free disk space or fix permissions, then re-run (for "
                         f"training: with --resume)")


_TEMP_MARK = ".ntkplast-"
_OWN_TEMPORARY = re.compile(r"^\..+\.ntkplast-[A-Za-z0-9_]{6,}\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the ``.<name>.ntkplast-<random>.tmp`` files that a killed
    :func:`atomic_write_bytes` left in ``folder`` (never a finished file: those are renamed into
    place; never a file ntkplast did not name so); returns how many.

    Call it only while holding the folder's lock (:func:`ntkplast.io.lock.folder_lock`)."""
    removed = 0
    for path in Path(folder).glob(".*.tmp"):
        if _OWN_TEMPORARY.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block exits normally (module doc):
    written under a temporary name, which an error or interruption inside the block removes."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TEMP_MARK}", suffix=".tmp",
                                   dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, e) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise _write_error(path, e) from e


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync the folder.

    The file gets the permissions ``open()`` would give it (0666 less the umask), not the
    owner-only 0600 of the temporary file, so a shared run folder stays readable. A failed
    write (disk full, no permission) removes the temporary file, leaves any previous version
    of ``path`` intact and raises :class:`~ntkplast.errors.NtkplastError` naming the file and
    the OS error.
    """
    with atomic_file(path) as f:
        f.write(data)


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, Any]) -> str:
    """Save named arrays as an uncompressed ``.npz``, atomically; returns the file's SHA-256
    (hex), the digest a manifest records for a checkpoint."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def array_writer(path: str | os.PathLike) -> Iterator[Callable[[str, Any], None]]:
    """Stream named arrays into an uncompressed ``.npz``, atomically: ``add(name, array)``.

    Each array goes to disk as it is added, so memory holds one array at a time however many
    are written; the file appears under ``path`` only when the block exits without an error
    (as :func:`atomic_write_bytes`). Readable by :func:`load_arrays` and ``np.load``.
    """
    with atomic_file(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        def add(name: str, array: Any) -> None:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        yield add


# Bounds on one .npz (load_arrays). float weights compress by less than 2x and np.savez stores, so
# only a crafted file comes near them. A member that inflates more than _BOMB_RATIO times over its
# compressed size, to more than _BOMB_BYTES, is refused as a zip bomb; so is an archive whose
# members declare more than _ARCHIVE_FLOOR bytes in all and more than _BOMB_RATIO times the file's
# size, and one with more than _MAX_MEMBERS members or a central directory (the list of members,
# parsed whole by zipfile) of more than _MAX_DIRECTORY_BYTES.
_BOMB_RATIO = 200
_BOMB_BYTES = 1 << 28
_ARCHIVE_FLOOR = 1 << 28
_MAX_MEMBERS = 100_000
_MAX_DIRECTORY_BYTES = 1 << 25


def _directory(f: Any) -> tuple[int, int, int]:
    """(file size, members, central-directory bytes) that the end record of the zip ``f``
    declares (the zip64 record's when present); members and bytes are 0 without an end record
    (zipfile then says what is wrong). Reads at most the last 64 KiB and the zip64 record."""
    size = f.seek(0, os.SEEK_END)
    start = max(0, size - 22 - 0xFFFF)  # the end record: 22 bytes and a comment of < 64 KiB
    f.seek(start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    members = directory = 0
    if at >= 0 and len(tail) - at >= 22:
        members, directory = struct.unpack("<10xH L 6x", tail[at:at + 22])
        locator = tail[at - 20:at] if at >= 20 else b""
        if (members == 0xFFFF or directory == 0xFFFFFFFF) and locator[:4] == b"PK\x06\x07":
            f.seek(struct.unpack("<8xQ4x", locator)[0])
            record = f.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                members, directory = struct.unpack("<32xQQ8x", record)
    f.seek(0)
    return size, members, directory


def _check_archive(infos: list[zipfile.ZipInfo], size: int, source: Any) -> None:
    """Refuse an archive whose members declare more bytes in all than memory holds, or more than
    ``_ARCHIVE_FLOOR`` and ``_BOMB_RATIO`` times the archive's ``size`` (a zip bomb)."""
    total, memory = sum(info.file_size for info in infos), array_file_bytes()
    if total > memory:
        raise NtkplastError(f"file {source} declares {total} bytes of arrays, more than this "
                            f"machine's memory ({memory}); is it the right file?")
    if total > _ARCHIVE_FLOOR and total > _BOMB_RATIO * max(size, 1):
        raise ValueError(f"its {len(infos)} members would inflate from {size} to {total} bytes "
                         f"in all (a zip bomb?)")


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of the ``.npy`` stream ``f`` positioned at its start."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return shape, dtype, f.tell()


def _check_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse a member that is not a plain ``.npy`` array or whose sizes do not add up."""
    if not info.filename.endswith(".npy"):
        raise ValueError(f"member {info.filename!r} is not a .npy array")
    if info.file_size > _BOMB_BYTES and info.file_size > _BOMB_RATIO * max(info.compress_size, 1):
        raise ValueError(f"member {info.filename!r} would inflate from {info.compress_size} to "
                         f"{info.file_size} bytes (a zip bomb?)")
    with zf.open(info) as f:
        shape, dtype, header = _npy_header(f)
    if dtype.hasobject:
        raise ValueError(f"member {info.filename!r} holds Python objects (dtype {dtype}); "
                         f"object arrays are refused because reading them means unpickling, "
                         f"which can run code")
    nbytes = math.prod(shape) * dtype.itemsize
    if header + nbytes != info.file_size:
        raise ValueError(f"member {info.filename!r} declares shape {shape} of {dtype} "
                         f"({nbytes} bytes) but holds {info.file_size - header} bytes")


def load_arrays(path: str | os.PathLike | io.BytesIO, *, within: str | os.PathLike | None = None,
                source: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz``; corrupt or hostile files raise
    :class:`~ntkplast.errors.NtkplastError`.

    ``path`` is a regular file (a FIFO, a device or a file larger than this machine's memory is
    refused; with ``within``, also a link out of that folder) or the file's bytes already read
    (``io.BytesIO``; ``source`` names it in errors). Never unpickles: object arrays are
    refused. Before anything is inflated: the archive may have at most 100,000 members
    (``_MAX_MEMBERS``, read from its end record before the members are listed, and a list of
    at most 32 MiB); their declared sizes may sum to at most this machine's memory
    (:func:`~ntkplast.io.safe_read.array_file_bytes`), and to at most 200 times the file's size
    once above 256 MiB (below that any ratio passes: all-zero arrays of a few MB compress
    ~1000 times); a member may inflate to at most 200 times its compressed size once above
    256 MiB; each member's ``.npy`` header must match its declared size (so the arrays' bytes,
    too, are within these bounds). A zip bomb or a header that claims a huge shape is refused
    instead of exhausting memory.
    """
    source = path if source is None else source
    try:
        with contextlib.ExitStack() as stack:
            f = path if isinstance(path, io.BytesIO) else stack.enter_context(
                open_regular(path, limit=array_file_bytes(), within=within))
            size, members, directory = _directory(f)
            if members > _MAX_MEMBERS or directory > _MAX_DIRECTORY_BYTES:
                raise NtkplastError(f"file {source} declares {members} members in a list of "
                                    f"{directory} bytes; an .npz of arrays may hold at most "
                                    f"{_MAX_MEMBERS} in {_MAX_DIRECTORY_BYTES} bytes; is it the "
                                    f"right file?")
            zf = stack.enter_context(zipfile.ZipFile(f))
            infos = zf.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise NtkplastError(f"file {source} holds {len(infos)} members; an .npz of "
                                    f"arrays may hold at most {_MAX_MEMBERS}; is it the right "
                                    f"file?")
            _check_archive(infos, size, source)
            for info in infos:
                _check_member(zf, info)
            out = {}
            for info in infos:
                with zf.open(info) as f:
                    out[info.filename[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except NtkplastError:
        raise
    except FileNotFoundError:
        raise NtkplastError(f"file {source} does not exist; if it belongs to a run folder, the "
                            f"folder is incomplete (was it moved or partly copied?)") from None
    except MemoryError:
        raise NtkplastError(f"file {source} holds arrays too large for this machine's "
                            f"memory") from None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
            NotImplementedError, RuntimeError, OverflowError) as e:
        # zipfile raises NotImplementedError (unknown compression or zip version) and
        # RuntimeError (encrypted member); numpy raises ValueError/TypeError on bad headers
        raise NtkplastError(f"file {source} is corrupt or not an .npz of plain arrays "
                            f"({type(e).__name__}: {e}); restore it from a copy (a checkpoint: "
                            f"or delete it and its manifest entry)") from None
