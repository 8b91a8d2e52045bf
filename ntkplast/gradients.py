r"""Gradients of the training loss on a probe set: their norms, noise and "readiness".

L is the run's objective on the probe set (:func:`ntkplast.curvature.probe_loss`; for a
:class:`~ntkplast.adapters.function.FunctionModel` with ``trainable`` only that entry is
differentiated). With ḡ = ∇_θ L and, over m minibatches of the probe set, g_b the gradient of the
mean loss on minibatch b:

* **gradient norm** ‖∂L/∂θ_l‖ per layer and ‖∇_θ L‖ over all parameters
  (:func:`gradient_norms`);
* **gradient signal-to-noise** SNR = ‖ḡ‖² / ((1/m) Σ_b ‖g_b − ḡ‖²) (:func:`gradient_snr`);
* **optimization readiness** R = S·ρ, strength S = ‖ḡ‖², reliability ρ = ‖ḡ‖² / ((1/m) Σ_b
  ‖g_b‖²) (:func:`optimization_readiness`), after Wang et al. 2026 (arXiv 2605.09044,
  "Predicting plasticity in deep continual learning: a theoretical perspective"). **Our
  reconstruction**, not the paper's formula, which we could not retrieve: R is what the descent
  lemma guarantees, and the paper's constants and normalisation may differ.

Minibatches (:func:`minibatch_gradients`): with B = ⌊N/m⌋, minibatch b holds probe examples
b, b + m, …, b + (B − 1)m (strided, so a probe stored task by task puts every task in every
minibatch); the last N − mB examples are left out of the minibatches, and ḡ in SNR and R is
(1/m) Σ_b g_b, the gradient on the mB examples used: the full-probe gradient when m divides N.
The m gradients are taken at once, by ``jax.vmap`` of ``jax.grad`` (memory m·P).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ntkplast.adapters.function import FunctionModel
from ntkplast.convert.pytrees import path_name
from ntkplast.curvature import probe_loss, split_trainable
from ntkplast.errors import NtkplastError

Array = jax.Array

__all__ = ["GradientNorms", "Readiness", "gradient_norms", "gradient_snr", "layer_leaves",
           "minibatch_gradients", "optimization_readiness"]


def layer_leaves(model: Any, trained: Any) -> list[list[Any]]:
    """The leaves of the trained parameters grouped by layer, in the order the other families
    name ``layer0``, ``layer1``, …: one group per entry of an ntkplast model's parameter tuple;
    for a :class:`~ntkplast.adapters.function.FunctionModel`, one per module, as
    :func:`ntkplast.adapters.function.layer_names` lists them (the key path without its last
    name)."""
    if not isinstance(model, FunctionModel):
        return [jax.tree_util.tree_leaves(layer) for layer in trained]
    groups: dict[str, list[Any]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(trained)[0]:
        groups.setdefault(path_name(path).rpartition(".")[0] or "params", []).append(leaf)
    return list(groups.values())


def _loss_of_trained(model: Any, params: Any, objective: str) -> Any:
    _, rebuild = split_trainable(model, params)
    return lambda t, x, y: probe_loss(model, rebuild(t), x, y, objective=objective)


class GradientNorms(NamedTuple):
    """‖∇_θ L‖ over all trained parameters (``total``) and per layer (``layers``, ``(L,)``)."""

    total: float
    layers: np.ndarray


@functools.partial(jax.jit, static_argnames=("model", "objective"))
def _layer_sq_norms(model: Any, params: Any, x: Array, y: Array, objective: str) -> Array:
    trained = split_trainable(model, params)[0]
    grads = jax.grad(_loss_of_trained(model, params, objective))(trained, x, y)
    return jnp.stack([sum(jnp.sum(jnp.square(g)) for g in group)
                      for group in layer_leaves(model, grads)])


def gradient_norms(model: Any, params: Any, x: Array, y: Array, *,
                   objective: str = "cross_entropy") -> GradientNorms:
    r"""‖∂L/∂θ_l‖ for every layer l and ‖∇_θ L‖ = (Σ_l ‖∂L/∂θ_l‖²)^½ on the whole probe set.

    ``x``: inputs ``N × input_shape``; ``y``: labels ``(N,)`` (cross-entropy) or targets
    ``N × K`` (mse). θ_l are the leaves of layer l (:func:`layer_leaves`: weights, biases and
    any norm parameters). Squared norms in the parameters' dtype, the total and the roots in
    float64.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import gradients
      >>> from ntkplast.adapters.function import FunctionModel
      >>> model = FunctionModel(lambda p, x: x @ p["dense"]["w"] + p["out"]["b"])
      >>> params = {"dense": {"w": jnp.ones((1, 1))}, "out": {"b": jnp.zeros(1)}}
      >>> x, y = jnp.array([[1.0], [3.0]]), jnp.zeros((2, 1))
      >>> g = gradients.gradient_norms(model, params, x, y, objective="mse")
      >>> print(f"{g.total:.3f}", [f"{v:.1f}" for v in g.layers])   # ∂L/∂w = 10, ∂L/∂b = 4
      10.770 ['10.0', '4.0']
    """
    sq = np.asarray(_layer_sq_norms(model, params, jnp.asarray(x), jnp.asarray(y), objective),
                    np.float64)
    return GradientNorms(float(np.sqrt(sq.sum())), np.sqrt(sq))


@functools.partial(jax.jit, static_argnames=("model", "num_batches", "objective"))
def _minibatch_gradients(model: Any, params: Any, x: Array, y: Array, num_batches: int,
                         objective: str) -> Array:
    m = num_batches
    size = x.shape[0] // m

    def batches(a: Array) -> Array:  # B·m examples → m × B, minibatch b = rows b, b + m, …
        return jnp.swapaxes(a[:size * m].reshape(size, m, *a.shape[1:]), 0, 1)

    trained = split_trainable(model, params)[0]
    grad = jax.grad(_loss_of_trained(model, params, objective))
    return jax.vmap(lambda xb, yb: ravel_pytree(grad(trained, xb, yb))[0])(batches(x),
                                                                          batches(y))


def minibatch_gradients(model: Any, params: Any, x: Array, y: Array, *, num_batches: int,
                        objective: str = "cross_entropy") -> Array:
    """The gradients g_1 … g_m of the mean loss on m minibatches of the probe set, ``(m, P)``.

    ``x``: inputs ``N × input_shape``; ``y``: labels ``(N,)`` or targets ``N × K``. Minibatch b
    holds examples b, b + m, …, b + (B − 1)m, B = ⌊N/m⌋ (module docstring); each row is the
    trained parameters' gradient flattened as ``jax.flatten_util.ravel_pytree`` orders it. All m
    by one ``jax.vmap`` of ``jax.grad``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import gradients
      >>> from ntkplast.adapters.function import FunctionModel
      >>> model = FunctionModel(lambda w, x: x @ w)
      >>> x, y = jnp.array([[1.0], [2.0], [3.0], [4.0]]), jnp.zeros((4, 1))
      >>> g = gradients.minibatch_gradients(model, jnp.ones((1, 1)), x, y, num_batches=2,
      ...                                   objective="mse")
      >>> print(g.shape, g[:, 0].tolist())          # (2/B) Σ x_i² over {1, 3} and {2, 4}
      (2, 1) [10.0, 20.0]
    """
    n = int(np.shape(x)[0])
    if not 2 <= num_batches <= n:
        raise NtkplastError(f"num_batches: expected 2 ≤ m ≤ N = {n}, got {num_batches}")
    return _minibatch_gradients(model, params, jnp.asarray(x), jnp.asarray(y), num_batches,
                                objective)


def gradient_snr(grads: Array) -> Array:
    r"""Gradient signal-to-noise SNR = ‖ḡ‖² / ((1/m) Σ_b ‖g_b − ḡ‖²), ḡ = (1/m) Σ_b g_b.

    ``grads``: minibatch gradients ``(m, P)`` (:func:`minibatch_gradients`). The estimator: the
    numerator is the squared norm of the mean gradient (not debiased), the denominator the total
    variance tr Cov(g_b) of the m minibatch gradients about their mean, divisor m (the plug-in
    estimate: the exact variance of a minibatch drawn uniformly from this partition). It is the
    SNR of a size-B minibatch gradient, so it grows about ∝ B. A scalar; inf when every g_b = ḡ
    ≠ 0, NaN when all are 0.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import gradients
      >>> g = jnp.array([[1.0, 0.0], [3.0, 0.0]])    # ḡ = (2, 0), deviations ±1
      >>> print(f"{gradients.gradient_snr(g):.1f}")
      4.0
    """
    grads = jnp.asarray(grads)
    mean = jnp.mean(grads, axis=0)
    return jnp.sum(mean * mean) / jnp.mean(jnp.sum(jnp.square(grads - mean), axis=1))


class Readiness(NamedTuple):
    """Strength S = ‖ḡ‖², reliability ρ ∈ [0, 1] and readiness R = S·ρ
    (:func:`optimization_readiness`); scalars."""

    strength: Array
    reliability: Array
    readiness: Array


def optimization_readiness(grads: Array) -> Readiness:
    r"""Optimization readiness R = S·ρ of minibatch gradients ``grads`` ``(m, P)``.

    Our reconstruction of Wang et al. 2026 (arXiv 2605.09044) from the descent lemma it builds on;
    the paper's exact formula, constants and normalisation may differ. With ḡ = (1/m) Σ_b g_b,

        S = ‖ḡ‖²,   ρ = ‖ḡ‖² / ((1/m) Σ_b ‖g_b‖²),   R = S·ρ = ‖ḡ‖⁴ / ((1/m) Σ_b ‖g_b‖²).

    Since (1/m) Σ_b ‖g_b‖² = ‖ḡ‖² + (1/m) Σ_b ‖g_b − ḡ‖², ρ = SNR/(1 + SNR) ∈ [0, 1]
    (:func:`gradient_snr`). For an L-smooth loss and one SGD step θ − η g_b on a minibatch drawn
    uniformly, E L(θ − η g_b) ≤ L(θ) − η‖ḡ‖² + (Lη²/2) E‖g_b‖²; the best step η* = ‖ḡ‖²/(L E‖g_b‖²)
    guarantees an expected decrease of at least R/(2L). R = 0 (and ρ = 0) when every g_b is 0.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import gradients
      >>> r = gradients.optimization_readiness(jnp.array([[1.0, 0.0], [3.0, 0.0]]))
      >>> print(f"{r.strength:.1f} {r.reliability:.1f} {r.readiness:.1f}")   # 4, 4/5, 16/5
      4.0 0.8 3.2
    """
    grads = jnp.asarray(grads)
    mean = jnp.mean(grads, axis=0)
    strength = jnp.sum(mean * mean)
    second = jnp.mean(jnp.sum(jnp.square(grads), axis=1))
    reliability = jnp.where(second > 0, strength / jnp.where(second > 0, second, 1.0), 0.0)
    return Readiness(strength, reliability, strength * reliability)
