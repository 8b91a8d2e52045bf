r"""Architecture-agnostic empirical NTK from jax's own transforms (vjp, jvp, vmap).

Jacobian contraction: per probe input, the Jacobian J(x) = ∂f(x)/∂θ ∈ R^{K×P} by reverse mode
(K vector–Jacobian products), then Θ(x, x') = J(x) J(x')ᵀ summed leaf by leaf, so the parts of
each layer's parameters come out separately. Memory: the Jacobians of one block of b inputs,
b·K·P floats (the caller blocks over probe points to bound it).

NTK-vector products (matrix-free): Θv = J(Jᵀv), one vjp and one jvp of f over the probe set
(Novak et al. 2022, "Fast finite width neural tangent kernel", §3.2).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ntkplast import models
from ntkplast.base import ApplyModel

Array = jax.Array


def _jacobians(model: ApplyModel, params: models.Params, x: Array) -> Any:
    """Per-example Jacobian pytree, each leaf ``N × K × leaf.shape``."""
    def f_one(p, xi):
        return model.apply(p, xi[None])[0]
    return jax.vmap(jax.jacrev(f_one), in_axes=(None, 0))(params, x)


def _contract(ja: Array, jb: Array, trace: bool) -> Array:
    ja = ja.reshape(ja.shape[0], ja.shape[1], -1)
    jb = jb.reshape(jb.shape[0], jb.shape[1], -1)
    if trace:
        return jnp.einsum("nkp,mkp->nm", ja, jb)
    return jnp.einsum("nkp,mjp->nmkj", ja, jb)


def generic_parts(model: ApplyModel, params: models.Params, xa: Array, xb: Array | None,
                  trace: bool, per_layer: bool) -> Array:
    """Per-layer kernels stacked as ``(L, Na, Nb[, K, K])`` (or the total as ``(1, …)``).

    The generic engine itself, for any ``model`` with ``apply(params, x) -> N × K`` whose
    ``params`` is a sequence of per-layer pytrees (the parts follow that sequence). An engine
    core: no input checks and no jit (callers compile it, as :func:`ntkplast.ntk.kernel_fn`
    and :func:`ntkplast.adapters.function.empirical_ntk` do).
    """
    jac_a = _jacobians(model, params, xa)
    jac_b = jac_a if xb is None else _jacobians(model, params, xb)
    parts = []
    for la, lb in zip(jac_a, jac_b, strict=True):
        leaves = zip(jax.tree_util.tree_leaves(la), jax.tree_util.tree_leaves(lb),
                     strict=True)
        terms = [_contract(a, b, trace) for a, b in leaves]
        parts.append(sum(terms[1:], terms[0]))
    if per_layer:
        return jnp.stack(parts)
    return sum(parts[1:], parts[0])[None]


def matvec(model: ApplyModel, params: models.Params, x: Array, v: Array,
           trace: bool) -> Array:
    r"""Θv without forming Θ.

    Full kernel (``v``: N × K): Θv = J(Jᵀv), one vjp and one jvp. Output-traced kernel
    (``v``: N): (Θv)_n = Σ_k [J_k (J_kᵀ v)]_n, the full product applied to v ⊗ e_k for each of the
    K outputs (vmapped), keeping output k.
    """
    def f(p):
        return model.apply(p, x)

    def full(u: Array) -> Array:
        _, pullback = jax.vjp(f, params)
        (g,) = pullback(u)
        return jax.jvp(f, (params,), (g,))[1]

    if not trace:
        return full(v)
    num_out = params[-1]["W"].shape[-1]
    eye = jnp.eye(num_out, dtype=v.dtype)
    cols = jax.vmap(lambda e: full(v[:, None] * e[None, :]) @ e)(eye)
    return cols.sum(axis=0)
