"""Reading dataset files' bytes: bounded (optionally gunzipped) reads, IDX, and CIFAR pickles.

The format layer under :mod:`ntkplast.data.datasets`, which knows the datasets (names, class
counts, folder layouts) and turns what these functions return into a
:class:`~ntkplast.data.datasets.Dataset`. Every read is of a regular file of at most this
machine's memory (:mod:`ntkplast.io.safe_read`); a malformed file raises :class:`NtkplastError`
naming it. The python versions of CIFAR are pickles; :func:`load_cifar_pickle` reads them with
an unpickler that can build numpy arrays and nothing else, so a planted pickle cannot run code.
"""

from __future__ import annotations

import codecs
import gzip
import io
import math
import os
import pickle
import pickletools
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read

__all__ = ["load_cifar_pickle", "read_bytes", "read_idx"]


def read_bytes(path: Path) -> bytes:
    """All bytes of ``path``, gunzipped when the name ends in ``.gz`` (a regular file only, and
    at most this machine's memory, gunzipped or not: :mod:`ntkplast.io.safe_read`)."""
    limit = safe_read.array_file_bytes()
    try:
        if path.suffix != ".gz":
            return safe_read.read_bytes(path, limit=limit)
        chunks, size = [], 0
        with safe_read.open_regular(path, limit=limit) as raw, gzip.GzipFile(fileobj=raw) as f:
            while size <= limit and (chunk := f.read(1 << 20)):
                chunks.append(chunk)
                size += len(chunk)
        if size > limit:
            raise NtkplastError(f"{path} inflates to more than this machine's memory ({limit} "
                                f"bytes); it is not a dataset file")
        return b"".join(chunks)
    except (OSError, EOFError, zlib.error) as e:
        kind = "a readable gzip file" if path.suffix == ".gz" else "a readable file"
        raise NtkplastError(f"{path}: expected {kind}, but reading failed ({e}); the file is "
                            f"corrupt or truncated, download it again") from e


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (the MNIST format), plain or gzipped (``.gz``).

    Layout: two zero bytes, the type byte ``0x08`` (unsigned byte), the number of dimensions,
    that many big-endian uint32 sizes, then the data. Checked strictly: the magic number must be
    ``0x00000801`` for ``ndim=1`` (labels) or ``0x00000803`` for ``ndim=3`` (images), and the file
    size must equal the header's exactly.

    Returns:
      a ``uint8`` array of the header's shape.
    """
    path = Path(path)
    raw = read_bytes(path)
    magic = 0x0800 | ndim
    if len(raw) < 4 or raw[:4] != magic.to_bytes(4, "big"):
        got = "0x" + raw[:4].hex() if len(raw) >= 4 else f"{len(raw)} bytes"
        raise NtkplastError(f"{path}: not an IDX file of {ndim}-d unsigned bytes: expected magic "
                            f"number 0x{magic:08x}, got {got}; check that the file is the right "
                            f"one and not corrupt")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise NtkplastError(f"{path}: truncated IDX header ({len(raw)} bytes, expected at least "
                            f"{header}); download the file again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # a Python int: no overflow for hostile sizes
    if len(raw) != expected:
        raise NtkplastError(f"{path}: IDX header says shape {shape}, i.e. {expected} bytes in "
                            f"all, but the file has {len(raw)} bytes; it is truncated or "
                            f"corrupt, download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _array_reconstructors() -> dict[tuple[str, str], Callable[..., Any]]:
    """The only callables a CIFAR pickle may name: what rebuilding numpy arrays needs."""
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds dicts, lists and numpy arrays, and refuses any other global."""

    _allowed = _array_reconstructors()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise NtkplastError(
                f"refused to unpickle {module}.{name}: a CIFAR batch may only contain numpy "
                f"arrays, lists and dicts; this file is not a genuine CIFAR batch (it could run "
                f"code if unpickled normally), replace it with the official download") from None


def _check_pickle_opcodes(raw: bytes) -> None:
    """Walk the pickle's opcodes without running them and refuse memo indices beyond the
    number of opcodes: ``LONG_BINPUT 10**9`` would make the C unpickler allocate gigabytes."""
    count = 0
    for opcode, arg, _ in pickletools.genops(raw):
        count += 1
        if "PUT" in opcode.name or "GET" in opcode.name:
            if not isinstance(arg, int) or not 0 <= arg <= count:
                raise NtkplastError(f"refused pickle opcode {opcode.name} {arg!r} (memo index "
                                    f"out of range after {count} opcodes); the file is corrupt "
                                    f"or crafted")


def load_cifar_pickle(path: Path) -> Any:
    """The object pickled in the CIFAR python batch ``path``, rebuilt by an unpickler that can
    build dicts, lists and numpy arrays and nothing else (its opcodes checked first)."""
    try:
        raw = safe_read.read_bytes(path, limit=safe_read.array_file_bytes())
        _check_pickle_opcodes(raw)
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except NtkplastError as e:
        raise NtkplastError(f"{path}: {e}") from e
    except Exception as e:  # any failure to decode a pickle means a corrupt file
        raise NtkplastError(f"{path}: cannot read it as a pickled CIFAR batch "
                            f"({type(e).__name__}: {e}); download it again") from e
    return obj
