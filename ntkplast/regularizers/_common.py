"""Helpers shared by the regularizers: layer selection, the matrix view of a weight, multipliers.

Weights follow :mod:`ntkplast.models`: a Dense ``W`` is ``d_in × d_out``; a Conv ``W`` is HWIO
``k × k × c_in × c_out`` and is viewed as the ``(k·k·c_in) × c_out`` matrix — the transpose of
the ``c_out × (c_in·k·k)`` matrix that PyTorch code reshapes to, so the same two Grams arise.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.validate import check_number

Array = jax.Array
Params = models.Params
LayerSelection = str | Sequence[int]
SELECTIONS = ("hidden", "all", "inner")


def select_layers(num_layers: int, layers: LayerSelection) -> tuple[int, ...]:
    """Indices of the weight layers a regularizer acts on.

    ``"hidden"``: every layer whose output is a hidden layer (all but the readout — ntkplast
    models have no embedding tables, so the first layer, which maps the input to hidden layer 1,
    is included); ``"inner"``: hidden layers without the first; ``"all"``: every layer; or an
    explicit sequence of layer indices (negative indices count from the readout).
    """
    if isinstance(layers, str):
        if layers == "hidden":
            return tuple(range(num_layers - 1))
        if layers == "inner":
            return tuple(range(1, num_layers - 1))
        if layers == "all":
            return tuple(range(num_layers))
        raise NtkplastError(f"layers: unknown selection {layers!r}; choose one of "
                            f"{list(SELECTIONS)} or give a list of layer indices")
    try:
        idx = [int(i) for i in layers]
    except (TypeError, ValueError):
        idx = [num_layers]
    if any(not -num_layers <= i < num_layers for i in idx):
        raise NtkplastError(f"layers: expected indices in [-{num_layers}, {num_layers - 1}] for a "
                            f"{num_layers}-layer network, got {layers!r}")
    out = sorted({i % num_layers for i in idx})
    return tuple(out)


def check_layers(layers: LayerSelection) -> LayerSelection:
    """Validate a selection early (before the number of layers is known)."""
    if isinstance(layers, str):
        select_layers(2, layers)
        return layers
    try:
        return tuple(int(i) for i in layers)
    except (TypeError, ValueError):
        raise NtkplastError(f"layers: expected one of {list(SELECTIONS)} or a list of layer "
                            f"indices, got {layers!r}") from None


def as_matrix(w: Array) -> Array:
    """The ``d_in × d_out`` matrix view: a Dense ``W`` itself, an HWIO kernel reshaped."""
    if w.ndim == 2:
        return w
    if w.ndim == 4:
        return w.reshape(-1, w.shape[-1])
    raise NtkplastError(f"expected a Dense (2-D) or HWIO Conv (4-D) weight, got shape {w.shape}")


def weight_multipliers(model: models.Model | None, params: Params) -> tuple[float, ...]:
    """m_W of every layer (1 for the standard parameterization, or when ``model`` is None)."""
    if model is None:
        return (1.0,) * len(params)
    if len(model.layers) != len(params):
        raise NtkplastError(f"params have {len(params)} layers but the model has "
                            f"{len(model.layers)}; pass the model these params belong to")
    return tuple(float(models.multipliers(model, layer, p["W"])[0])
                 for layer, p in zip(model.layers, params))


def check_nonnegative(name: str, value: float) -> float:
    """A finite number ≥ 0, or :class:`NtkplastError` naming ``name`` (:func:`check_number`)."""
    return check_number(name, value)


def check_positive_int(name: str, value: int) -> int:
    """An integer ≥ 1, or :class:`NtkplastError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NtkplastError(f"{name}: expected an integer >= 1, got {value!r}")
    return value


def zeros_like_tree(params: Params) -> Params:
    """A params-shaped tree of zeros."""
    return jax.tree_util.tree_map(jnp.zeros_like, params)
