"""Explicit Jacobians of a network on a probe set, for :mod:`ntkplast.isometry`.

:func:`layer_moments` gives the two traces of each layer Jacobian J_l = diag(φ'(z_l)) L_l (the
layer's linear map L_l, :func:`linear_map`, built as a matrix by :func:`explicit_map`);
:func:`io_jacobians` builds ∂f/∂x per probe input (or, through a dense first layer narrower than
the input, ∂f/∂z_1 · Rᵀ with the same singular values, :func:`first_layer_r`), in blocks of
inputs (:func:`map_blocks`); the spectra are taken on the host (:mod:`ntkplast.linalg`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntkplast import models

Array = jax.Array

__all__ = ["explicit_map", "first_layer_r", "io_jacobians", "layer_moments", "linear_map",
           "map_blocks", "pre_activation_shapes"]


def map_blocks(fn: Callable[[Array], Array], x: Array, size: int) -> Array:
    """``fn`` on blocks of at most ``size`` rows of ``x`` (traced: lax.map over padded blocks)."""
    n_rows = x.shape[0]
    size = max(1, min(size, n_rows))
    if size == n_rows:
        return fn(x)
    pad = -n_rows % size
    x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]) if pad else x
    out = lax.map(fn, x.reshape((-1, size) + x.shape[1:]))
    return out.reshape((-1,) + out.shape[2:])[:n_rows]


@functools.partial(jax.jit, static_argnums=(0, 1))
def io_jacobians(model: models.Model, block_size: int, params: models.Params,
                 x: Array, r: Array | None = None) -> Array:
    """J(x) = ∂f/∂x for every probe input, ``N × K × D`` (SVDs follow on the host); with ``r``
    (:func:`first_layer_r`) J(x)·Q = ∂f/∂z_1 · Rᵀ instead, ``N × K × d_1``, same σ."""
    if r is None:
        def f(xi: Array) -> Array:
            return model.apply(params, xi[None])[0]
        d = math.prod(x.shape[1:])
        inputs = x
    else:
        first, rest = model.layers[0], dataclasses.replace(model, layers=model.layers[1:])

        def f(zi: Array) -> Array:  # the network from the first pre-activation z_1 on
            z = zi[None]
            return rest.apply(params[1:], models.block_output(first, params[0], z, z)[1])[0]
        d = r.shape[0]
        inputs = models.layer_pre_activation(model, first, params[0], x.reshape(x.shape[0], -1))
    k = model.spec.num_outputs
    jac = jax.jacrev(f) if k <= d else jax.jacfwd(f)

    def block(xb: Array) -> Array:
        jb = jax.vmap(jac)(xb).reshape(xb.shape[0], k, d)
        return jb if r is None else jb @ r.T

    return map_blocks(block, inputs, block_size)


def first_layer_r(model: models.Model, params: models.Params,
                  x_shape: tuple[int, ...]) -> Array | None:
    """R of m_W·W_1 = QR when x enters only through a dense first layer of d_1 < D units.

    Then z_1 = m_W·x W_1 + b and J(x) = ∂f/∂z_1 · (m_W W_1)ᵀ = ∂f/∂z_1 · Rᵀ Qᵀ, so σ(J) =
    σ(∂f/∂z_1 · Rᵀ): K × d_1 instead of K × D per input, and the backward pass stops at z_1
    (784–256–256–256–10 MLP: 2.0 against 3.3 million multiply-adds per input). R from a float64
    QR on the host. ``None`` (the plain J) for conv, pre-norm, skip or pooled first layers, and
    unless K ≤ d_1 < D (so both have min(K, D) singular values).
    """
    first, w = model.layers[0], params[0]["W"]
    if (first.kind != "dense" or first.pre_norm or first.skip or first.pool
            or len(model.layers) < 2
            or not model.spec.num_outputs <= w.shape[-1] < math.prod(x_shape)):
        return None
    m_w = models.multipliers(model, first, w)[0]
    weff = np.asarray(models.effective_weight(first, w), np.float64) * m_w
    return jnp.asarray(np.linalg.qr(weff, mode="r"), w.dtype)


def pre_activation_shapes(model: models.Model, params: models.Params, x: Array) -> Any:
    """Shapes (``jax.ShapeDtypeStruct``) of the pre-activations z_l of ``model`` on ``x``,
    traced once per model and shapes (an analysis asks on every checkpoint; a trace is ~15 ms)."""
    leaves, treedef = jax.tree_util.tree_flatten((params, x))
    return _pre_activation_shapes(model, treedef, tuple(
        jax.ShapeDtypeStruct(np.shape(a), a.dtype) for a in leaves))


@functools.lru_cache(maxsize=32)
def _pre_activation_shapes(model: models.Model, treedef: Any,
                           leaves: tuple[jax.ShapeDtypeStruct, ...]) -> Any:
    params, x = jax.tree_util.tree_unflatten(treedef, leaves)
    return jax.eval_shape(model.intermediates, params, x)[0]


def linear_map(model: models.Model, layer: models.Layer, w: Array) -> Callable[[Array], Array]:
    """a ↦ m_W · a ⊛ W on a batch (the layer without bias and activation)."""
    return lambda a: models.layer_pre_activation(model, layer, {"W": w}, a)


def explicit_map(model: models.Model, layer: models.Layer, w: Array,
                 in_shape: tuple[int, ...]) -> Array:
    """Lᵀ as a d_in × d_out matrix (Dense: m_W W; Conv: the map applied to the unit basis)."""
    if layer.kind == "dense":
        return models.multipliers(model, layer, w)[0] * w
    d_in = math.prod(in_shape)
    basis = jnp.eye(d_in, dtype=w.dtype).reshape((d_in,) + in_shape)
    return linear_map(model, layer, w)(basis).reshape(d_in, -1)


def layer_moments(model: models.Model, layer: models.Layer, in_shape: tuple[int, ...],
                  exact: bool, num_probes: int, w: Array, gate: Array,
                  key: Array, block_entries: int) -> tuple[Array, Array]:
    """Per input: tr(JJᵀ) and tr((JJᵀ)²) of J_l = diag(φ'(z_l)) L_l, ``gate`` = φ'(z_l);
    Hutchinson unless ``exact`` (:mod:`ntkplast.isometry`'s docstring), in blocks of at most
    ``block_entries`` array entries."""
    n_in = gate.shape[0]
    u = gate * gate
    m_w = models.multipliers(model, layer, w)[0]
    ones = jnp.ones((1,) + in_shape, w.dtype)
    r = m_w * linear_map(model, layer, w * w)(ones)  # squared row norms of L_l
    t1 = jnp.sum((u * r).reshape(n_in, -1), axis=1)
    if exact:
        lt = explicit_map(model, layer, w, in_shape)
        g = lt.T @ lt
        u = u.reshape(n_in, -1)
        return t1, jnp.einsum("ni,ij,nj->n", u, g * g, u)
    lin = linear_map(model, layer, w)

    def probes(keys: Array) -> Array:
        """‖JᵀJ v‖² per probe and input, probes folded into the batch axis."""
        v = jax.vmap(lambda k: jax.random.rademacher(k, (n_in,) + in_shape, dtype=w.dtype))(keys)
        y, back = jax.vjp(lin, v.reshape((-1,) + in_shape))
        uy = (y.reshape(v.shape[:2] + u.shape[1:]) * u).reshape(y.shape)
        g = back(uy)[0]                                       # JᵀJ v = Lᵀ(u ⊙ L v)
        return jnp.sum(g.reshape(v.shape[0], n_in, -1) ** 2, axis=2)

    per_block = block_entries // (n_in * max(math.prod(in_shape), gate[0].size))
    sq = map_blocks(probes, jax.random.split(key, num_probes), per_block)
    return t1, jnp.mean(sq, axis=0)
