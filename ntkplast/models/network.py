"""A built network: :class:`Model`, :func:`build` (spec → model), parameter initialisation
(:func:`init_params`) and the forward pass (:func:`forward`, :func:`block_inputs`, one block's
:func:`block_map`, one layer's :func:`layer_pre_activation` with its :func:`multipliers`).

Everything here takes the :class:`Model` (its parameterization sets the multipliers), so it
lives beside the class whose ``init``/``apply``/``intermediates`` call it. The formulas
("module docstring" below) are in the :mod:`ntkplast.models` package docstring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ntkplast.base import Array, Params
from ntkplast.errors import NtkplastError
from ntkplast.models.layers import (
    avg_pool,
    block_output,
    effective_weight,
    fan_in,
    layer_input,
)
from ntkplast.models.spec import ArchSpec, Layer, out_widths

__all__ = ["Model", "Params", "block_inputs", "block_map", "build", "forward", "init_params",
           "layer_pre_activation", "multipliers"]



@dataclasses.dataclass(frozen=True)
class Model:
    """A built architecture: pure functions plus the layer list they follow."""

    spec: ArchSpec
    layers: tuple[Layer, ...]

    def init(self, key: Array, input_shape: Sequence[int]) -> Params:
        """Draw parameters for inputs of per-example shape ``input_shape`` (no batch axis)."""
        return init_params(self, key, tuple(input_shape))

    def apply(self, params: Params, x: Array) -> Array:
        """Logits ``f(x) ∈ R^{N×K}`` for a batch ``x`` of shape ``N × input_shape``."""
        return forward(self, params, x)[0]

    def intermediates(self, params: Params, x: Array) -> tuple[list[Array], list[Array]]:
        """Pre-activations ``[z_1, …, z_L]`` and post-activations ``[a_1, …, a_{L-1}]``.

        ``z_L`` are the logits. For a CNN, ``a_l`` is taken after φ and before pooling, so its
        last axis indexes the layer's units (channels); for CReLU it holds 2d features, relu(z)
        of the d units then relu(−z).
        """
        _, pre, post = forward(self, params, x)
        return pre, post


def build(spec: ArchSpec | Mapping[str, Any]) -> Model:
    """Build a :class:`Model` from a spec (an :class:`ArchSpec` or its dict form).

    Examples:
      >>> import jax
      >>> from ntkplast import models
      >>> model = models.build({"widths": [16], "num_outputs": 3})      # or an ArchSpec
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> [p["W"].shape for p in params], model.apply(params, jax.numpy.ones((4, 5))).shape
      ([(5, 16), (16, 3)], (4, 3))
    """
    if not isinstance(spec, ArchSpec):
        spec = ArchSpec.from_dict(spec)
    b = spec.b_std
    constrained = spec.weight_constraint == "orthogonal"
    hidden = dict(w_std=spec.hidden_w_std, b_std=b, activation=spec.activation,
                  constrained=constrained,
                  post_norm=spec.layer_norm and not spec.pre_norm,
                  negative_slope=spec.negative_slope, group_size=spec.unit_group_size)

    def stack(kind: str, widths: tuple[int, ...], **kw: Any) -> list[Layer]:
        # a skip needs equal input and output widths, so never on a stack's first layer;
        # pre-norm normalises the input of each residual block only
        skips = [spec.residual and i > 0 and widths[i] == widths[i - 1]
                 for i in range(len(widths))]
        return [Layer(kind, **hidden, **kw, flatten=kind == "dense" and i == 0, skip=skip,
                      pre_norm=spec.pre_norm and skip) for i, skip in enumerate(skips)]

    if spec.kind == "mlp":
        layers = stack("dense", spec.widths)
        flat = not spec.widths
    else:
        layers = stack("conv", spec.widths, pool=True) + stack("dense", spec.dense_widths)
        flat = not spec.dense_widths
    layers.append(Layer("dense", spec.readout_w_std, b, None, flatten=flat,
                        pre_norm=spec.pre_norm and bool(layers), constrained=constrained,
                        scale=spec.output_scale))
    return Model(spec, tuple(layers))


def multipliers(model: Model, layer: Layer, w: Array) -> tuple[float, float]:
    """(m_W, m_b): the factors that multiply W and b in the forward pass (module docstring),
    times the layer's constant ``scale`` (the readout's: the spec's ``output_scale``)."""
    if model.spec.parameterization == "ntk":
        return layer.scale * layer.w_std / math.sqrt(fan_in(w)), layer.scale * layer.b_std
    return layer.scale, layer.scale


def _semi_orthogonal(key: Array, rows: int, cols: int) -> Array:
    """A ``rows × cols`` matrix with orthonormal columns (rows ≥ cols) or rows (rows < cols)."""
    big, small = max(rows, cols), min(rows, cols)
    q, r = jnp.linalg.qr(jax.random.normal(key, (big, small)))
    q = q * jnp.sign(jnp.diagonal(r))  # Haar measure (Mezzadri 2007)
    return q if rows >= cols else q.T


