"""Symmetric kernels from the blocks on and above their diagonal.

A kernel Θ(X, X) over n items is symmetric, so only the blocks (i, j), i ≤ j, of a T × T
partition of the items need their products — (T + 1)/(2T) of the whole — and the blocks below
the diagonal are their mirrors. The structured engine (:mod:`ntkplast.ntk._layerwise`) hands
a ``block`` function; this module chooses the partition (:func:`tile_size`) and the assembly
(square tiles in place, or row strips, :func:`strips_cheaper`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array


TRACED_TILE_ROWS = 256
"""Examples per tile when a symmetric output-traced kernel is tiled (also the fewest Gram rows
a tile may have)."""
FULL_TILE_ROWS = 1024
"""Rows (example × output pairs) of the backward-signal Gram per tile when a symmetric full
kernel is tiled: 1024 // K examples, or fewer to make four tiles. (Sizes chosen by
``benchmarks/tile_sweep.py`` on 2 CPU cores: benchmarks/RESULTS.md.)"""
TILE_BACKENDS = ("cpu",)
"""jax backends whose symmetric kernels are tiled; on the others one large product beats a
loop of small ones that saves half the FLOPs (``benchmarks/tile_sweep.py`` on a GPU)."""


def tile_size(n: int, rows_per_item: int) -> int:
    """Items per tile of a symmetric kernel over n items with ``rows_per_item`` Gram rows each
    (1: traced, K: full): about :data:`TRACED_TILE_ROWS` or :data:`FULL_TILE_ROWS` rows, at
    most a quarter of n but never under :data:`TRACED_TILE_ROWS` rows, evened out over the
    tiles; all n when that leaves fewer than two tiles or the backend is not one of
    :data:`TILE_BACKENDS`."""
    if jax.default_backend() not in TILE_BACKENDS:
        return n
    rows = TRACED_TILE_ROWS if rows_per_item == 1 else FULL_TILE_ROWS
    b = max(-(-TRACED_TILE_ROWS // rows_per_item), min(rows // rows_per_item, -(-n // 4)))
    return n if 2 * b > n else -(-n // -(-n // b))  # balanced: T = ⌈n/b⌉ tiles of ⌈n/T⌉


def strips_cheaper(operand_floats: int, output_floats: int) -> bool:
    """Whether a tiled symmetric kernel is cheaper as strips than as square tiles: when its
    factors hold more floats than the kernel (per-example conv gradients, wide backward
    signals), each tile pair's copies of factor rows cost more than the strips' one pass of
    mirror-and-concatenate over the output. Measured on 2 CPU cores (benchmarks/RESULTS.md):
    CIFAR-shaped CNN full kernel 0.459 → 0.433 s, MLP traced N = 2,000 0.44 → 0.38 s; the
    MLP full kernel (output-heavy) is faster as tiles."""
    return operand_floats > output_floats


def symmetric_assemble(block: Callable[[Array | int, Array | int, int, int], Array], n: int,
                       rows_per_item: int, axis: int, mirror: Callable[[Array], Array],
                       strips: bool = False) -> Array:
    """A symmetric kernel over n items from the blocks on and above the diagonal of a tiling.

    ``block(i0, j0, r, c)`` is the kernel between items i0 … i0+r−1 and j0 … j0+c−1, with
    the two item axes at ``axis`` and ``axis + 1``; ``mirror`` turns block (i, j) into block
    (j, i). With T = ⌈n/b⌉ for b = :func:`tile_size` items, either

    - square tiles (``strips=False``): T tiles of b items (the last one ends at n and
      overlaps its neighbour), a ``lax.fori_loop`` over the T(T + 1)/2 pairs i ≤ j writing
      each block and its mirror into one output in place (dynamic starts; one compiled loop
      body whatever T is); or
    - strips (``strips=True``): T row strips of ≈ n/T items, each against every item from
      its first one to n (T larger products, fewer copies of factor rows), the blocks below
      the diagonal mirrored from them and concatenated (static starts).

    Either way the products cost about (T + 1)/(2T) of the whole; :func:`strips_cheaper`
    chooses.
    """
    b = tile_size(n, rows_per_item)
    if b == n:
        return block(0, 0, n, n)
    tiles = -(-n // b)
    if strips:
        edges = [round(i * n / tiles) for i in range(tiles + 1)]
        spans = list(zip(edges[:-1], edges[1:], strict=True))
        strip = [block(lo, lo, hi - lo, n - lo) for lo, hi in spans]
        rows = [jnp.concatenate([mirror(lax.slice_in_dim(strip[j], lo - edges[j], hi - edges[j],
                                                         axis=axis + 1)) for j in range(i)]
                                + [strip[i]], axis=axis + 1)
                for i, (lo, hi) in enumerate(spans)]
        return jnp.concatenate(rows, axis=axis)
    starts = np.minimum(np.arange(tiles) * b, n - b)
    pairs = jnp.asarray([(starts[i], starts[j]) for i in range(tiles) for j in range(i, tiles)],
                        dtype=jnp.int32)
    shape = jax.eval_shape(lambda: block(0, 0, b, b))
    out = jnp.zeros(shape.shape[:axis] + (n, n) + shape.shape[axis + 2:], shape.dtype)
    zero = jnp.zeros((), jnp.int32)

    def at(i0: Array, j0: Array) -> tuple[Array, ...]:
        return (zero,) * axis + (i0, j0) + (zero,) * (out.ndim - axis - 2)

    def body(p, out):
        i0, j0 = pairs[p, 0], pairs[p, 1]
        blk = block(i0, j0, b, b)
        out = lax.dynamic_update_slice(out, blk, at(i0, j0))
        return lax.dynamic_update_slice(out, mirror(blk), at(j0, i0))
    return lax.fori_loop(0, len(pairs), body, out)
