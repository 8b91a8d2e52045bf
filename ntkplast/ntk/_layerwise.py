r"""Layerwise-factorized empirical NTK of Dense/activation stacks (never forms the Jacobian).

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

The output-traced kernel needs only B_l = Σ_k C_{l,kk}. Two contractions over k happen before
any per-sample object is formed: B_L = K, and for the last hidden layer
B_{L-1}(x, x') = Σ_j φ'_j(x) φ'_j(x') c_j with c_j = Σ_k (m_W W_L)_{jk}², an N×d Gram instead
of an N×(K·d) one. Deeper layers use the Gram of the flattened N × (K·d_l) backward signals.

Symmetric kernels (x' = x) compute each N × N Gram F Fᵀ from the tiles on and above the diagonal
of a b × b tiling only, (b + 1)/(2b) of the products, and mirror the rest (:func:`gram`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models

Array = jax.Array


SYM_TILE_ROWS = 128
"""Smallest tile (rows) worth a separate product when a symmetric Gram is tiled."""
MAX_SYM_TILES = 4


def gram(fa: Array, fb: Array | None) -> Array:
    """F_a F_bᵀ; for ``fb=None`` the symmetric F_a F_aᵀ from its upper tiles only."""
    if fb is not None:
        return fa @ fb.T
    tiles = min(MAX_SYM_TILES, fa.shape[0] // SYM_TILE_ROWS)
    if tiles < 2:
        return fa @ fa.T
    bounds = np.linspace(0, fa.shape[0], tiles + 1).astype(int)
    blocks = [fa[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    upper = {(i, j): blocks[i] @ blocks[j].T for i in range(tiles) for j in range(i, tiles)}
    rows = [jnp.concatenate([upper[i, j] if j >= i else upper[j, i].T for j in range(tiles)],
                            axis=1) for i in range(tiles)]
    return jnp.concatenate(rows, axis=0)


def _forward(model: models.Model, params: models.Params, x: Array):
    """Per layer: input a_{l-1} and multipliers (m_W, m_b); per hidden layer φ'(z_l)."""
    a = x.reshape(x.shape[0], -1)
    inputs, mults, derivs = [], [], []
    for layer, p in zip(model.layers, params, strict=True):
        inputs.append(a)
        mults.append(models.multipliers(model, layer, p["W"]))
        z = models.layer_pre_activation(model, layer, p, a)
        if layer.activation is None:
            break
        a, d = jax.jvp(models.ACTIVATIONS[layer.activation], (z,), (jnp.ones_like(z),))
        derivs.append(d)
    return inputs, mults, derivs


def _backward(model: models.Model, params: models.Params, mults, derivs) -> list[Array]:
    """δ_l as N × K × d_l for the hidden layers l < L-1 (0-based; the readout's δ is e_k).

    Under jit, XLA drops the ones a traced kernel does not use (δ_{L-2}).
    """
    w_eff = [m[0] * p["W"] for m, p in zip(mults, params, strict=True)]
    deltas: list[Array] = []
    if len(model.layers) < 2:
        return deltas
    delta = w_eff[-1].T[None, :, :] * derivs[-1][:, None, :]  # δ_{L-2} = (m W_{L-1})ᵀ ⊙ φ'
    deltas.append(delta)
    for i in range(len(model.layers) - 3, -1, -1):
        delta = jnp.einsum("nkj,ij->nki", delta, w_eff[i + 1]) * derivs[i][:, None, :]
        deltas.append(delta)
    return deltas[::-1]


def _signals(model, params, x):
    inputs, mults, derivs = _forward(model, params, x)
    return inputs, mults, derivs, _backward(model, params, mults, derivs)


