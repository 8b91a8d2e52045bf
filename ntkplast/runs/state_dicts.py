"""Reading state dicts from files without running their code.

``.safetensors`` through safetensors' numpy API; ``.pt``/``.pth``/``.bin``/``.ckpt`` through
``torch.load(weights_only=True)`` (a file that carries code is refused, the code never runs;
common wrappers such as ``{"state_dict": …}`` are unwrapped); ``.npz`` of plain arrays through
the guarded reader of :mod:`ntkplast.io.files`. Every file is opened by
:func:`ntkplast.io.safe_read.open_regular`: a FIFO, a device (a link to ``/dev/zero``), a socket
or a file larger than :func:`ntkplast.io.safe_read.array_file_bytes` (this machine's physical
memory) is refused with :class:`~ntkplast.errors.NtkplastError` before a byte is parsed.
Used by :mod:`ntkplast.runs.interop` and :mod:`ntkplast.runs.jax_import`.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read
from ntkplast.io.files import load_arrays

__all__ = ["SUFFIXES", "TORCH_SUFFIXES", "load_safetensors", "load_state_dict", "load_torch"]

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SUFFIXES = (".safetensors", ".npz") + TORCH_SUFFIXES
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def _reader(path: str | os.PathLike, module: str, missing: str) -> Any:
    """The optional dependency ``module`` that reads ``path``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NtkplastError(f"{path}: {missing}") from None


def _missing(path: str | os.PathLike) -> NtkplastError:
    return NtkplastError(f"{path} does not exist (a broken link?); give an existing checkpoint "
                         f"file")


def _open(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened if it is a regular file within the bound (module docstring)."""
    try:
        return safe_read.open_regular(path, limit=safe_read.array_file_bytes())
    except FileNotFoundError:
        raise _missing(path) from None


def _read(path: str | os.PathLike) -> bytes:
    """All bytes of ``path`` if it is a regular file within the bound (module docstring)."""
    try:
        return safe_read.read_bytes(path, limit=safe_read.array_file_bytes())
    except FileNotFoundError:
        raise _missing(path) from None


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file as numpy arrays (no torch, no pickle).

    The file must be a regular file of at most this machine's physical memory (module
    docstring); it is read whole, then parsed."""
    data = _read(path)  # a FIFO or a device is refused before anything else
    st = _reader(path, "safetensors.numpy", "reading .safetensors needs the safetensors package; "
                 "pip install safetensors (or: pip install 'ntkplast[interop]')")
    try:
        return dict(st.load(data))
    except Exception as e:  # safetensors raises its own SafetensorError, TypeError for bf16, ...
        raise NtkplastError(f"{path} is not a readable safetensors file of numpy-compatible "
                            f"tensors ({type(e).__name__}: {e}); re-save it with float32 tensors"
                            ) from None


def load_torch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (``.pt``/``.pth``) with ``torch.load(weights_only=True)``.

    Only tensors and plain containers are unpickled, so a file that carries code is refused and
    its code never runs. A checkpoint dict that wraps the state dict under ``"state_dict"``,
    ``"model_state_dict"``, ``"model"``, ``"net"`` or ``"module"`` is unwrapped. The file must
    be a regular file of at most this machine's physical memory (module docstring).
    """
    with _open(path) as f:  # a FIFO or a device is refused before anything else
        torch = _reader(path, "torch", "reading PyTorch files needs torch (pip install torch); "
                        "or save the state dict with safetensors, which needs no torch")
        return _torch_state_dict(torch, f, path)


def _torch_state_dict(torch: Any, f: BinaryIO, path: str | os.PathLike
                      ) -> dict[str, np.ndarray]:
    """:func:`load_torch` once ``f`` is open and torch imported."""
    try:
        with warnings.catch_warnings():  # odd protocol byte: refused below
            warnings.filterwarnings("ignore", message="Detected pickle protocol",
                                    category=UserWarning)
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for unsafe payloads, RuntimeError, ...
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        unsafe = re.search(r"Unsupported (global|operand)[^.\n]*", text)
        first = unsafe.group(0) if unsafe else " ".join(text.split())[:200]
        raise NtkplastError(f"{path}: refused or unreadable as a weights-only PyTorch state dict "
                            f"({type(e).__name__}: {first}); save model.state_dict() (tensors "
                            f"only), e.g. with safetensors") from None

    def is_state_dict(d: Any) -> bool:
        return isinstance(d, Mapping) and bool(d) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())

    if not is_state_dict(obj) and isinstance(obj, Mapping):
        inner = [obj[k] for k in _WRAPPER_KEYS if is_state_dict(obj.get(k))]
        obj = inner[0] if inner else obj
    if not is_state_dict(obj):
        what = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise NtkplastError(f"{path}: expected a state dict (names → tensors), found {what}; "
                            f"save model.state_dict()")
    out = {}
    for k, v in obj.items():
        v = v.detach().cpu()
        if v.dtype in (torch.bfloat16, torch.float16):
            v = v.float()
        out[k] = v.numpy()
    return out


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a state dict from ``.safetensors``, ``.npz`` (plain arrays) or a PyTorch file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".safetensors":
        return load_safetensors(path)
    if suffix == ".npz":
        return load_arrays(path)
    if suffix in TORCH_SUFFIXES:
        return load_torch(path)
    raise NtkplastError(f"{path}: unknown checkpoint type {suffix!r}; use one of "
                        f"{list(SUFFIXES)}")
