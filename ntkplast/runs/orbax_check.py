"""Checking an Orbax checkpoint folder before orbax and tensorstore restore it.

Orbax and tensorstore open an item's files themselves, so the bounded reader of
:mod:`ntkplast.io.safe_read` never sees them: a FIFO in place of a chunk file would hang the
restore, and an edited ``.zarray`` shape would make it allocate gigabytes.
:func:`check_orbax_item` walks the folder and reads the array metadata first, and refuses such
an item with :class:`~ntkplast.errors.NtkplastError` before any restore. Used by
:mod:`ntkplast.runs.jax_import`.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read

__all__ = ["check_orbax_item"]

_MAX_ENTRIES, _MAX_DEPTH, _META_BYTES = 100_000, 32, 1 << 20
_RATIO, _FLOOR = 200, 1 << 28
_ZARR_METADATA = (".zarray", "zarr.json")


def _walk_item(item: Path) -> tuple[int, list[Path]]:
    """(bytes stored in ``item``'s files, its zarr metadata files), refusing what
    :func:`check_orbax_item` refuses in the folder tree."""
    root, limit = Path(os.path.realpath(item)), safe_read.array_file_bytes()
    stored, metas, count, stack = 0, [], 0, [(item, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError as err:
            raise NtkplastError(f"{folder} cannot be listed ({err.strerror or err}); give an "
                                f"Orbax checkpoint folder") from None
        with entries:
            for e in entries:
                path, count = Path(e.path), count + 1
                if count > _MAX_ENTRIES:
                    raise NtkplastError(f"{item} holds more than {_MAX_ENTRIES} files and "
                                        f"folders; an Orbax item of one model holds far fewer: "
                                        f"give the checkpoint's own folder")
                if e.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
                    raise NtkplastError(f"{path} is a link to {os.path.realpath(path)}, outside "
                                        f"{item}; copy the file into the checkpoint instead")
                try:
                    st = path.stat()
                except OSError as err:
                    raise NtkplastError(f"{path} cannot be read ({err.strerror or err}); the "
                                        f"checkpoint is incomplete: copy it again") from None
                if stat.S_ISDIR(st.st_mode):
                    if depth + 1 > _MAX_DEPTH:
                        raise NtkplastError(f"{path} lies more than {_MAX_DEPTH} levels deep "
                                            f"in {item}; not an Orbax checkpoint's layout")
                    if not e.is_symlink():  # a link's target inside the item is walked anyway
                        stack.append((path, depth + 1))
                elif not stat.S_ISREG(st.st_mode):
                    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket"
                            if stat.S_ISSOCK(st.st_mode) else "a device")
                    raise NtkplastError(f"{path} is {kind}, not a regular file or folder; "
                                        f"refused to restore {item} (copy the checkpoint again)")
                elif st.st_size > limit:
                    raise NtkplastError(f"{path} holds {st.st_size} bytes, more than this "
                                        f"machine's memory ({limit}); is it the right file?")
                else:
                    stored += st.st_size
                    if e.name in _ZARR_METADATA:
                        metas.append(path)
    return stored, metas


def _ocdbt_metadata(item: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of the zarr metadata keys in ``item``'s OCDBT store (through tensorstore,
    which reads only its manifest and b-tree nodes for this)."""
    where = f"{item}/manifest.ocdbt"
    try:
        import tensorstore as ts
    except ImportError:
        raise NtkplastError(f"{where}: reading OCDBT checkpoints needs tensorstore; pip "
                            f"install orbax-checkpoint") from None
    try:
        kv = ts.KvStore.open({"driver": "ocdbt", "base": {
            "driver": "file", "path": os.path.realpath(item) + "/"}}).result()
        keys = kv.list().result()
        if len(keys) > _MAX_ENTRIES:
            raise ValueError(f"more than {_MAX_ENTRIES} keys")
        found = []
        for k in keys:
            if k.rpartition(b"/")[2].decode("utf-8", "replace") in _ZARR_METADATA:
                value = bytes(kv.read(k).result().value)
                if len(value) > _META_BYTES:
                    raise ValueError(f"{k!r} holds more than {_META_BYTES} bytes")
                found.append((f"{where}: {k.decode('utf-8', 'replace')}", value))
    except Exception as e:  # tensorstore raises ValueError and its own errors for damage
        raise NtkplastError(f"{where}: the OCDBT store cannot be listed ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:300]}); the checkpoint is damaged: "
                            f"re-save it") from None
    return found


def _itemsize(dtype: Any) -> int | None:
    """Bytes per element of a zarr v2 (``"<f4"``) or zarr3/tensorstore (``"float32"``,
    ``"bfloat16"``) data type; ``None`` for anything else (objects, records, strings)."""
    if not isinstance(dtype, str):
        return None
    if m := re.fullmatch(r"[<>|=]?[biufc](\d{1,2})", dtype):
        return int(m.group(1)) or None
    if m := re.fullmatch(r"(?:bool|u?int|b?float|complex)(\d{0,3})(?:_[a-z0-9]+)?", dtype):
        return max(1, int(m.group(1) or 8) // 8)
    return None


def _array_bytes(meta: Any, source: str) -> tuple[list[int], int, int]:
    """(shape, bytes, bytes of one chunk) a parsed zarr array metadata declares."""
    meta = meta if isinstance(meta, dict) else {}
    grid = meta.get("chunk_grid")
    config = grid.get("configuration") if isinstance(grid, dict) else None
    chunks = meta.get("chunks", config.get("chunk_shape") if isinstance(config, dict) else None)
    shape, dtype = meta.get("shape"), meta.get("dtype", meta.get("data_type"))

    def sizes(v: Any, low: int) -> bool:
        return isinstance(v, list) and len(v) <= 32 and all(
            type(x) is int and x >= low for x in v)
    if not sizes(shape, 0):
        raise NtkplastError(f"{source}: shape {str(shape)[:80]} is not a list of at most 32 "
                            f"non-negative integers; the checkpoint is damaged: re-save it")
    if not sizes(chunks, 1) or len(chunks) != len(shape):
        raise NtkplastError(f"{source}: chunks {str(chunks)[:80]} are not {len(shape)} positive "
                            f"integers (shape {shape}); the checkpoint is damaged: re-save it")
    if (size := _itemsize(dtype)) is None:
        raise NtkplastError(f"{source}: dtype {str(dtype)[:40]!r} is not a numeric type; "
                            f"ntkplast reads arrays of numbers only: re-save the parameters")
    return shape, math.prod(shape) * size, math.prod(chunks) * size


def check_orbax_item(item: str | os.PathLike) -> None:
    """Refuse an Orbax item folder whose restore could hang or exhaust memory, before orbax or
    tensorstore read any of it. Checked:

    * the folder tree, at most 100,000 entries and 32 levels deep: every entry a folder or a
      regular file of at most this machine's memory
      (:func:`ntkplast.io.safe_read.array_file_bytes`); no FIFO, device or socket; a link must
      lead inside ``item`` (a link to a folder is not walked: its target inside is);
    * every zarr array's metadata (which shapes tensorstore allocates): the ``.zarray`` (zarr
      v2) and ``zarr.json`` (zarr3) files in the tree, each JSON of at most 1 MiB
      (:func:`ntkplast.io.safe_read.read_bytes`, :func:`~ntkplast.io.safe_read.loads_json`),
      and, when ``manifest.ocdbt`` is present, the
      same keys inside the OCDBT store (listed through tensorstore; the ``d/`` data files are
      then regular files already). Its ``shape`` (at most 32 non-negative integers), ``chunks``
      (zarr3: ``chunk_grid.configuration.chunk_shape``, positive, one per dimension) and
      ``dtype``/``data_type`` (a numeric type) must be sane;
    * the budget: each chunk's bytes, and the bytes all arrays declare together (∑ prod(shape)
      × itemsize), at most min(physical memory, max(256 MiB, 200 × the bytes the item's files
      hold)). An array whose chunks all equal its fill value is stored as nothing, so the
      budget allows 200 times what is stored, and at least 256 MiB, rather than the stored size.

    Orbax's ``_METADATA`` (the tree and value types) records no shapes in the orbax versions
    read here; the zarr metadata is what a restore allocates from.

    Raises:
      NtkplastError: one line naming the entry, what is wrong and what to do.
    """
    item = Path(item)
    stored, metas = _walk_item(item)
    found = [(str(p), safe_read.read_bytes(p, limit=_META_BYTES, within=item)) for p in metas]
    if (item / "manifest.ocdbt").is_file():
        found += _ocdbt_metadata(item)
    budget = min(safe_read.array_file_bytes(), max(_FLOOR, _RATIO * stored))
    total = 0
    for source, raw in found:
        shape, nbytes, chunk = _array_bytes(safe_read.loads_json(raw, source), source)
        total += nbytes
        if max(total, chunk) > budget:
            what = (f"chunks of {chunk} bytes each" if chunk > budget else
                    f"shape {shape} brings the item's arrays to {total} bytes in all")
            raise NtkplastError(f"{source}: {what}, more than the {budget} allowed "
                                f"(physical memory, or less: "
                                f"{_RATIO} × the {stored} bytes its files hold, at least "
                                f"{_FLOOR >> 20} MiB); the checkpoint is damaged or edited: "
                                f"re-save it")
