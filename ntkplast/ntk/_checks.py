"""Boundary checks for the NTK entry points: parameters against the spec, probe inputs."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models
from ntkplast.errors import NtkplastError


def param_dtype(params: Any) -> Any:
    """The floating dtype of the first weight (probe inputs are cast to it)."""
    return jnp.asarray(jax.tree_util.tree_leaves(params)[0]).dtype


def check_inputs(name: str, x: Any, model: models.Model, *, like: Any = None) -> jax.Array:
    """Return ``x`` as an array after checking batch axis, emptiness, shape and finiteness."""
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError) as e:
        raise NtkplastError(f"{name}: expected an array of probe inputs, got {type(x)} ({e})") \
            from None
    if x.ndim < 2:
        raise NtkplastError(f"{name}: expected a batch of probe inputs with shape N × input_shape,"
                            f" got shape {x.shape}; add the batch axis (x[None]) for one input")
    if x.shape[0] == 0:
        raise NtkplastError(f"{name}: the probe set is empty (shape {x.shape}); pass at least "
                            f"one input")
    if model.spec.kind == "cnn" and x.ndim != 4:
        raise NtkplastError(f"{name}: a cnn takes images N × H × W × C, got shape {x.shape}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise NtkplastError(f"{name}: per-example shape {x.shape[1:]} differs from x1's "
                            f"{like.shape[1:]}; both probe sets must have the same input shape")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if not bool(jnp.all(jnp.isfinite(x))):
        raise NtkplastError(f"{name}: contains NaN or Inf; clean the probe inputs")
    return x


def _leaf_shapes(tree: Any) -> list[tuple[str, tuple[int, ...]]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), tuple(np.shape(leaf))) for path, leaf in flat]


def check_params(model: models.Model, params: Any, input_shape: tuple[int, ...],
                 *, name: str = "params", stacked: bool = False) -> None:
    """Check that ``params`` fit ``model``'s spec and inputs of per-example ``input_shape``.

    A mismatch only in a fan-in that depends on the input size blames ``x1``; anything else
    (layer count, keys, output widths) blames ``name``. With ``stacked`` every leaf carries a
    leading checkpoint axis. Also rejects NaN/Inf anywhere in the parameters.
    """
    if not isinstance(params, (tuple, list)) or len(params) != len(model.layers):
        got = len(params) if isinstance(params, (tuple, list)) else type(params).__name__
        raise NtkplastError(f"{name}: expected a tuple of {len(model.layers)} layer dicts for "
                            f"this model spec, got {got}; load parameters made for this spec")
    try:
        expected = jax.eval_shape(lambda k: model.init(k, input_shape), jax.random.PRNGKey(0))
    except NtkplastError as e:
        raise NtkplastError(f"x1: per-example shape {input_shape} does not fit the model: {e}") \
            from None
    for i, (p, e) in enumerate(zip(params, expected, strict=True)):
        if not isinstance(p, dict) or set(p) != set(e):
            got = sorted(p) if isinstance(p, dict) else type(p).__name__
            raise NtkplastError(f"{name}[{i}]: expected keys {sorted(e)}, got {got}; the "
                                f"parameters do not belong to this spec (use_bias?)")
        for key in e:
            shape = tuple(np.shape(p[key]))
            if stacked:
                shape = shape[1:]
            want = tuple(e[key].shape)
            if shape == want:
                continue
            input_dependent = key == "W" and shape[-1:] == want[-1:] and (
                i == 0 or model.layers[i].flatten)
            who = "x1" if input_dependent else f"{name}[{i}]['{key}']"
            raise NtkplastError(f"{who}: layer {i} weight {key!r} has shape {shape} but the spec "
                                f"with inputs of per-example shape {input_shape} needs {want}; "
                                f"check the probe input shape and that the parameters belong "
                                f"to this spec")
    leaves = jax.tree_util.tree_leaves(params)
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves):
        bad = [p for (p, s), leaf in zip(_leaf_shapes(params), leaves, strict=True)
               if not bool(jnp.all(jnp.isfinite(leaf)))]
        raise NtkplastError(f"{name}: NaN or Inf in {', '.join(bad)}; the checkpoint has "
                            f"diverged or is corrupt")


def auto_batch_size(n: int, bytes_per_point: float, budget_bytes: float) -> int | None:
    """Largest block size b with ``b · bytes_per_point ≤ budget`` (None: no blocking needed)."""
    if n * bytes_per_point <= budget_bytes:
        return None
    return max(1, min(n, int(budget_bytes // max(bytes_per_point, 1.0))))


def num_params(params: Any) -> int:
    """Total number of scalar parameters."""
    return sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params))
