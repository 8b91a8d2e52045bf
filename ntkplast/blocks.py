"""The block functions that are not a weight layer: GroupSort, LayerNorm, the Cayley map.

Pure functions on arrays (units on the last axis); :mod:`ntkplast.models` composes them into
hidden blocks and documents where each sits.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["LN_EPS", "ONE_HOT_GROUP_MAX", "cayley_stiefel", "group_sort", "group_sort_places",
           "layer_norm"]

Array = jax.Array

LN_EPS = 1e-5
"""ε of :func:`layer_norm` (PyTorch's ``nn.LayerNorm`` default)."""


def cayley_stiefel(w: Array) -> Array:
    """C(W), the semi-orthogonal Cayley image of a free ``n × p`` parameter (module docstring).

    Tall W (n ≥ p): S = [[T − Tᵀ, −Bᵀ], [B, 0]] from W's top p × p block T and the rest B, and
    C(W) = (I + S)⁻¹(I − S)E, the first p columns of the orthogonal Cayley transform of S; wide
    W: C(Wᵀ)ᵀ. Smooth in W, exactly orthonormal columns (rows) up to the solve's rounding.
    """
    if w.shape[0] < w.shape[1]:
        return cayley_stiefel(w.T).T
    n, p = w.shape
    top, rest = w[:p], w[p:]
    skew = jnp.block([[top - top.T, -rest.T], [rest, jnp.zeros((n - p, n - p), w.dtype)]])
    eye = jnp.eye(n, dtype=w.dtype)
    return jnp.linalg.solve(eye + skew, (eye - skew)[:, :p])



ONE_HOT_GROUP_MAX = 8
"""Largest GroupSort group whose derivative is taken by one-hot selection (O(g²) per group)
rather than through the sort."""


def _grouped(a: Array, group_size: int) -> Array:
    """``a`` with its last axis split into groups of ``group_size``: ``(…, d/g, g)``."""
    return a.reshape(a.shape[:-1] + (a.shape[-1] // group_size, group_size))


def _sorted_groups(z: Array, group_size: int) -> Array:
    return -jnp.sort(-_grouped(z, group_size), axis=-1).reshape(z.shape)  # stable sort


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _group_sort_one_hot(z: Array, group_size: int) -> Array:
    return _sorted_groups(z, group_size)


@_group_sort_one_hot.defjvp
def _group_sort_jvp(group_size: int, primals: tuple[Array], tangents: tuple[Array]):
    r"""ṫ_r = Σ_i [rank_i = r] t_i with rank_i = #{j : z_j > z_i} + #{j < i : z_j = z_i} the
    place unit i takes in its sorted group (the stable sort's): elementwise selects, whose
    transpose is again selects, where the sort's own derivative gathers and scatters."""
    (z,), (t,) = primals, tangents
    tg = _grouped(t, group_size)
    one_hot = group_sort_places(z, group_size)[..., :, None] == jnp.arange(group_size)
    t_sorted = jnp.sum(jnp.where(one_hot, tg[..., :, None], 0), axis=-2)  # one_hot[..., i, r]
    return _group_sort_one_hot(z, group_size), t_sorted.reshape(z.shape)


def group_sort_places(z: Array, group_size: int) -> Array:
    """rank_i = #{j : z_j > z_i} + #{j < i : z_j = z_i} over i's group: the place unit i takes
    in :func:`group_sort`'s output (the stable sort's), as ``z.shape[:-1] + (groups, g)``."""
    zg = _grouped(z, group_size)
    place = jnp.arange(group_size)
    before = (zg[..., None, :] > zg[..., :, None]) | (
        (zg[..., None, :] == zg[..., :, None]) & (place[None, :] < place[:, None]))
    return jnp.sum(before, axis=-1)


def group_sort(z: Array, group_size: int) -> Array:
    r"""GroupSort (Anil, Lucas & Grosse 2019): each group of ``group_size`` consecutive units of
    the last axis sorted in descending order; group size 2 is MaxMin, (max, min) per pair.

    Piecewise a permutation of z, so its Jacobian is a permutation matrix P with
    P_{r,i} = [unit i takes place r], ties kept in their order (a stable sort). For groups of
    at most :data:`ONE_HOT_GROUP_MAX` the derivative is that P applied by one-hot selection
    (``_group_sort_jvp``); larger groups differentiate through the sort.
    """
    if group_size <= ONE_HOT_GROUP_MAX:
        return _group_sort_one_hot(z, group_size)
    return _sorted_groups(z, group_size)



def layer_norm(z: Array, p: Mapping[str, Array]) -> Array:
    """LN(z) = γ ⊙ (z − μ)/√(s² + ε) + β over the last axis (Ba, Kiros & Hinton 2016).

    μ and s² are the mean and (population) variance of z's last axis, ε = :data:`LN_EPS`;
    γ = ``p["ln_scale"]`` and β = ``p["ln_bias"]`` when the layer has them (affine norm).
    The Jacobian of the normalisation n̂ = (z − μ)/√(s² + ε) is ((I − 11ᵀ/d) − n̂n̂ᵀ/d)/√(s² + ε):
    it annihilates 1 exactly (rank d − 1) and shrinks the direction n̂ by ε/(s² + ε), which
    vanishes as ε → 0.
    """
    mu = jnp.mean(z, axis=-1, keepdims=True)
    var = jnp.mean((z - mu) ** 2, axis=-1, keepdims=True)
    out = (z - mu) * lax.rsqrt(var + LN_EPS)
    if "ln_scale" in p:
        out = out * p["ln_scale"] + p["ln_bias"]
    return out
