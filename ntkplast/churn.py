r"""Rival explanations of plasticity loss: output churn, parameter drift, feature scale, saturation.

The NTK diagnostics compete with simpler accounts of why a network stops learning; this module
measures those, each on the probe inputs x_1 … x_N (or on the parameters alone):

* **Output churn** between two checkpoints t − 1 and t with logits f ∈ R^K:
  C_out = (1/N) Σ_n ‖f_t(x_n) − f_{t−1}(x_n)‖² / K, the mean squared change per output. Tang &
  Berseth (2024, "Improving deep reinforcement learning by reducing the chain effect of value and
  policy churn", NeurIPS) define *value churn* as the change of a network's outputs on inputs
  that the update did not train on; C_out is its squared-norm form between checkpoints, on the
  probe set.
* **Prediction churn**: the fraction of probe inputs whose argmax changes,
  (1/N) Σ_n 1[argmax f_t(x_n) ≠ argmax f_{t−1}(x_n)]: Schaul, Barreto, Quan & Ostrovski's
  (2022, "The phenomenon of policy churn", NeurIPS) *policy churn*, the fraction of states whose
  greedy action changes, with classes for actions. Meaningful for classification (K ≥ 2).
* **Parameter distance from initialisation** ‖θ_t − θ_0‖₂ over every stored parameter, and
  relative ‖θ_t − θ_0‖₂ / ‖θ_0‖₂ (Lyle, Zheng, Nikishin, Pires, Pascanu & Dabney 2023,
  "Understanding plasticity in neural networks", ICML, discuss the parameter norm and the
  distance travelled as candidate explanations). On any pytree; per layer by passing one
  layer's parameters.
* **Feature norm** (1/N) Σ_n ‖a_l(x_n)‖₂ of a hidden layer's post-activations (for a conv
  layer the norm runs over all H·W·d entries of a_l(x_n)), and **feature variance**
  (1/d) Σ_i Var_x[a_{l,i}(x)], each unit's variance over the inputs (conv: over the input ×
  position pairs, unit i being channel i as in :mod:`ntkplast.dormancy`), averaged over units.
* **Saturation** of bounded activations (tanh, erf, sigmoid), the counterpart of a dead ReLU:
  with the normalised slope s(u) = |φ'(u)| / max_v |φ'(v)| at the activation's input u (the
  pre-activation z, or LN(z) under a post-norm), unit i is *saturated on* input x when
  s(u_i(x)) < δ (δ = 0.01: 1% of the steepest slope; tanh: |u| > 2.99, erf: |u| > 2.15,
  sigmoid: |u| > 5.99), and *saturated* when that holds on at least a fraction q = 0.99 of the
  probe inputs (conv: input × position pairs). The rule is ours, by analogy with Dohare et
  al.'s (2024, "Loss of plasticity in deep continual learning") frequency rule for ReLU units
  (dormant when active on under 1% of inputs): a saturated unit passes a gradient above 1% of
  the activation's best on at most 1% of the inputs.

Arrays are ``jax.Array`` in and out; every function is pure and jit-compatible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ntkplast.errors import NtkplastError

Array = jax.Array

__all__ = ["SATURATING", "feature_norm", "feature_variance", "normalized_slope",
           "output_churn", "param_distance", "param_norm", "prediction_churn",
           "relative_param_distance", "saturation_fraction", "saturation_frequency"]

SATURATING: dict[str, Callable[[Array], Array]] = {
    "tanh": lambda u: 1.0 - jnp.tanh(u) ** 2,                       # φ' = 1 − tanh², max 1
    "erf": lambda u: jnp.exp(-u ** 2),                              # φ' = (2/√π) e^{−u²}
    "sigmoid": lambda u: 4.0 * jax.nn.sigmoid(u) * jax.nn.sigmoid(-u),   # φ' = σ(1 − σ), max 1/4
}
"""Bounded activations and their normalised slopes s(u) = |φ'(u)| / max|φ'| ∈ (0, 1]."""


def output_churn(f_prev: Array, f_now: Array) -> Array:
    """Output churn (1/N) Σ_n ‖f_now(x_n) − f_prev(x_n)‖² / K (Tang & Berseth 2024's value
    churn in squared form; module docstring).

    ``f_prev``, ``f_now``: the two checkpoints' outputs on the same probe inputs, ``(N, K)``.
    Returns a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> f0 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> float(churn.output_churn(f0, f0))
      0.0
      >>> float(churn.output_churn(f0, f0 + jnp.array([[2.0, 0.0], [0.0, 0.0]])))   # 4 / (2·2)
      1.0
    """
    diff = jnp.asarray(f_now) - jnp.asarray(f_prev)
    return jnp.mean(diff ** 2)


def prediction_churn(f_prev: Array, f_now: Array) -> Array:
    """Fraction of probe inputs whose predicted class (argmax) changes, (1/N) Σ_n
    1[argmax f_now(x_n) ≠ argmax f_prev(x_n)] (Schaul et al. 2022's policy churn).

    ``f_prev``, ``f_now``: ``(N, K)`` outputs; ties go to the first maximal class. Returns a
    scalar in [0, 1] (always 0 for K = 1).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> f0 = jnp.array([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
      >>> f1 = jnp.array([[0.0, 1.0], [0.0, 1.0], [3.0, 0.0], [9.0, 5.0]])   # two flip
      >>> float(churn.prediction_churn(f0, f1))
      0.5
    """
    return jnp.mean(jnp.argmax(jnp.asarray(f_prev), -1) != jnp.argmax(jnp.asarray(f_now), -1))


def param_norm(params: Any) -> Array:
    """‖θ‖₂ = (Σ over every leaf and entry θ²)^½ of a parameter pytree (any structure; the
    ntkplast layout's tuple of ``{"W", "b"}`` dicts, a Flax dict, one array of any shape).
    Returns a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> float(churn.param_norm({"W": jnp.array([[3.0]]), "b": jnp.array([4.0])}))
      5.0
    """
    leaves = jax.tree_util.tree_leaves(params)
    return jnp.sqrt(sum((jnp.sum(jnp.asarray(v) ** 2) for v in leaves), jnp.float32(0.0)))


def param_distance(params: Any, init: Any) -> Array:
    """Distance ‖θ − θ_0‖₂ between two pytrees of the same structure and shapes (all leaves
    together, any shape each; module docstring). Returns a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> theta0 = ({"W": jnp.zeros((2, 2)), "b": jnp.zeros(2)},)
      >>> theta = ({"W": jnp.array([[3.0, 0.0], [0.0, 0.0]]), "b": jnp.array([0.0, 4.0])},)
      >>> float(churn.param_distance(theta, theta0)), float(churn.param_distance(theta, theta))
      (5.0, 0.0)
    """
    return param_norm(jax.tree_util.tree_map(lambda a, b: jnp.asarray(a) - jnp.asarray(b),
                                             params, init))


def relative_param_distance(params: Any, init: Any) -> Array:
    """Relative distance ‖θ − θ_0‖₂ / ‖θ_0‖₂ (Lyle et al. 2023; module docstring) of two
    pytrees of the same structure (any shapes). Returns a scalar; NaN where ‖θ_0‖ = 0 (biases
    initialised at zero, say: no scale to compare with).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> theta0 = {"W": jnp.array([3.0, 4.0])}
      >>> float(churn.relative_param_distance({"W": jnp.array([3.0, 9.0])}, theta0))   # 5 / 5
      1.0
      >>> bool(jnp.isnan(churn.relative_param_distance({"b": jnp.ones(2)}, {"b": jnp.zeros(2)})))
      True
    """
    base = param_norm(init)
    return jnp.where(base > 0, param_distance(params, init) / jnp.where(base > 0, base, 1.0),
                     jnp.nan)


def feature_norm(acts: Array) -> Array:
    """Mean feature norm (1/N) Σ_n ‖a(x_n)‖₂ of one layer's post-activations.

    ``acts``: ``(N, d)`` or ``(N, H, W, d)`` (the norm then runs over all H·W·d entries of one
    input's activations). Returns a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> float(churn.feature_norm(jnp.array([[3.0, 4.0], [0.0, 1.0]])))   # (5 + 1) / 2
      3.0
    """
    acts = jnp.asarray(acts)
    return jnp.mean(jnp.sqrt(jnp.sum(acts.reshape(acts.shape[0], -1) ** 2, axis=1)))


def feature_variance(acts: Array) -> Array:
    """Mean unit variance (1/d) Σ_i Var_x[a_i(x)] of one layer (population variance over the
    inputs; conv: over the input × position pairs, unit i = channel i).

    ``acts``: ``(N, d)`` or ``(N, H, W, d)``. Returns a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> acts = jnp.array([[0.0, 1.0], [2.0, 1.0]])    # variances 1 and 0
      >>> float(churn.feature_variance(acts))
      0.5
    """
    acts = jnp.asarray(acts)
    return jnp.mean(jnp.var(acts.reshape(-1, acts.shape[-1]), axis=0))


def normalized_slope(u: Array, activation: str) -> Array:
    """s(u) = |φ'(u)| / max_v |φ'(v)| of a bounded activation (:data:`SATURATING`: ``tanh``,
    ``erf``, ``sigmoid``), elementwise.

    ``u``: the activation's input, any shape. Returns an array of ``u``'s shape in [0, 1].

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> print([f"{s:.3f}" for s in churn.normalized_slope(jnp.array([0.0, 1.0, 3.0]), "tanh")])
      ['1.000', '0.420', '0.010']
    """
    try:
        slope = SATURATING[activation]
    except KeyError:
        raise NtkplastError(f"activation: {activation!r} is not a bounded activation; choose one "
                         f"of {list(SATURATING)}") from None
    return slope(jnp.asarray(u))


def _saturated_counts(u: Array, activation: str, delta: float) -> tuple[Array, int]:
    """Per unit, on how many of the n inputs (× positions) s(u) < δ; and n."""
    u = jnp.asarray(u)
    flat = u.reshape(-1, u.shape[-1])
    return jnp.sum(normalized_slope(flat, activation) < delta, axis=0), flat.shape[0]


def saturation_frequency(u: Array, activation: str, *, delta: float = 0.01) -> Array:
    """Per unit, the fraction of inputs (conv: input × position pairs) on which it is
    saturated, s(u) < δ (:func:`normalized_slope`).

    ``u``: the activation's inputs ``(N, d)`` or ``(N, H, W, d)``. Returns ``(d,)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> u = jnp.array([[5.0, 0.0], [-4.0, 0.5], [0.1, -6.0], [9.0, 0.0]])
      >>> churn.saturation_frequency(u, "tanh").tolist()
      [0.75, 0.25]
    """
    counts, n = _saturated_counts(u, activation, delta)
    return counts / n


def saturation_fraction(u: Array, activation: str, *, delta: float = 0.01,
                        frequency: float = 0.99) -> Array:
    """Fraction of a layer's units that are saturated, s(u) < δ on at least a fraction
    ``frequency`` of the n inputs, i.e. on ⌈frequency · n⌉ of them or more, counted exactly
    (module docstring: our rule, after Dohare et al. 2024's).

    ``u``: the activation's inputs ``(N, d)`` or ``(N, H, W, d)``. Returns a scalar in [0, 1].

    Examples:
      Unit 0 is beyond |u| = 3 on every input, unit 1 on one input of two, unit 2 never:

      >>> import jax.numpy as jnp
      >>> from ntkplast import churn
      >>> u = jnp.array([[4.0, 6.0, 0.0], [-5.0, 0.2, 1.0]])
      >>> print(f"{float(churn.saturation_fraction(u, 'tanh')):.3f}")
      0.333
      >>> print(f"{float(churn.saturation_fraction(u, 'tanh', frequency=0.5)):.3f}")
      0.667
    """
    counts, n = _saturated_counts(u, activation, delta)
    return jnp.mean(counts >= math.ceil(frequency * n - 1e-9))