def _init_weight(key: Array, spec: ArchSpec, layer: Layer, shape: tuple[int, ...]) -> Array:
    fin = math.prod(shape[:-1])
    if layer.constrained:  # the free parameter of the Cayley map
        return jax.random.normal(key, shape) / math.sqrt(fin)
    if spec.init == "gaussian":
        w = jax.random.normal(key, shape)
        return w if spec.parameterization == "ntk" else w * (layer.w_std / math.sqrt(fin))
    q = _semi_orthogonal(key, shape[-2], shape[-1]) * layer.w_std  # effective weight σ_w·Q
    if layer.kind == "conv":
        k = shape[0]
        q = jnp.zeros(shape).at[k // 2, k // 2].set(q)
    m_w = layer.w_std / math.sqrt(fin) if spec.parameterization == "ntk" else 1.0
    return q / m_w


def init_params(model: Model, key: Array, input_shape: tuple[int, ...]) -> Params:
    """Draw parameters layer by layer (one PRNG key per layer, split from ``key``)."""
    spec = model.spec
    if spec.kind == "cnn" and len(input_shape) != 3:
        raise NtkplastError(f"input_shape: a cnn takes images H×W×C, got {input_shape}")
    if not input_shape or any(int(s) < 1 for s in input_shape):
        raise NtkplastError(f"input_shape must be a non-empty tuple of positive sizes, "
                            f"got {input_shape}")
    shape = tuple(int(s) for s in input_shape)
    params = []
    keys = jax.random.split(key, len(model.layers))
    for layer, width, k in zip(model.layers, out_widths(spec), keys):
        kw, kb = jax.random.split(k)
        if layer.flatten:
            shape = (math.prod(shape),)
        if layer.kind == "conv":
            w_shape = (spec.kernel_size, spec.kernel_size, shape[-1], width)
            shape = (shape[0] // 2, shape[1] // 2, width) if layer.pool else shape[:2] + (width,)
            if min(shape[:2]) < 1:
                raise NtkplastError(f"input_shape {input_shape} is too small for "
                                    f"{len(spec.widths)} pooling blocks")
        else:
            w_shape = (shape[-1], width)
            shape = (width,)
        shape = shape[:-1] + (shape[-1] * layer.features_per_unit,)  # CReLU: 2 per unit
        p = {"W": _init_weight(kw, spec, layer, w_shape)}
        if spec.use_bias:
            std = 1.0 if spec.parameterization == "ntk" else layer.b_std
            p["b"] = std * jax.random.normal(kb, (width,))
        if layer.has_norm and spec.layer_norm_affine:
            norm_width = w_shape[-2] if layer.pre_norm else width
            p["ln_scale"] = jnp.ones((norm_width,))
            p["ln_bias"] = jnp.zeros((norm_width,))
        params.append(p)
    return tuple(params)


def layer_pre_activation(model: Model, layer: Layer, p: Mapping[str, Array], a: Array) -> Array:
    """z = m_W · a ⊛ W + m_b · b for one layer (``a`` already flattened when the layer says so)."""
    m_w, m_b = multipliers(model, layer, p["W"])
    if layer.kind == "conv":
        z = lax.conv_general_dilated(a, p["W"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
        z = a @ effective_weight(layer, p["W"])
    z = m_w * z
    if "b" in p:
        z = z + m_b * p["b"]
    return z


def block_map(model: Model, layer: Layer, p: Mapping[str, Array], u: Array) -> Array:
    """The map u_{l-1} ↦ u_l of one block before pooling (the readout's: u_{L-1} ↦ logits)."""
    z = layer_pre_activation(model, layer, p, layer_input(layer, p, u))
    return z if layer.activation is None else block_output(layer, p, u, z)[1]


def forward(model: Model, params: Params, x: Array) -> tuple[Array, list[Array], list[Array]]:
    """Run the network; return logits, pre-activations per layer and post-activations.

    Pre-activations are the weight layers' outputs z_l (logits last); post-activations the
    hidden blocks' units a_l (before any skip sum and pooling; module docstring).
    """
    logits, pre, post, _ = _run(model, params, x)
    return logits, pre, post


def block_inputs(model: Model, params: Params, x: Array) -> list[Array]:
    """What each weight layer's block consumes, u_{l-1} (after pooling and flattening)."""
    return _run(model, params, x)[3]


def _run(model: Model, params: Params,
         x: Array) -> tuple[Array, list[Array], list[Array], list[Array]]:
    if len(params) != len(model.layers):
        raise NtkplastError(f"params have {len(params)} layers but the model spec has "
                            f"{len(model.layers)}; load parameters made for this spec")
    u = x
    pre, post, inputs = [], [], []
    for layer, p in zip(model.layers, params):
        if layer.flatten:
            u = u.reshape(u.shape[0], -1)
        inputs.append(u)
        z = layer_pre_activation(model, layer, p, layer_input(layer, p, u))
        pre.append(z)
        if layer.activation is None:
            return z, pre, post, inputs
        a, u = block_output(layer, p, u, z)
        post.append(a)
        if layer.pool:
            u = avg_pool(u)
    raise AssertionError("the last layer of a model always has activation None")
