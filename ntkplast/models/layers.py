"""One block's pieces on arrays, whatever the network's parameterization: the fan-in of a
weight, the 2×2 average pool, the effective (possibly Cayley-constrained) weight, the activation
φ, and a hidden block's input (pre-norm) and output (post-norm, φ, skip).

:mod:`ntkplast.models.network` composes them into the forward pass; the formulas are in the
:mod:`ntkplast.models` package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from ntkplast.blocks import cayley_stiefel, group_sort, layer_norm
from ntkplast.models.spec import ACTIVATIONS, GROUP_ACTIVATIONS, Layer

__all__ = ["activation_fn", "avg_pool", "block_output", "crelu", "effective_weight", "fan_in",
           "layer_input"]

Array = jax.Array


def fan_in(w: Array) -> int:
    """Fan-in of a Dense (``d_in × d_out``) or HWIO Conv weight: all axes but the last."""
    return math.prod(w.shape[:-1])


def avg_pool(a: Array) -> Array:
    """2×2 average pooling with stride 2 over the spatial axes of NHWC ``a`` (VALID: an odd
    last row or column is dropped), as a reshape and mean, whose vjp is a broadcast."""
    n, h, w, c = a.shape
    a = a[:, :h - h % 2, :w - w % 2]
    return a.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def effective_weight(layer: Layer, w: Array) -> Array:
    """The weight a layer multiplies by: σ_w · C(W) for a constrained layer, else W itself."""
    return layer.w_std * cayley_stiefel(w) if layer.constrained else w


def crelu(z: Array) -> Array:
    """CReLU (Shang, Sohn, Almeida & Lee 2016; Abbas, Zhao, Modayil, White & Machado 2023,
    "Loss of plasticity in continual deep reinforcement learning"): φ(z) = [relu(z), relu(−z)],
    the two halves concatenated on the last (units) axis, so d units emit 2d features: feature
    i < d is relu(z_i) and feature d + i is relu(−z_i).

    ‖φ(z)‖ = ‖z‖ and, wherever no z_i is 0, the Jacobian [diag(1[z > 0]); −diag(1[z < 0])] has
    orthonormal columns: no direction is gated off, whatever the signs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import models
      >>> models.crelu(jnp.array([[1.5, -2.0, 0.5]])).tolist()
      [[1.5, 0.0, 0.5, 0.0, 2.0, 0.0]]
    """
    return jnp.concatenate([jax.nn.relu(z), jax.nn.relu(-z)], axis=-1)


def activation_fn(layer: Layer) -> Callable[[Array], Array]:
    """φ of a hidden layer as a function of its (normalised) pre-activation, units last
    (CReLU's output has twice as many features on that axis)."""
    if layer.activation == "crelu":
        return crelu
    if layer.activation == "leaky_relu":
        slope = layer.negative_slope
        return lambda z: jax.nn.leaky_relu(z, slope)
    if layer.activation in GROUP_ACTIVATIONS:
        size = layer.group_size
        return lambda z: group_sort(z, size)
    return ACTIVATIONS[layer.activation]


def layer_input(layer: Layer, p: Mapping[str, Array], u: Array) -> Array:
    """What the weight layer multiplies: LN(u) under pre-norm, else the block input u."""
    return layer_norm(u, p) if layer.pre_norm else u


def block_output(layer: Layer, p: Mapping[str, Array], u: Array,
                 z: Array) -> tuple[Array, Array]:
    """A hidden block's units a = φ(LN(z) or z) and its output u + a (skip) or a, unpooled."""
    a = activation_fn(layer)(layer_norm(z, p) if layer.post_norm else z)
    return a, (u + a if layer.skip else a)
