"""Memory blocking over probe points and sharding of kernel rows over devices.

A kernel too large for one pass is assembled from b × b blocks run one after another
(:func:`blocked`), with b the largest block whose working memory fits
:data:`ntkplast.ntk.MEMORY_BUDGET_BYTES` (:func:`auto_block`); with several devices the rows
of the kernel are split into one block per device (:func:`sharded_rows`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntkplast import models, ntk
from ntkplast.errors import NtkplastError
from ntkplast.ntk import _checks, _layerwise
from ntkplast.ntk._types import LayerwiseKernel

Array = jax.Array


def _split(x: Array, b: int) -> Array:
    """Pad the batch axis with zeros to a multiple of ``b`` and reshape to ``(blocks, b, …)``."""
    pad = -x.shape[0] % b
    x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    return x.reshape((-1, b) + x.shape[1:])


def blocked(fn: Callable, x1: Array, x2: Array | None, b: int) -> Array:
    """Assemble ``fn(x1_block, x2_block)`` (shape ``(P, b, b, …)``) over all block pairs.

    ``lax.map`` runs the blocks one after another, so only one block's working memory is live.
    """
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    r1 = _split(x1, b)
    r2 = r1 if x2 is None else _split(x2, b)
    out = lax.map(lambda xi: lax.map(lambda xj: fn(xi, xj), r2), r1)  # (B1, B2, P, b, b, …)
    out = jnp.moveaxis(out, 2, 0)
    out = jnp.swapaxes(out, 2, 3)  # (P, B1, b, B2, b, …)
    shape = out.shape
    out = out.reshape((shape[0], shape[1] * shape[2], shape[3] * shape[4]) + shape[5:])
    return out[:, :n1, :n2]


def auto_block(model: models.Model, engine: str, params: Any, x1: Array, n: int, trace: bool,
               per_layer: bool) -> int | None:
    """Largest block size whose working memory fits :data:`ntkplast.ntk.MEMORY_BUDGET_BYTES`.

    Per block of b rows and b columns: layerwise holds the factors of both sides, 2·b floats
    times their size per probe point (2·b·K·Σ_l d_l for an MLP; the per-example weight
    gradients, K·k²·C_in·C_out per conv layer), generic 2·b·K·P of Jacobians; both hold the
    block's P_parts·b²·(K² if full) kernel entries. The budget is read from the package on
    every call, so that setting ``ntkplast.ntk.MEMORY_BUDGET_BYTES`` takes effect.
    """
    num_out = model.spec.num_outputs
    if engine == "layerwise":
        leaves, tree = jax.tree_util.tree_flatten(params)
        linear = 2 * _factor_floats(model, trace, tree, tuple(
            jax.ShapeDtypeStruct(np.shape(a), a.dtype) for a in leaves),
            jax.ShapeDtypeStruct((1,) + x1.shape[1:], x1.dtype))
    else:
        linear = 2 * num_out * _checks.num_params(params)
    quad = (len(params) if per_layer else 1) * (1 if trace else num_out ** 2) * 3
    budget = ntk.MEMORY_BUDGET_BYTES
    b = n
    while b > 1 and (b * linear + b * b * quad) * x1.dtype.itemsize > budget:
        b = (b + 1) // 2
    return None if b >= n else b


@functools.lru_cache(maxsize=32)
def _factor_floats(model: models.Model, trace: bool, tree: Any, leaves: tuple[Any, ...],
                   one: jax.ShapeDtypeStruct) -> int:
    """Floats of the layerwise factors of one probe point, by shape only (traced once per
    model and shapes, not on every call: an analysis asks once per checkpoint)."""
    params = jax.tree_util.tree_unflatten(tree, leaves)
    shapes = jax.eval_shape(lambda p, x: _layerwise.layer_factors(model, p, x, trace),
                            params, one)
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))


def devices(device_count: int | None) -> list[Any]:
    """The first ``device_count`` local jax devices (all of them when ``None``)."""
    devs = jax.local_devices()
    if device_count is None:
        return devs
    if not isinstance(device_count, int) or not 1 <= device_count <= len(devs):
        raise NtkplastError(f"device_count: expected 1 … {len(devs)} (the visible devices), "
                            f"got {device_count!r}")
    return devs[:device_count]


def sharded_rows(fn: Callable, params: models.Params, x1: Array, x2: Array | None,
                 devs: list[Any]) -> Array | LayerwiseKernel:
    """Θ(x1, x2) with the rows of x1 split into one block per device.

    Block d, Θ(x1[rows_d], x2), runs on device d (inputs committed there, so the jitted kernel
    runs there; the blocks are dispatched asynchronously and run concurrently); the blocks are
    concatenated on the first device. Same kernel as one device, up to the order of float sums
    inside each block, which does not change.
    """
    rows = np.array_split(np.arange(x1.shape[0]), len(devs))
    other = x1 if x2 is None else x2
    blocks = []
    for dev, r in zip(devs, rows):
        put = functools.partial(jax.device_put, device=dev)
        blocks.append(fn(jax.tree_util.tree_map(put, params), put(x1[r[0]:r[-1] + 1]),
                         put(other)))
    first = functools.partial(jax.device_put, device=devs[0])
    return jax.tree_util.tree_map(lambda *b: jnp.concatenate([first(a) for a in b]), *blocks)
