"""The kernel type the NTK entry points return with ``per_layer=True``."""

from __future__ import annotations

from typing import NamedTuple

import jax

Array = jax.Array


class LayerwiseKernel(NamedTuple):
    """A kernel with its per-layer parts: ``total = sum(parts)``.

    ``parts[l]`` is the NTK with respect to weight layer l's parameters (W and b), with the
    same shape as ``total``. Unpacks as ``total, parts = ...``.
    """

    total: Array
    parts: tuple[Array, ...]
