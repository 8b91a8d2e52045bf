r"""Structured empirical NTK of Dense and Conv stacks (never forms the whole Jacobian).

For a Dense layer l with z_l = m_W a_{l-1} W_l + m_b b_l, the parameter gradients are
∂f_k/∂W_l = m_W a_{l-1} ⊗ δ_{l,k} and ∂f_k/∂b_l = m_b δ_{l,k} with δ_{l,k} = ∂f_k/∂z_l, so the
layer's share Θ_l of the NTK (Jacot, Gabriel & Hongler 2018) factorizes into an activation Gram
and a backward-signal Gram — the Dense-layer structure that neural-tangents' "structured
derivatives" exploits (Novak, Sohl-Dickstein & Schoenholz 2022, "Fast finite width neural
tangent kernel", ICML):

    Θ_l(x, x')_{kk'} = A_l(x, x') · C_l(x, x')_{kk'},
    A_l(x, x') = m_W² a_{l-1}(x)·a_{l-1}(x') + m_b²          (m_b² only with biases),
    C_l(x, x')_{kk'} = δ_{l,k}(x)·δ_{l,k'}(x'),
    δ_{L,k} = e_k,   δ_{l-1,k} = (δ_{l,k} m_W W_lᵀ) ⊙ φ'(z_{l-1}).

The factors (a_{l-1}, δ_l, m_W², m_b² per parameter group, including Conv kernels and LayerNorm
scales) come from :mod:`ntkplast.ntk._factors`; this module assembles kernels from them.

Symmetric kernels (x' = x) are computed on the tiles on and above the diagonal of a T × T
tiling of the probe set only, (T + 1)/(2T) of the Gram products, and the rest mirrored
(:mod:`ntkplast.ntk._tiles`: square tiles written in place, or row strips against the rest
where the factors outweigh the kernel). Each tile forms Σ_l A_l ⊙ C_l in one fused pass, in
the output's final (N, N, K, K) layout.

Matrix-free: :func:`operator_factors` and :func:`operator_matvec` / :func:`operator_diagonal`
give Θv and diag Θ from the same factors without forming the kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ntkplast import models
from ntkplast.ntk import _tiles
from ntkplast.ntk._factors import Factor, Pairing, layer_factors

# positions_cheaper (like Pairing and layer_factors) is still read as ``_layerwise.X`` by the
# benchmarks; patch it in ._factors, where the conv factors look it up.
from ntkplast.ntk._factors import positions_cheaper as positions_cheaper

Array = jax.Array


def _rows(a: Array | None, start: Array | int, size: int) -> Array | None:
    """Rows start … start+size−1 of a factor array (``None`` stays ``None``)."""
    return None if a is None else lax.dynamic_slice_in_dim(a, start, size)


def _factor_block(fa: Factor, fb: Factor, trace: bool, num_out: int) -> Array:
    """One factor's kernel between side a's and side b's items: ``na × nb`` (traced) or
    ``na × nb × K × K`` (full; the (na·K) × (nb·K) Gram of δ reordered in the same fused
    pass that scales it by A_l)."""
    if fa.f is not None and fa.f.ndim == 3:
        return _positions_block(fa, fb, trace)
    act = fa.s_b if fa.f is None else fa.s_w * (fa.f @ fb.f.T) + fa.s_b  # A_l
    if fa.g is None:  # δ_L = e_k: C_L = I_K, B_L = K.
        eye = jnp.eye(num_out, dtype=act.dtype)
        return num_out * act if trace else act[:, :, None, None] * eye
    if trace:
        return act * (fa.g @ fb.g.T)
    c = fa.g.reshape(-1, fa.g.shape[-1]) @ fb.g.reshape(-1, fb.g.shape[-1]).T  # rows (n, k)
    c = c.reshape(fa.g.shape[0], num_out, fb.g.shape[0], num_out).transpose(0, 2, 1, 3)
    return c * (act[:, :, None, None] if act.ndim else act)


def _positions_block(fa: Factor, fb: Factor, trace: bool) -> Array:
    r"""A conv factor over (example, position) items: the Dense-layer product A ⊙ C with
    A(x s, x' t) = m_W² P_s(x)·P_t(x') + m_b² and C(x s, x' t)_{kk'} = δ_{s,k}(x)·δ_{t,k'}(x'),
    summed over the position pairs (s, t)."""
    act = fa.s_w * jnp.einsum("isd,jtd->isjt", fa.f, fb.f) + fa.s_b
    if trace:
        return jnp.einsum("isjt,isjt->ij", act, jnp.einsum("isf,jtf->isjt", fa.g, fb.g))
    return jnp.einsum("isjt,iskjtl->ijkl", act, jnp.einsum("iskc,jtlc->iskjtl", fa.g, fb.g))


def layerwise_parts(model: models.Model, params: models.Params, xa: Array, xb: Array | None,
                    trace: bool, per_layer: bool) -> Array:
    """Per-layer kernels stacked as ``(L, Na, Nb[, K, K])`` (or the total as ``(1, …)``).

    ``xb=None`` means ``xb = xa``; the forward and backward passes then run once, and the
    kernel is assembled from the tiles on and above its diagonal (:mod:`ntkplast.ntk._tiles`).
    Each tile sums its layers' A_l ⊙ C_l in one pass, so no per-layer N²K² array is formed
    unless ``per_layer`` asks for it.
    """
    num_out = params[-1]["W"].shape[-1]
    n_a = xa.shape[0]
    if xb is None:
        b = _tiles.tile_size(n_a, 1 if trace else num_out)
        pairing = Pairing(n_a, n_a, b, b)
    else:
        pairing = Pairing(n_a, xb.shape[0], n_a, xb.shape[0])
    fac_a = layer_factors(model, params, xa, trace, pairing)
    fac_b = fac_a if xb is None else layer_factors(model, params, xb, trace, pairing)

    def kernel(fac_i: list[list[Factor]], fac_j: list[list[Factor]]) -> Array:
        parts = []
        for groups_a, groups_b in zip(fac_i, fac_j, strict=True):
            terms = [_factor_block(fa, fb, trace, num_out)
                     for fa, fb in zip(groups_a, groups_b, strict=True)]
            parts.append(sum(terms[1:], terms[0]))
        return jnp.stack(parts) if per_layer else sum(parts[1:], parts[0])[None]

    if xb is not None:
        return kernel(fac_a, fac_b)

    def block(i0: Array | int, j0: Array | int, r: int, c: int) -> Array:
        def rows(start, size):
            return [[f._replace(f=_rows(f.f, start, size), g=_rows(f.g, start, size))
                     for f in groups] for groups in fac_a]
        return kernel(rows(i0, r), rows(j0, c))

    factors = [f for groups in fac_a for f in groups]
    operands = sum(a.size for f in factors for a in (f.f, f.g) if a is not None)
    output = n_a ** 2 * (1 if trace else num_out ** 2) * (len(fac_a) if per_layer else 1)
    over_positions = any(f.f is not None and f.f.ndim == 3 for f in factors)  # sized b × b
    strips = _tiles.strips_cheaper(operands, output) and not over_positions
    mirror = (lambda b: jnp.swapaxes(b, 1, 2)) if trace else (
        lambda b: b.transpose(0, 2, 1, 4, 3))
    return _tiles.symmetric_assemble(block, n_a, 1 if trace else num_out, 1, mirror, strips)


def operator_factors(model: models.Model, params: models.Params, x: Array,
                     trace: bool) -> list[tuple[Array, Array, Array, Array]]:
    r"""Every (F, G, m_W², m_b²) with Θ = Σ (m_W² F Fᵀ + m_b² 11ᵀ) ⊙ (backward Gram of G).

    :func:`layer_factors` flattened, with the readout's δ = e_k made explicit (√K·1 traced, the
    K × K identity per sample full) and a norm parameter's missing F as a zero column.
    Precomputed once, these make every NTK-vector product two thin matmuls per factor.
    """
    num_out = params[-1]["W"].shape[-1]
    n = x.shape[0]
    out = []
    for groups in layer_factors(model, params, x, trace):
        for fac in groups:
            f, g = fac.f, fac.g
            dtype = fac.s_w.dtype
            if g is None:
                g = (jnp.full((n, 1), num_out ** 0.5, dtype) if trace
                     else jnp.broadcast_to(jnp.eye(num_out, dtype=dtype), (n, num_out, num_out)))
            if f is None:
                f = jnp.zeros((n, 1), dtype)
            out.append((f, g, fac.s_w, fac.s_b))
    return out


def operator_matvec(factors: list[tuple[Array, Array, Array, Array]], v: Array) -> Array:
    r"""Θv from :func:`operator_factors`, never forming an N × N matrix.

    Traced (v: N): [(F Fᵀ) ⊙ (G Gᵀ)] v has entries f_nᵀ M g_n with M = Fᵀ diag(v) G, and
    (11ᵀ ⊙ G Gᵀ) v = G (Gᵀ v). Full (v: N × K): with u_m = Σ_k' δ_{m,k'} v_{m,k'},
    (Θ_l v)_{n,k} = δ_{n,k} · (m_W² F Fᵀ U + m_b² 1 1ᵀ U)_n. Cost per product: about
    4·N·d_{l-1}·F_G (traced) or 2·N·K·d_l + 4·N·d_{l-1}·d_l (full) FLOPs per layer.
    """
    total = jnp.zeros_like(v)
    for f, g, s_w, s_b in factors:
        if v.ndim == 1:  # Mᵀ = (diag(v) G)ᵀ F; entries Σ_j (G Mᵀ)_{nj} F_{nj}
            m_t = (v[:, None] * g).T @ f
            term = s_w * jnp.sum((g @ m_t) * f, axis=1) + s_b * (g @ (v @ g))
        else:
            u = jnp.einsum("nkd,nk->nd", g, v)
            w = s_w * (f @ (u.T @ f).T) + s_b * jnp.sum(u, axis=0, keepdims=True)
            term = jnp.einsum("nkd,nd->nk", g, w)
        total = total + term
    return total


def operator_diagonal(factors: list[tuple[Array, Array, Array, Array]]) -> Array:
    """diag Θ of the traced kernel, Σ_l (m_W²‖a_{l-1}(x_n)‖² + m_b²)·‖g_l(x_n)‖², O(N·K·Σd)."""
    return sum((s_w * jnp.sum(f * f, axis=1) + s_b) * jnp.sum(g * g, axis=1)
               for f, g, s_w, s_b in factors)
