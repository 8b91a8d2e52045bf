"""A JAX parameter pytree (Flax linen/nnx, Equinox, a plain dict) as a named state dict.

Flax, Equinox and hand-written JAX code store the same Dense/Conv/LayerNorm parameters under
different names and layouts. :func:`pytree_to_state_dict` flattens a pytree to dotted names
(``"Dense_0.weight"``, ``"layers.1.bias"``) in PyTorch's layout, which
:func:`ntkplast.convert.state_dict_to_params` already turns into an ntkplast
``(ArchSpec, params)`` (layer order from the names or the shapes, the spec's checks):

* Flax ``kernel``: Dense ``in × out`` becomes ``weight = kernelᵀ`` (``out × in``); Conv
  ``kh × kw × I × O`` (HWIO) becomes ``weight = kernel.transpose(3, 2, 0, 1)`` (OIHW);
* Equinox ``weight`` is already ``out × in`` (Linear) or OIHW (Conv2d), its conv bias
  ``O × 1 × 1`` is flattened to ``(O,)``;
* a LayerNorm's ``scale`` (Flax) is its ``weight``;
* wrappers are dropped: a leading ``params`` collection (linen variables) and a trailing
  ``value``/``raw_value`` (nnx ``VariableState``, and Orbax's restore of one).

Arrays only: every leaf must be a finite float array (``None`` leaves, as
``eqx.filter(model, eqx.is_array)`` leaves them, are skipped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ntkplast import models
from ntkplast.convert.state_dicts import state_dict_to_params
from ntkplast.errors import NtkplastError

__all__ = ["path_name", "pytree_to_params", "pytree_to_state_dict"]

_WRAPPERS = ("value", "raw_value")
_LEAVES = {"kernel": "weight", "weight": "weight", "scale": "weight", "bias": "bias"}


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey/FlattenedIndexKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path: Sequence[Any]) -> str:
    """Dotted name of a ``jax.tree_util`` key path, wrappers dropped (module docstring)."""
    parts = [_key_name(k) for k in path]
    while parts and parts[-1] in _WRAPPERS:
        parts.pop()
    if len(parts) > 1 and parts[0] == "params":
        parts = parts[1:]
    return ".".join(parts)


def pytree_to_state_dict(tree: Any, source: str = "pytree") -> dict[str, np.ndarray]:
    """``{"<module>.weight"|"<module>.bias": array}`` in PyTorch's layout (module docstring).

    Raises:
      NtkplastError: a leaf that is no array, or whose name is not a Dense/Conv/LayerNorm
        parameter (``kernel``, ``weight``, ``scale``, ``bias``; BatchNorm statistics, embeddings
        and the like are named).
    """
    out: dict[str, np.ndarray] = {}
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    for path, leaf in leaves:
        if leaf is None:
            continue
        name = path_name(path)
        module, _, leaf_name = name.rpartition(".")
        kind = _LEAVES.get(leaf_name)
        if kind is None or not hasattr(leaf, "shape"):
            raise NtkplastError(f"{source}: unsupported entry {name!r} (type "
                                f"{type(leaf).__name__}); only Dense/Linear, Conv and LayerNorm "
                                f"parameters (kernel, weight, scale, bias) are read")
        arr = np.asarray(leaf)
        if leaf_name == "kernel" and arr.ndim == 2:
            arr = arr.T
        elif leaf_name == "kernel" and arr.ndim == 4:
            arr = arr.transpose(3, 2, 0, 1)
        elif kind == "bias" and arr.ndim > 1 and all(s == 1 for s in arr.shape[1:]):
            arr = arr.reshape(arr.shape[0])
        out[f"{module}.{kind}" if module else kind] = arr
    if not out:
        raise NtkplastError(f"{source}: no parameters found in the pytree")
    return out


def pytree_to_params(tree: Any, spec: models.ArchSpec | Mapping[str, Any] | None = None, *,
                     activation: str = "relu", input_shape: Sequence[int] | None = None,
                     input_layout: str = "hwc", key_order: Sequence[str] | None = None,
                     source: str = "pytree") -> tuple[models.ArchSpec, models.Params]:
    """An ntkplast ``(ArchSpec, params)`` from a JAX parameter pytree.

    :func:`pytree_to_state_dict`, then :func:`ntkplast.convert.state_dict_to_params`
    (``spec``, ``activation``, ``input_shape``, ``key_order`` as there). ``input_layout`` is
    ``"hwc"`` for Flax (NHWC images) and ``"chw"`` for Equinox (CHW images).
    """
    state = pytree_to_state_dict(tree, source)
    return state_dict_to_params(state, spec, key_order, input_shape=input_shape,
                                input_layout=input_layout, activation=activation, source=source)
