"""Boundary checks shared by every diagnostic: parameters against a spec, and probe inputs.

Each check raises :class:`NtkplastError` naming the argument (``params[1]['W']``, ``x1``) and
what to do, so engines, isometry and dormancy report bad input the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models
from ntkplast.errors import NtkplastError


def check_inputs(name: str, x: Any, model: models.Model, *, like: Any = None,
                 like_name: str = "x1") -> jax.Array:
    """Return probe inputs ``x`` (``N × input_shape``) as a float array, or raise.

    Rejects a non-array, a missing batch axis, an empty probe set, a CNN input that is not
    ``N × H × W × C``, a per-example shape differing from ``like``'s, and NaN/Inf.
    """
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError) as e:
        raise NtkplastError(f"{name}: expected an array of probe inputs, got {type(x)} ({e})") \
            from None
    if x.ndim < 2:
        raise NtkplastError(f"{name}: expected a batch of probe inputs with shape N × input_shape,"
                            f" got shape {x.shape}; add the batch axis (x[None]) for one input")
    if x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
        raise NtkplastError(f"{name}: the probe set is empty (shape {x.shape}); pass at least "
                            f"one input")
    if model.spec.kind == "cnn" and x.ndim != 4:
        raise NtkplastError(f"{name}: a cnn takes images N × H × W × C, got shape {x.shape}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise NtkplastError(f"{name}: per-example shape {x.shape[1:]} differs from "
                            f"{like_name}'s {like.shape[1:]}; both probe sets must have the "
                            f"same input shape")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if not bool(jnp.all(jnp.isfinite(x))):
        raise NtkplastError(f"{name}: contains NaN or Inf; clean the probe inputs")
    return x


def check_params(model: models.Model, params: Any, input_shape: tuple[int, ...] | None = None,
                 *, name: str = "params", input_name: str = "x1", stacked: bool = False) -> None:
    """Check that ``params`` belong to ``model``'s spec and are finite.

    Always: the layer count, the keys (``W``, and ``b`` iff the spec uses biases), each weight's
    rank (2 for Dense, 4 for HWIO Conv) and kernel size, each layer's output width and bias
    shape. With ``input_shape``: also every fan-in, against parameters the spec would draw for
    inputs of that per-example shape; a fan-in that only the input size decides blames
    ``input_name``. With ``stacked`` every leaf carries a leading checkpoint axis.
    """
    spec = model.spec
    if not isinstance(params, tuple | list) or len(params) != len(model.layers):
        got = f"{len(params)} layers" if isinstance(params, tuple | list) else type(params)
        raise NtkplastError(f"{name}: expected a tuple of {len(model.layers)} layer dicts for "
                            f"this model spec, got {got}; load parameters made for this spec")
    lead = 1 if stacked else 0
    for i, (layer, p, width) in enumerate(zip(model.layers, params, models.out_widths(spec))):
        want_keys = {"W", "b"} if spec.use_bias else {"W"}
        if not isinstance(p, Mapping) or set(p) != want_keys:
            got = sorted(p) if isinstance(p, Mapping) else type(p).__name__
            raise NtkplastError(f"{name}[{i}]: expected keys {sorted(want_keys)}, got {got}; "
                                f"the parameters do not belong to this spec (use_bias?)")
        w_shape = tuple(np.shape(p["W"]))[lead:]
        k = spec.kernel_size
        ok = (len(w_shape) == 4 and w_shape[:2] == (k, k)) if layer.kind == "conv" else \
            len(w_shape) == 2
        if not ok or w_shape[-1] != width:
            want = f"({k}, {k}, c_in, {width})" if layer.kind == "conv" else f"(d_in, {width})"
            raise NtkplastError(f"{name}[{i}]['W']: expected shape {want} for this spec, got "
                                f"{w_shape}; load parameters made for this spec")
        if "b" in p and tuple(np.shape(p["b"]))[lead:] != (width,):
            raise NtkplastError(f"{name}[{i}]['b']: expected shape ({width},), got "
                                f"{tuple(np.shape(p['b']))[lead:]}")
    if input_shape is not None:
        _check_fan_ins(model, params, tuple(input_shape), name, input_name, lead)
    for i, p in enumerate(params):
        for key, leaf in p.items():
            if not bool(jnp.all(jnp.isfinite(jnp.asarray(leaf)))):
                raise NtkplastError(f"{name}[{i}]['{key}']: contains NaN or Inf; the "
                                    f"checkpoint has diverged or is corrupt")


def _check_fan_ins(model: models.Model, params: Any, input_shape: tuple[int, ...], name: str,
                   input_name: str, lead: int) -> None:
    try:
        expected = jax.eval_shape(lambda k: model.init(k, input_shape), jax.random.PRNGKey(0))
    except NtkplastError as e:
        raise NtkplastError(f"{input_name}: per-example shape {input_shape} does not fit the "
                            f"model: {e}") from None
    for i, (p, e) in enumerate(zip(params, expected)):
        shape, want = tuple(np.shape(p["W"]))[lead:], tuple(e["W"].shape)
        if shape != want:
            input_dependent = i == 0 or model.layers[i].flatten
            who = input_name if input_dependent else f"{name}[{i}]['W']"
            raise NtkplastError(f"{who}: layer {i} weight has shape {shape} but the spec with "
                                f"inputs of per-example shape {input_shape} needs {want}; check "
                                f"the probe input shape and that the parameters belong to this "
                                f"spec")


def check_probe_set(model: models.Model, params: Any, x: Any, *, name: str = "x") -> jax.Array:
    """:func:`check_inputs` on ``x`` and :func:`check_params` with its input shape."""
    x = check_inputs(name, x, model)
    check_params(model, params, tuple(x.shape[1:]), input_name=name)
    return x