def layerwise_parts(model: models.Model, params: models.Params, xa: Array, xb: Array | None,
                    trace: bool, per_layer: bool) -> Array:
    """Per-layer kernels stacked as ``(L, Na, Nb[, K, K])`` (or the total as ``(1, …)``).

    ``xb=None`` means ``xb = xa``; the forward and backward passes then run once.
    """
    in_a, mults, der_a, del_a = _signals(model, params, xa)
    if xb is None:
        in_b, der_b, del_b = [None] * len(in_a), [None] * len(der_a), [None] * len(del_a)
    else:
        in_b, _, der_b, del_b = _signals(model, params, xb)
    n_a = xa.shape[0]
    last = len(model.layers) - 1
    num_out = params[-1]["W"].shape[-1]
    parts = []
    for i in range(last + 1):
        m_w, m_b = mults[i]
        act = (m_w ** 2) * gram(in_a[i], in_b[i])  # A_l
        if "b" in params[i]:
            act = act + m_b ** 2
        if i == last:  # δ_L = e_k: C_L = I_K, B_L = K.
            eye = jnp.eye(num_out, dtype=act.dtype)
            part = num_out * act if trace else act[:, :, None, None] * eye
        elif trace and i == last - 1:  # B_{L-1} = φ'(x) diag(c) φ'(x')ᵀ, c ≥ 0
            root_c = jnp.sqrt(jnp.sum((mults[-1][0] * params[-1]["W"]) ** 2, axis=1))
            fb = None if xb is None else der_b[i] * root_c
            part = act * gram(der_a[i] * root_c, fb)
        elif trace:
            fb = None if xb is None else del_b[i].reshape(del_b[i].shape[0], -1)
            part = act * gram(del_a[i].reshape(n_a, -1), fb)
        else:  # C_l from the (N·K) × (N'·K) Gram, rows (n, k); not tiled: the
            # N²K² output makes this step memory-bound, and tiles would add copies.
            fa = del_a[i].reshape(-1, del_a[i].shape[-1])
            fb = fa if xb is None else del_b[i].reshape(-1, del_b[i].shape[-1])
            c = (fa @ fb.T).reshape(n_a, num_out, -1, num_out).transpose(0, 2, 1, 3)
            part = act[:, :, None, None] * c
        parts.append(part)
    return jnp.stack(parts) if per_layer else sum(parts[1:], parts[0])[None]


def operator_factors(model: models.Model, params: models.Params, x: Array,
                     trace: bool) -> list[tuple[Array, Array, Array, Array]]:
    r"""Per layer (F, G, m_W², m_b²) with Θ_l = (m_W² F Fᵀ + m_b² 11ᵀ) ⊙ (backward Gram of G).

    F = a_{l-1}(X) (N × d_{l-1}). Traced: G is N × F_G with B_l = G Gᵀ (√K·1 for the readout,
    φ'·√c for the last hidden layer, the flattened δ_l below). Full: G = δ_l as N × K × d_l,
    with the readout's δ = e_k given as the K × K identity per sample. m_b² is 0 without bias.
    Precomputed once, these make every NTK-vector product two thin matmuls per layer.
    """
    inputs, mults, derivs, deltas = _signals(model, params, x)
    last = len(model.layers) - 1
    num_out = params[-1]["W"].shape[-1]
    n = x.shape[0]
    dtype = inputs[0].dtype
    out = []
    for i in range(last + 1):
        m_w, m_b = mults[i]
        scales = (jnp.asarray(m_w ** 2, dtype),
                  jnp.asarray(m_b ** 2 if "b" in params[i] else 0.0, dtype))
        if i == last:
            g = (jnp.full((n, 1), num_out ** 0.5, dtype) if trace
                 else jnp.broadcast_to(jnp.eye(num_out, dtype=dtype), (n, num_out, num_out)))
        elif trace and i == last - 1:
            g = derivs[i] * jnp.sqrt(jnp.sum((mults[-1][0] * params[-1]["W"]) ** 2, axis=1))
        elif trace:
            g = deltas[i].reshape(n, -1)
        else:
            g = deltas[i]
        out.append((inputs[i], g, *scales))
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
