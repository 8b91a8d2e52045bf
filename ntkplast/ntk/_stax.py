"""The same architecture as a neural-tangents ``stax`` triple (needs neural-tangents).

``to_stax(spec)`` returns ``(init_fn, apply_fn, kernel_fn)`` built from ``stax.Dense``/
``stax.Conv``/activations/``stax.AvgPool`` with the spec's σ_w, σ_b and parameterization, so
``kernel_fn(x1, x2, "ntk")`` is the infinite-width NTK of the architecture (Jacot et al. 2018;
Novak et al. 2020, "Neural Tangents"). ``to_stax_params`` maps ntkplast parameters onto the
triple's parameter layout, and ``apply_fn(to_stax_params(model, params), x)`` equals
``model.apply(params, x)``.

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


def _activation(stax: Any, name: str) -> Any:
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


def _layers(spec: models.ArchSpec) -> tuple[list[Any], list[int | None]]:
    """stax layers and, for each, the index of the ntkplast layer whose parameters it takes."""
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
            out.append(stax.Conv(width, (k, k), padding="SAME", W_std=layer.w_std, b_std=b_std,
                                 parameterization=spec.parameterization))
        else:
            out.append(stax.Dense(width, W_std=layer.w_std, b_std=b_std,
                                  parameterization=spec.parameterization))
        owner.append(i)
        if layer.activation is not None:
            out.append(_activation(stax, layer.activation))
            owner.append(None)
        if layer.pool:
            out.append(stax.AvgPool((2, 2), strides=(2, 2), padding="VALID"))
            owner.append(None)
    return out, owner


def to_stax(spec: models.ArchSpec) -> tuple[Any, Any, Any]:
    """``(init_fn, apply_fn, kernel_fn)`` of ``spec`` as a ``stax.serial`` network."""
    layers, _ = _layers(spec)
    return _stax().serial(*layers)


def to_stax_params(model: models.Model, params: models.Params) -> tuple[Any, ...]:
    """ntkplast parameters in the layout of ``to_stax(model.spec)``'s ``apply_fn``."""
    _, owner = _layers(model.spec)
    out = []
    for i in owner:
        if i is None:
            out.append(())
            continue
        w, b = params[i]["W"], params[i].get("b")
        if b is not None:  # stax keeps biases as 1 × C (Dense) or 1 × 1 × 1 × C (Conv)
            b = b.reshape((1,) * (w.ndim - 1) + (-1,))
        out.append((w, b))
    return tuple(out)
