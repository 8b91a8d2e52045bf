r"""The factors of the structured empirical NTK, one forward and one backward pass per probe set.

Per weight layer, each parameter group's :class:`Factor`: the Dense input a_{l-1} (F), the
backward signals δ_l (G) and the scales m_W², m_b², of which :mod:`ntkplast.ntk._layerwise`
(the factorization Θ_l = A_l · C_l, its module docstring) assembles kernels. Also the choice of
a conv layer's route (:class:`Pairing`, :func:`positions_cheaper`).

The output-traced kernel needs only B_l = Σ_k C_{l,kk}. Two contractions over k happen before
any per-sample object is formed: B_L = K, and for the last hidden layer
B_{L-1}(x, x') = Σ_j φ'_j(x) φ'_j(x') c_j with c_j = Σ_k (m_W W_L)_{jk}², an N×d Gram instead
of an N×(K·d) one. Deeper layers use the Gram of the flattened N × (K·d_l) backward signals.

Blocks that are not elementwise (GroupSort/MaxMin, LayerNorm, residual skips; see
:mod:`ntkplast.models`) keep the factorization — every weight matrix still enters through one
Dense map — but the backward recursion runs through each block's vector–Jacobian product
instead of a diagonal φ': with u_l = block_l(z_l, u_{l-1}) and v_l the Dense input,

    δ_l = (∂u_l/∂z_l)ᵀ g_l,   g_{l-1} = (∂v_l/∂u_{l-1})ᵀ (δ_l m_W W_lᵀ) + [skip] g_l,

g_l = ∂f_k/∂u_l, batched over the K outputs by vmap (GroupSort's vjp permutes, LayerNorm's
projects, a 2×2 average pool spreads each cotangent over its window). A Conv layer's W and b
enter either as per-example gradient factors (:func:`_conv_factors`: F = 1 and G the gradients
themselves, so Θ_l = G Gᵀ) or, where that costs fewer FLOPs (:func:`positions_cheaper`: small
feature maps), as the same factorization over (example, position) items summed over position
pairs (:func:`ntkplast.ntk._layerwise._positions_block`). A LayerNorm's γ and β add
Θ = Σ_j ∂f_k/∂γ_j(x) ∂f_k'/∂γ_j(x') (and the same for β) to their layer's part: the
per-example gradients are the vjp's parameter cotangents, taken with respect to γ, β
broadcast over the batch (and over positions in a conv block), and enter as factors with
A = 1. The traced shortcut for the last hidden layer has a permutation form for a plain
GroupSort block read by the readout (:func:`ntkplast.ntk._sorted.sorted_signals`: d·g
columns, used when the group size g < K); other blocks there use the flattened N × (K·d)
signals too.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntkplast import models
from ntkplast.ntk import _sorted

Array = jax.Array


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
        a, d = jax.jvp(models.activation_fn(layer), (z,), (jnp.ones_like(z),))
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


class Factor(NamedTuple):
    r"""One parameter group's kernel Θ = (s_w F_a F_bᵀ + s_b 11ᵀ) ⊙ (backward Gram of G).

    ``f``: N × d_{l-1}, the Dense input a_{l-1}(X) (``None`` for a norm's γ or β: A = s_b).
    ``g``: traced, N × F_G with B = G Gᵀ; full, δ as N × K × d; ``None`` for the readout,
    whose δ is e_k (B = K, C = I_K). ``s_w``, ``s_b``: m_W² and m_b² (0 without a bias).
    A conv layer contracted over positions (:func:`_positions_block`) has a positions axis
    after the examples: ``f`` N × S × D patches, ``g`` N × S × (K·C) traced, N × S × K × C full.
    """

    f: Array | None
    g: Array | None
    s_w: Array
    s_b: Array


class Pairing(NamedTuple):
    """The kernel the factors are built for: ``n_a`` × ``n_b`` items, formed in blocks of
    ``rows`` × ``cols`` items (what :func:`positions_cheaper` weighs)."""

    n_a: int
    n_b: int
    rows: int
    cols: int


POSITION_PAIR_ENTRIES = 1 << 24
"""Most entries (position pairs × output pairs) a block of the over-positions contraction of
a conv layer may hold; above it the per-example route is taken whatever the FLOP counts."""


def positions_cheaper(pairing: Pairing, positions: int, patch: int, channels: int,
                      num_out: int, trace: bool) -> bool:
    r"""Whether a conv layer's kernel is cheaper as the double sum over position pairs.

    With S positions, D = k²·C_in patch entries, C channels, K outputs and κ = K traced or K²
    full, the two contractions of Θ_l(x, x') between n_a and n_b examples cost (matmul FLOPs)

        per example:   2(n_a + n_b)·K·S·D·C  +  2·n_a·n_b·κ·D·C
                       (gradients Σ_s P_s ⊗ δ_{s,k}, then their Gram),
        over positions: 2·n_a·n_b·S²·(D + κ·(C + 1))
                       (patch Gram, backward-signal Gram, product summed over s, s'),

    the choice neural-tangents' structured derivatives makes by FLOP count (Novak et al. 2022).
    The second wins only on small feature maps (roughly S² < κ·D·C/(D + κ·C)); it is taken only
    when a block's rows·cols·S²·κ entries fit :data:`POSITION_PAIR_ENTRIES`.
    """
    kappa = num_out if trace else num_out ** 2
    n_a, n_b = pairing.n_a, pairing.n_b
    per_example = 2 * (n_a + n_b) * num_out * positions * patch * channels \
        + 2 * n_a * n_b * kappa * patch * channels
    over_positions = 2 * n_a * n_b * positions ** 2 * (patch + kappa * (channels + 1))
    return (over_positions < per_example
            and pairing.rows * pairing.cols * positions ** 2 * kappa <= POSITION_PAIR_ENTRIES)


def _signals(model, params, x):
    inputs, mults, derivs = _forward(model, params, x)
    return inputs, mults, derivs, _backward(model, params, mults, derivs)


def _diagonal_factors(model: models.Model, params: models.Params, x: Array,
                      trace: bool) -> list[list[Factor]]:
    """One factor per layer for stacks of elementwise blocks (diagonal φ', module docstring)."""
    inputs, mults, derivs, deltas = _signals(model, params, x)
    last = len(model.layers) - 1
    dtype = inputs[0].dtype
    out = []
    for i in range(last + 1):
        s_w, s_b = _scales(mults[i], params[i], dtype)
        if i == last:
            g = None
        elif trace and i == last - 1:
            g = derivs[i] * jnp.sqrt(jnp.sum((mults[-1][0] * params[-1]["W"]) ** 2, axis=1))
        else:
            g = deltas[i].reshape(x.shape[0], -1) if trace else deltas[i]
        out.append([Factor(inputs[i], g, s_w, s_b)])
    return out


def _scales(mults: tuple[float, float], p: dict[str, Array], dtype) -> tuple[Array, Array]:
    """(m_W², m_b²) of a layer as arrays, m_b² = 0 without a bias."""
    m_w, m_b = mults
    return jnp.asarray(m_w ** 2, dtype), jnp.asarray(m_b ** 2 if "b" in p else 0.0, dtype)


NORM_KEYS = ("ln_scale", "ln_bias")


def _per_example(p: dict[str, Array], n: int, ndim: int) -> dict[str, Array]:
    """A layer's norm parameters broadcast over the batch (and over the spatial axes of an
    ``ndim``-dimensional activation), so vjps give per-example gradients."""
    lead = (n,) + (1,) * (ndim - 2)
    return {k: jnp.broadcast_to(p[k], lead + p[k].shape) for k in NORM_KEYS if k in p}


def _block_factors(model: models.Model, params: models.Params, x: Array, trace: bool,
                   pairing: Pairing | None) -> list[list[Factor]]:
    """Factors for any block structure, backward through each block's vjp (module doc).

    Handles Dense and Conv layers, pooling and flattening; a conv layer's W and b enter as
    per-example gradient factors or over positions (:func:`_conv_factors`).
    """
    n = x.shape[0]
    u = x
    dtype = u.dtype
    steps = []
    for layer, p in zip(model.layers, params, strict=True):
        shape_in = u.shape
        u = u.reshape(n, -1) if layer.flatten else u
        norm = _per_example(p, n, u.ndim)
        v, in_vjp = jax.vjp(lambda u_, q, layer=layer: models.layer_input(layer, q, u_), u, norm)
        z, lin_vjp = jax.vjp(
            lambda v_, layer=layer, p=p: models.layer_pre_activation(model, layer, p, v_), v)
        out_vjp = None
        if layer.activation is not None:
            u, out_vjp = jax.vjp(lambda z_, u_, q, layer=layer: _pooled_output(layer, q, u_, z_),
                                 z, u, norm)
        steps.append((shape_in, v, z, in_vjp, lin_vjp, out_vjp))
    last = len(model.layers) - 1
    num_out = params[-1]["W"].shape[-1]
    factors: list[list[Factor]] = [[] for _ in model.layers]
    g_u = None  # ∂f_k/∂u_l as K × N × (shape of u_l)
    for i in range(last, -1, -1):
        layer, p = model.layers[i], params[i]
        shape_in, v, z, in_vjp, lin_vjp, out_vjp = steps[i]
        mults = models.multipliers(model, layer, p["W"])
        s_w, s_b = _scales(mults, p, dtype)
        grads = {}
        if i == last:
            delta = jnp.broadcast_to(jnp.eye(num_out, dtype=dtype)[:, None, :], (num_out, n,
                                                                                   num_out))
            factors[i].append(Factor(v, None, s_w, s_b))
        else:
            delta, g_skip, grads = jax.vmap(out_vjp)(g_u)
            if layer.kind == "conv":
                factors[i] += _conv_factors(model, layer, p, v, delta, trace, pairing)
            elif trace and i == last - 1 and _sorted.sorts_into_readout(model):
                w_eff = models.multipliers(model, model.layers[last], params[last]["W"])[0] \
                    * params[last]["W"]
                factors[i].append(Factor(v, _sorted.sorted_signals(z, w_eff, layer.group_size),
                                         s_w, s_b))
            else:
                factors[i].append(Factor(v, _layout(delta, trace), s_w, s_b))
        if i > 0 or layer.pre_norm:
            g_v = jax.vmap(lambda d, f=lin_vjp: f(d)[0])(delta)
            g_in, grads_in = jax.vmap(in_vjp)(g_v)
            grads = grads_in if layer.pre_norm else grads
            if i > 0:
                g_u = g_in + g_skip if i < last and layer.skip else g_in
                g_u = g_u.reshape((num_out,) + shape_in)
        for key in NORM_KEYS:
            if key in grads:
                factors[i].append(Factor(None, _layout(grads[key], trace),
                                         jnp.asarray(0.0, dtype), jnp.asarray(1.0, dtype)))
    return factors


def _pooled_output(layer: models.Layer, p: dict[str, Array], u: Array, z: Array) -> Array:
    """A hidden block's output as the next layer receives it (pooled when the layer pools)."""
    out = models.block_output(layer, p, u, z)[1]
    return models.avg_pool(out) if layer.pool else out


def _conv_factors(model: models.Model, layer: models.Layer, p: dict[str, Array], v: Array,
                  delta: Array, trace: bool, pairing: Pairing | None) -> list[Factor]:
    r"""A conv layer's W and b as per-example gradient factors (A = 1, B = the gradients' Gram),
    or as one factor over (example, position) items where :func:`positions_cheaper` says so
    for ``pairing`` (``None``: per example).

    With z_s = m_W Σ_{d} P_s(v)_d W_{dc} + m_b b_c at output position s, P_s(v) the patch of the
    layer input under the filter at s (:func:`_patches`, SAME padding),

        ∂f_k/∂W = m_W Σ_s P_s(v) ⊗ δ_{s,k},   ∂f_k/∂b = m_b Σ_s δ_{s,k},

    and Θ_l(x, x') = Σ_k ⟨∂f_k/∂θ_l(x), ∂f_k'/∂θ_l(x')⟩: one contraction over positions per
    example (the patch matrix against the K backward signals moved example-major, N × S ×
    (K·C), so that the per-example products are one batched matmul with the examples
    outermost: 5–6 % off the CIFAR-shaped kernels, where XLA otherwise transposed the
    K-leading signals inside the product; each gradient stored as C × D, the product's
    natural layout, 2× faster than D × C on 4 × 4 maps) and one Gram. The alternative
    contraction over position pairs,
    Θ_l(x, x')_{kk'} = Σ_{s,s'} (m_W² ⟨P_s(x), P_s'(x')⟩ + m_b²)⟨δ_{s,k}(x), δ_{s',k'}(x')⟩
    (:func:`_positions_block`), is the Dense factorization with (example, position) items.
    """
    m_w, m_b = models.multipliers(model, layer, p["W"])
    num_out, n, channels = delta.shape[0], delta.shape[1], delta.shape[-1]
    patches = _patches(v, p["W"].shape[0])  # N × S × D
    signals = delta.reshape(num_out, n, -1, channels)  # K × N × S × C
    if pairing is not None and positions_cheaper(pairing, *patches.shape[1:], channels,
                                                 num_out, trace):
        by_position = jnp.moveaxis(signals, 0, 2)  # N × S × K × C
        g = by_position.reshape(n, patches.shape[1], -1) if trace else by_position
        return [Factor(patches, g, *_scales((m_w, m_b), p, v.dtype))]
    by_example = jnp.moveaxis(signals, 0, 2).reshape(n, patches.shape[1], -1)  # N × S × (K·C)
    grad_w = m_w * jnp.einsum("nsd,nsj->njd", patches, by_example).reshape(n, num_out, -1)
    one, zero = jnp.asarray(1.0, v.dtype), jnp.asarray(0.0, v.dtype)
    g_w = grad_w.reshape(n, -1) if trace else grad_w  # rows (n, k), columns (c, d)
    out = [Factor(None, g_w, zero, one)]
    if "b" in p:
        out.append(Factor(None, _layout(m_b * delta.sum(axis=(2, 3)), trace), zero, one))
    return out


def _patches(v: Array, k: int) -> Array:
    """The k × k patches of NHWC ``v`` under a stride-1 SAME filter, ``N × (H·W) × (k²·C)``:
    k² shifted views of the zero-padded input ((k−1)//2 rows and columns before, the rest
    after, as ``lax.conv_general_dilated``'s SAME), in the (kh, kw, c) order of a flattened
    HWIO filter. Slicing copies N·H·W·k²·C floats, where ``conv_general_dilated_patches``
    would run a convolution with a k²·C-channel identity filter."""
    lo = (k - 1) // 2
    h, w = v.shape[1:3]
    padded = jnp.pad(v, ((0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)))
    taps = [padded[:, i:i + h, j:j + w] for i in range(k) for j in range(k)]
    return jnp.stack(taps, axis=3).reshape(v.shape[0], h * w, -1)


def _layout(cot: Array, trace: bool) -> Array:
    """K × N × … cotangents as the factor's G: N × (K·d) traced, N × K × d full."""
    g = jnp.swapaxes(cot, 0, 1)
    return g.reshape(g.shape[0], -1) if trace else g.reshape(g.shape[:2] + (-1,))


def layer_factors(model: models.Model, params: models.Params, x: Array, trace: bool,
                  pairing: Pairing | None = None) -> list[list[Factor]]:
    """Per weight layer, the :class:`Factor` of each of its parameter groups, built for the
    kernel ``pairing`` describes (``None``: every conv layer per example)."""
    if model.spec.kind == "mlp" and all(layer.elementwise for layer in model.layers):
        return _diagonal_factors(model, params, x, trace)
    return _block_factors(model, params, x, trace, pairing)
