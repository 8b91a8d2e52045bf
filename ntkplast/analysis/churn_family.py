"""The ``churn`` family: the rival explanations of :mod:`ntkplast.churn` at one checkpoint.

:func:`churn_family` returns rows ``(layer, metric, value)`` and raw arrays, as the families of
:mod:`ntkplast.analysis.families` do, comparing checkpoint t with the previous and the first
analysed checkpoints that the analysis's history names (``history.prev_index``,
``history.init_index``; the first is the initialisation when the analysis starts at checkpoint
0, as it does by default):

* ``output_churn`` and ``prediction_churn`` (layer ``"all"``): the change of the outputs on the
  probe inputs since the previous analysed checkpoint (:func:`ntkplast.churn.output_churn`,
  :func:`~ntkplast.churn.prediction_churn`; the latter only for K ≥ 2 outputs). **Absent** at
  the first analysed checkpoint, which has nothing before it (as ``kernel_distance_prev``).
* ``param_distance_init`` and ``param_distance_init_rel``: ‖θ_t − θ_0‖₂ and ‖θ_t − θ_0‖₂ /
  ‖θ_0‖₂ over every stored parameter (layer ``"all"``) and, for an ntkplast model, over each
  weight layer's parameters (W, b and any LayerNorm γ, β; ``"layer<l>"``, readout included).
  The stored θ: the free parameter of an orthogonal layer, W without the NTK multiplier. A
  function model's distance runs over its ``trainable`` entry where it names one (the
  parameters its NTK differentiates; BatchNorm statistics left out), else over the whole
  pytree, layer ``"all"`` only. **0** at the first analysed checkpoint (θ_0 itself).
* ``feature_norm`` and ``feature_variance`` per hidden layer (``"layer<l>"``,
  :func:`ntkplast.churn.feature_norm`, :func:`~ntkplast.churn.feature_variance` of a_l), from
  ``model.intermediates``: every ntkplast model, a function model with layer functions.
* ``saturation_fraction`` per hidden layer (:func:`ntkplast.churn.saturation_fraction` at the
  activation's input: z_l, or LN(z_l) under a post-norm), only where the run's activation
  (``run.spec.activation``) is bounded (:data:`ntkplast.churn.SATURATING`: tanh, erf, sigmoid);
  skipped otherwise and for function models, whose activation is not named. Raw arrays
  ``saturation_frequency/<l>``: each unit's fraction of saturated inputs.

Values that are not finite (a relative distance from an all-zero θ_0) are left out.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import jax
import numpy as np

from ntkplast import churn, models
from ntkplast.runs import checkpoints
from ntkplast.runs.function_models import FunctionSpec

__all__ = ["churn_family"]

Rows = list[tuple[str, str, float]]


class History(Protocol):
    """What the family reads of :class:`ntkplast.analysis.families.KernelHistory`: the indices
    of the first and previous analysed checkpoints (None before the first)."""

    init_index: int | None
    prev_index: int | None


@functools.partial(jax.jit, static_argnums=0)
def _outputs(model: Any, params: Any, x: jax.Array) -> jax.Array:
    return model.apply(params, x)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _layer_stats(model: Any, params: Any, x: jax.Array, activation: str | None
                 ) -> list[tuple[jax.Array, ...]]:
    """Per hidden layer: feature norm, feature variance and, with a bounded ``activation``,
    the saturation fraction and each unit's saturation frequency at φ's input (ntkplast models
    only)."""
    pre, post = model.intermediates(params, x)
    out = []
    for li, a in enumerate(post):
        stats: tuple[jax.Array, ...] = (churn.feature_norm(a), churn.feature_variance(a))
        if activation is not None:
            layer, p = model.layers[li], params[li]
            u = models.layer_norm(pre[li], p) if layer.post_norm else pre[li]
            stats += (churn.saturation_fraction(u, activation),
                      churn.saturation_frequency(u, activation))
        out.append(stats)
    return out


def _distance_rows(params: Any, init: Any, per_layer: bool) -> Rows:
    """``param_distance_init`` and ``_rel`` over the whole of ``params`` and, with
    ``per_layer``, over each element of the layer tuple."""
    parts = [("all", params, init)]
    if per_layer:
        parts += [(f"layer{li}", p, p0) for li, (p, p0) in enumerate(zip(params, init))]
    rows: Rows = []
    for name, p, p0 in parts:
        rows += [(name, "param_distance_init", float(churn.param_distance(p, p0))),
                 (name, "param_distance_init_rel", float(churn.relative_param_distance(p, p0)))]
    return rows


def churn_family(run: checkpoints.Run, params: Any, x: jax.Array, history: History
                 ) -> tuple[Rows, dict[str, np.ndarray]]:
    """Rows ``(layer, metric, value)`` and raw arrays of the ``churn`` family at one checkpoint
    (module docstring).

    Args:
      run: the run being analysed (its model, and the parameters of earlier checkpoints).
      params: this checkpoint's parameters, already checked.
      x: the probe inputs, ``N × input_shape``, already checked.
      history: the first and previous analysed checkpoints' indices (``init_index``,
        ``prev_index``), None at the first.

    Returns:
      ``(rows, raw)``: rows in the order output churn, prediction churn, distances (``"all"``
      then per layer), then per hidden layer feature norm, feature variance and saturation
      fraction; raw ``{"saturation_frequency/<l>": (d,)}`` where saturation is measured.
    """
    model = run.model
    function = isinstance(run.spec, FunctionSpec)
    rows: Rows = []
    prev = None
    if history.prev_index is not None:
        prev = run.params(history.prev_index)
        f_now, f_prev = _outputs(model, params, x), _outputs(model, prev, x)
        rows.append(("all", "output_churn", float(churn.output_churn(f_prev, f_now))))
        if f_now.shape[-1] >= 2:
            rows.append(("all", "prediction_churn",
                         float(churn.prediction_churn(f_prev, f_now))))
    if history.init_index is None:
        init = params
    else:
        init = (prev if history.init_index == history.prev_index
                else run.params(history.init_index))
    if function:  # the parameters the model's NTK differentiates
        rows += _distance_rows(model.split(params)[0], model.split(init)[0], per_layer=False)
    else:
        rows += _distance_rows(params, init, per_layer=True)
    raw: dict[str, np.ndarray] = {}
    if function and not model.layers:
        return [r for r in rows if np.isfinite(r[2])], raw
    activation = getattr(run.spec, "activation", None)
    saturating = activation if activation in churn.SATURATING and not function else None
    for li, stats in enumerate(jax.device_get(_layer_stats(model, params, x, saturating))):
        name = f"layer{li}"
        rows += [(name, "feature_norm", float(stats[0])),
                 (name, "feature_variance", float(stats[1]))]
        if saturating is not None:
            rows.append((name, "saturation_fraction", float(stats[2])))
            raw[f"saturation_frequency/{li}"] = np.asarray(stats[3])
    return [r for r in rows if np.isfinite(r[2])], raw
