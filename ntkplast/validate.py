"""Boundary checks shared by every diagnostic: parameters against a spec, and probe inputs.

Each check raises :class:`NtkplastError` naming the argument (``params[1]['W']``, ``x1``) and
what to do, so engines, isometry, dormancy, the run-folder reader and the PyTorch importer report
bad input the same way. :func:`expected_param_shapes` is the one definition of the parameter
shapes a spec draws for an input shape; :func:`check_number` the one range check of a scalar
option. :func:`legacy_arguments` keeps a renamed or moved argument working for one release.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models
from ntkplast.errors import NtkplastError

__all__ = ["check_inputs", "check_number", "check_params", "check_probe_set",
           "expected_param_shapes", "legacy_arguments", "param_shapes"]

Shapes = tuple[dict[str, tuple[int, ...]], ...]
F = TypeVar("F", bound=Callable[..., Any])


def param_shapes(params: Any) -> Shapes:
    """The shape of every leaf, layer by layer: ``({"W": (d_in, d_out), "b": (d_out,)}, …)``."""
    return tuple({k: tuple(np.shape(p[k])) for k in sorted(p)} for p in params)


@functools.lru_cache(maxsize=64)
def _abstract_init(model: models.Model, input_shape: tuple[int, ...]
                   ) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]:
    shapes = jax.eval_shape(lambda k: model.init(k, input_shape), jax.random.PRNGKey(0))
    return tuple(tuple((k, tuple(s.shape)) for k, s in sorted(p.items())) for p in shapes)


def expected_param_shapes(model: models.Model, input_shape: Sequence[int]) -> Shapes:
    """The shapes of the parameters ``model.init(key, input_shape)`` draws (never drawing them).

    Same layout as :func:`param_shapes`, so ``param_shapes(params) == expected_param_shapes(...)``
    says whether ``params`` fit the spec on inputs of per-example shape ``input_shape``. Traced
    once per (model, input shape) by ``jax.eval_shape`` and cached. Raises
    :class:`NtkplastError` when the input shape does not fit the spec (e.g. a CNN's pooling).
    """
    return tuple(dict(p) for p in _abstract_init(model, tuple(int(s) for s in input_shape)))


def check_number(name: str, value: Any, *, low: float = 0.0, high: float = math.inf,
                 open_high: bool = False) -> float:
    """``value`` as a float in ``[low, high]`` (``[low, high)`` with ``open_high``), or raise.

    Without an upper bound the number must be finite and the message reads ``expected a finite
    number >= low``; with one, ``expected a number in [low, high]``.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    above = v < high if open_high else v <= high
    if not (math.isfinite(v) and low <= v and above):
        if math.isinf(high):
            want = f"a finite number >= {low:g}"
        else:
            want = f"a number in [{low:g}, {high:g}{')' if open_high else ']'}"
        raise NtkplastError(f"{name}: expected {want}, got {value!r}")
    return v


def legacy_arguments(*, positional: Sequence[str] = (), after: int = 0,
                     renamed: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Decorator: the old call spellings of a function keep working for one release.

    Args:
      positional: names, in their old order, of the parameters that used to be positional from
        position ``after`` on and are keyword-only now (old names, if also ``renamed``);
        positional arguments past ``after`` are passed to them by their new names.
      after: how many positional parameters the new signature has.
      renamed: ``{old keyword: new keyword}``.

    Each old spelling emits a ``DeprecationWarning`` that names the new one.
    """
    renamed = dict(renamed or {})

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if positional and len(args) > after:
                extra = args[after:]
                if len(extra) > len(positional):
                    raise TypeError(f"{fn.__name__}() takes {after + len(positional)} "
                                    f"positional arguments at most, got {len(args)}")
                names = [renamed.get(n, n) for n in positional[:len(extra)]]
                _deprecated(f"{fn.__name__}: passing {', '.join(names)} by position is "
                            f"deprecated; pass {', '.join(f'{n}=' for n in names)} by keyword")
                for name, value in zip(names, extra):
                    if name in kwargs:
                        raise TypeError(f"{fn.__name__}() got multiple values for {name!r}")
                    kwargs[name] = value
                args = args[:after]
            for old, new in renamed.items():
                if old in kwargs:
                    _deprecated(f"{fn.__name__}: {old}= is deprecated; it is now {new}=")
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {old}= and {new}=")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)
        return call  # type: ignore[return-value]
    return wrap


def _deprecated(message: str) -> None:
    warnings.warn(f"{message} (the old spelling will be removed in a later release)",
                  DeprecationWarning, stacklevel=3)


def check_inputs(name: str, x: Any, model: models.Model | None, *, like: Any = None,
                 like_name: str = "x1") -> jax.Array:
    """Return probe inputs ``x`` (``N × input_shape``) as a float array, or raise.

    Rejects a non-array, a missing batch axis, an empty probe set, a CNN input that is not
    ``N × H × W × C`` (``model=None``: a model of unknown layout, not checked), a per-example
    shape differing from ``like``'s, and NaN/Inf.
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
    if model is not None and model.spec.kind == "cnn" and x.ndim != 4:
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
        if layer.has_norm and spec.layer_norm_affine:
            want_keys |= {"ln_scale", "ln_bias"}
        if not isinstance(p, Mapping) or set(p) != want_keys:
            got = sorted(p) if isinstance(p, Mapping) else type(p).__name__
            raise NtkplastError(f"{name}[{i}]: expected keys {sorted(want_keys)}, got {got}; "
                                f"the parameters do not belong to this spec (use_bias? "
                                f"layer_norm_affine?)")
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
        norm_width = w_shape[-2] if layer.pre_norm else width
        for key in ("ln_scale", "ln_bias"):
            if key in p and tuple(np.shape(p[key]))[lead:] != (norm_width,):
                raise NtkplastError(f"{name}[{i}]['{key}']: expected shape ({norm_width},), got"
                                    f" {tuple(np.shape(p[key]))[lead:]}")
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
        expected = expected_param_shapes(model, input_shape)
    except NtkplastError as e:
        raise NtkplastError(f"{input_name}: per-example shape {input_shape} does not fit the "
                            f"model: {e}") from None
    for i, (p, e) in enumerate(zip(params, expected)):
        shape, want = tuple(np.shape(p["W"]))[lead:], e["W"]
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
