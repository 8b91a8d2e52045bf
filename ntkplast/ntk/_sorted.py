r"""The output-traced NTK's last GroupSort layer in closed form (used by :mod:`._factors`).

A GroupSort block (Anil, Lucas & Grosse 2019) moves unit i of each group to the place rank_i it
takes in the sorted group, so the backward signal it receives from a Dense readout is a row of
the readout's weights chosen by rank_i, and the layer's backward Gram summed over the K outputs
is a Gram of d·g columns instead of K·d (:func:`sorted_signals`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntkplast import blocks, models

Array = jax.Array


def sorts_into_readout(model: models.Model) -> bool:
    """Whether the last hidden block is a plain Dense GroupSort (no norm, skip, pool or
    constraint) read by a plain readout, with groups smaller than the number of outputs."""
    if len(model.layers) < 2:
        return False
    block, readout = model.layers[-2:]
    return (block.kind == "dense" and block.activation in models.GROUP_ACTIVATIONS
            and not (block.has_norm or block.skip or block.pool or block.constrained)
            and not (readout.has_norm or readout.constrained or readout.flatten)
            and block.group_size <= blocks.ONE_HOT_GROUP_MAX
            and block.group_size < model.spec.num_outputs)


def sorted_signals(z: Array, w_eff: Array, group_size: int) -> Array:
    r"""N × (d·g) features F with F Fᵀ = B_{L-1} for a GroupSort block read by the readout.

    GroupSort moves unit i of a group starting at g_0 to place rank_i
    (:func:`ntkplast.blocks.group_sort_places`), so δ_{L-1,k}(x)_i = (m_W W_L)_{g_0 + rank_i, k}
    and B_{L-1}(x, x') = Σ_k δ_k(x)·δ_k(x') = Σ_i M_g[rank_i(x), rank_i(x')] with
    M_g = W_g W_gᵀ the g × g block of (m_W W_L)(m_W W_L)ᵀ on the group. With M_g = R_g R_gᵀ,
    R_g = V Λ^½ from its eigendecomposition M_g = V Λ Vᵀ, unit i contributes the row
    R_g[rank_i(x)]: d·g columns instead of the K·d of the backward signals.
    """
    n, d = z.shape
    groups = d // group_size
    w_g = w_eff.reshape(groups, group_size, -1)
    lam, vec = jnp.linalg.eigh(w_g @ jnp.swapaxes(w_g, 1, 2))
    root = vec * jnp.sqrt(jnp.maximum(lam, 0.0))[:, None, :]  # R_g R_gᵀ = M_g
    one_hot = (blocks.group_sort_places(z, group_size)[..., None]
               == jnp.arange(group_size)).astype(z.dtype)  # n × groups × i × rank
    return jnp.einsum("ngir,grj->ngij", one_hot, root).reshape(n, d * group_size)
