"""The same architecture as a neural-tangents ``stax`` triple (needs neural-tangents).

``to_stax(spec)`` returns ``(init_fn, apply_fn, kernel_fn)`` built from ``stax.Dense``/
``stax.Conv``/activations/``stax.AvgPool`` with the spec's σ_w, σ_b and parameterization, so
``kernel_fn(x1, x2, "ntk")`` is the infinite-width NTK of the architecture (Jacot et al. 2018;
Novak et al. 2020, "Neural Tangents"). Leaky ReLU, LayerNorm (``stax.LayerNorm`` over the last
axis, without scale and shift) and residual blocks (``FanOut``/``parallel``/``FanInSum``) convert;
GroupSort and MaxMin have no stax layer and raise :class:`NtkplastError`. An ``output_scale``
c ≠ 1 ends the network with ``stax.ABRelu(c, c)``, the map x ↦ c·x, whose kernels are c² times
its input's. ``to_stax_params``
maps ntkplast parameters onto the triple's parameter layout, and
``apply_fn(to_stax_params(model, params), x)`` equals ``model.apply(params, x)``.

neural-tangents is imported on first use, so this module can be imported in the core
environment; calling it there raises :class:`NtkplastError`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ntkplast import models
from ntkplast.errors import NtkplastError


def _stax():
    try:
        from neural_tangents import stax
    except ImportError as e:
        raise NtkplastError(f"neural-tangents is not importable here ({e}); use the full "
                            f"environment (.venv/, scripts/env.sh full)") from None
    return stax


def _activation(stax: Any, layer: models.Layer) -> Any:
    name = layer.activation
    if name in models.GROUP_ACTIVATIONS:
        raise NtkplastError(f"model.activation: neural-tangents has no {name} layer, so this "
                            f"architecture has no stax triple (no infinite-width kernel, no "
                            f"nt: engine comparison through stax); the layerwise and generic "
                            f"engines take it")
    if name in models.WIDENING_ACTIVATIONS:
        raise NtkplastError(f"model.activation: neural-tangents has no {name} layer (it "
                            f"concatenates relu(z) and relu(−z), doubling the width), so this "
                            f"architecture has no stax triple (no infinite-width kernel, no nt: "
                            f"engine comparison through stax); the layerwise and generic "
                            f"engines take it")
    if name == "leaky_relu":
        return stax.LeakyRelu(layer.negative_slope)
    if name == "relu":
        return stax.Relu()
    if name == "erf":
        return stax.Erf()
    if name == "gelu":
        return stax.Gelu(approximate=False)
    if name == "linear":
        return stax.Identity()
    # No closed form for tanh: Gauss–Hermite quadrature of the dual kernel.
    return stax.ElementwiseNumerical(jnp.tanh, deg=25, df=lambda z: 1 - jnp.tanh(z) ** 2)


def _layers(spec: models.ArchSpec) -> tuple[list[Any], list[Any]]:
    """stax layers and, for each, the index of the ntkplast layer whose parameters it takes."""
    if spec.weight_constraint != "none":
        raise NtkplastError("model.weight_constraint: neural-tangents has no orthogonally "
                            "constrained layer, so this architecture has no stax triple; the "
                            "generic engine takes it")
    stax = _stax()
    model = models.build(spec)
    widths = models.out_widths(spec)
    out: list[Any] = []
    owner: list[int | None] = []
    for i, (layer, width) in enumerate(zip(model.layers, widths)):
        if layer.flatten:
            out.append(stax.Flatten())
            owner.append(None)
        b_std = layer.b_std if spec.use_bias else None
        if layer.kind == "conv":
            k = spec.kernel_size
            weights = stax.Conv(width, (k, k), padding="SAME", W_std=layer.w_std, b_std=b_std,
                                parameterization=spec.parameterization)
        else:
            weights = stax.Dense(width, W_std=layer.w_std, b_std=b_std,
                                 parameterization=spec.parameterization)
        branch = ([stax.LayerNorm(axis=-1, eps=models.LN_EPS)] if layer.pre_norm else []) + \
            [weights] + ([stax.LayerNorm(axis=-1, eps=models.LN_EPS)] if layer.post_norm else [])
        if layer.activation is not None:
            branch.append(_activation(stax, layer))
        if layer.skip:  # u + branch(u), one parameter slot for the whole block
            out.append(stax.serial(stax.FanOut(2), stax.parallel(stax.serial(*branch),
                                                                 stax.Identity()),
                                   stax.FanInSum()))
            owner.append(("block", i, len(branch)))
        else:
            for lay in branch:
                out.append(lay)
                owner.append(i if lay is weights else None)
        if layer.pool:
            out.append(stax.AvgPool((2, 2), strides=(2, 2), padding="VALID"))
            owner.append(None)
    if spec.output_scale != 1.0:  # f = c·z_L: ABRelu(c, c) is x ↦ c·x, its kernels c² times
        out.append(stax.ABRelu(spec.output_scale, spec.output_scale))
        owner.append(None)
    return out, owner


def to_stax(spec: models.ArchSpec) -> tuple[Any, Any, Any]:
    """``(init_fn, apply_fn, kernel_fn)`` of ``spec`` as a ``stax.serial`` network."""
    layers, _ = _layers(spec)
    return _stax().serial(*layers)


def to_stax_params(model: models.Model, params: models.Params) -> tuple[Any, ...]:
    """ntkplast parameters in the layout of ``to_stax(model.spec)``'s ``apply_fn``."""
    if model.spec.layer_norm and model.spec.layer_norm_affine:
        raise NtkplastError("model.layer_norm_affine: neural-tangents' LayerNorm has no scale "
                            "or shift, so these parameters have no stax layout; build the "
                            "spec with layer_norm_affine = false to compare through stax")
    _, owner = _layers(model.spec)
    out = []
    for i in owner:
        if i is None:
            out.append(())
        elif isinstance(i, tuple):  # a residual block: (((branch…), ()), (), ())
            _, j, size = i
            layer = model.layers[j]
            branch = [()] * size
            branch[1 if layer.pre_norm else 0] = _dense_params(params[j])
            out.append(((), (tuple(branch), ()), ()))
        else:
            out.append(_dense_params(params[i]))
    return tuple(out)


def _dense_params(p: dict[str, Any]) -> tuple[Any, Any]:
    w, b = p["W"], p.get("b")
    if b is not None:  # stax keeps biases as 1 × C (Dense) or 1 × 1 × 1 × C (Conv)
        b = b.reshape((1,) * (w.ndim - 1) + (-1,))
    return (w, b)
