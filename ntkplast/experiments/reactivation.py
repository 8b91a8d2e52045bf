r"""Reactivation of dead ReLU units: plant them, train, count how many fire again.

A hidden ReLU unit i of layer l is **dead** on inputs X when a_{l,i}(x) = 0 for every x ∈ X
(:func:`ntkplast.dormancy.dead_units`). Its incoming column w_i and bias b_i then receive no task
gradient (φ'(z_i) = 0 on every input) and neither does its outgoing row of W_{l+1} (a_i = 0), so
∇L alone cannot revive a dead unit of the first hidden layer; deeper ones can come back only
because the layers below them move. The isometry gradient ∇R(W) = 2·M(MᵀM − s'I) (column i:
2[w_i(‖w_i‖² − s') + Σ_{j≠i} w_j(w_jᵀw_i)]) does not pass through φ', so it moves dead columns
whatever the data (paper_notes.md, "Why the isometry gradient moves dead units"). This module
measures whether that revives them:

* :func:`plant_dead_units` kills a random fraction of each hidden layer's units;
* :func:`revived_fraction` counts the initially dead units that fire again;
* :func:`reactivation_curve` trains (with :func:`ntkplast.training.make_trainer`, the one training
  step) and records the revived fraction every few steps;
* :data:`ARMS` / :func:`make_arm` name the compared methods: plain Adam (the control), the
  isometry step alone, AdamO, L2 and ReDo.

MLPs with ReLU only: a CNN channel is dead when it is zero at every position, which the planting
below does not guarantee in the same closed form (not implemented; raises NtkplastError).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkplast import models, training
from ntkplast.errors import NtkplastError
from ntkplast.regularizers import decoupled, make_hooks

Array = jax.Array
Params = models.Params
PLANT_METHODS = ("bias", "sign")

__all__ = ["ARMS", "PLANT_METHODS", "Revived", "make_arm", "plant_dead_units",
           "reactivation_curve", "revived_fraction"]

# name -> what the arm does (make_arm builds it)
ARMS: dict[str, str] = {
    "adam": "Adam on the task loss alone (the control)",
    "isometry_step": "the isometry step alone, no task gradient: W ← W − η·λ·∇R(W)",
    "adamo": "AdamO: Adam on the task loss, then the isometry step (regularizers.adamo)",
    "l2": "Adam on the task loss + λ‖θ‖² (regularizers.l2_penalty, biases included)",
    "redo": "Adam, and ReDo re-draws τ-dormant units every k steps (regularizers.redo)",
}


def _check_mlp(model: models.Model) -> None:
    if model.spec.kind != "mlp":
        raise NtkplastError(f"reactivation: only kind='mlp' is supported (dead channels of a "
                            f"CNN are not planted), got kind={model.spec.kind!r}")
    if model.spec.activation != "relu":
        raise NtkplastError(f"reactivation: dead units need a ReLU network (zero on a half "
                            f"line), got activation={model.spec.activation!r}")
    if not model.spec.widths:
        raise NtkplastError("reactivation: the model has no hidden layer")


def _check_masks(model: models.Model, dead_masks: Sequence[Array]) -> list[np.ndarray]:
    masks = [np.asarray(m, dtype=bool) for m in dead_masks]
    widths = model.spec.widths
    if len(masks) != len(widths) or any(m.shape != (w,) for m, w in zip(masks, widths)):
        raise NtkplastError(f"dead_masks: expected one boolean mask per hidden layer with "
                            f"shapes {[(w,) for w in widths]}, got "
                            f"{[m.shape for m in masks]}")
    return masks


def plant_dead_units(model: models.Model, params: Params, x: Array, fraction: float, *,
                     how: str = "bias", margin: float = 0.1,
                     key: Array) -> tuple[Params, tuple[np.ndarray, ...]]:
    r"""Kill a random ``fraction`` of every hidden layer's units on the inputs ``x``.

    In each hidden layer l (first to last, so layer l sees the inputs that the already planted
    layers below it produce) k_l = round(fraction·d_l) units are drawn without replacement, and
    with u_i(x) = m_W·(a_{l-1}(x) W_l)_i the pre-activation without bias:

    * ``how="bias"``: b_i ← −(max_{x∈X} u_i(x) + margin) / m_b, so z_i(x) ≤ −margin on every x.
      Needs biases and m_b > 0. Only those biases change.
    * ``how="sign"``: w_i ← −|w_i| and b_i ← −margin / m_b (when the layer has a bias with
      m_b > 0). Valid when the layer's inputs are ≥ 0 (true after a ReLU; the first layer needs
      nonnegative data), so z_i(x) ≤ −margin (or ≤ 0 without a bias). The column keeps its norm,
      so the isometry gradient is not trivially zero on it.

    Args:
      model: a ReLU MLP.
      params: its parameters.
      x: ``N × input_shape`` inputs on which the units must be dead.
      fraction: in [0, 1].
      how: ``"bias"`` or ``"sign"`` (above).
      margin: ≥ 0, how far below zero the largest pre-activation is pushed.
      key: PRNG key choosing the units (one split per hidden layer).

    Returns:
      (params, masks): the new parameters and one boolean ``(d_l,)`` mask of the planted units
      per hidden layer (units that were already dead are not in it).
    """
    _check_mlp(model)
    if how not in PLANT_METHODS:
        raise NtkplastError(f"how: expected one of {list(PLANT_METHODS)}, got {how!r}")
    f = float(fraction)
    if not 0.0 <= f <= 1.0:
        raise NtkplastError(f"fraction: expected a number in [0, 1], got {fraction!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise NtkplastError(f"margin: expected a finite number >= 0, got {margin!r}")
    x = jnp.asarray(x)
    params = [dict(p) for p in params]
    keys = jax.random.split(key, len(model.spec.widths))
    masks = []
    for li, (layer, k) in enumerate(zip(model.layers[:-1], keys)):
        w = params[li]["W"]
        d = w.shape[-1]
        chosen = np.asarray(jax.random.permutation(k, d))[:round(f * d)]
        mask = np.zeros(d, bool)
        mask[chosen] = True
        masks.append(mask)
        m_w, m_b = models.multipliers(model, layer, w)
        has_bias = "b" in params[li] and m_b != 0
        if how == "bias" and not has_bias:
            raise NtkplastError("how='bias' needs layers with biases and a nonzero bias "
                                "multiplier (use_bias=True; for the ntk parameterization "
                                "b_std > 0); use how='sign'")
        _, post = model.intermediates(tuple(params), x)
        a_in = x.reshape(x.shape[0], -1) if li == 0 else post[li - 1]
        if how == "bias":
            u_max = jnp.max(m_w * (a_in @ w), axis=0)
            params[li]["b"] = jnp.where(mask, -(u_max + margin) / m_b, params[li]["b"])
            continue
        if bool(jnp.any(a_in < 0)):
            raise NtkplastError(f"how='sign' needs nonnegative inputs to layer {li}; the data "
                                f"has negative entries (use how='bias')")
        params[li]["W"] = jnp.where(mask, -jnp.abs(w), w)
        if has_bias:
            params[li]["b"] = jnp.where(mask, -margin / m_b, params[li]["b"])
    return tuple(params), tuple(masks)


class Revived(NamedTuple):
    """Revived fractions: ``layers`` one per hidden layer, ``overall`` pooled (NaN: none dead)."""

    layers: tuple[float, ...]
    overall: float


@jax.jit
def _fires(post: list[Array]) -> list[Array]:
    return [jnp.any(a != 0, axis=0) for a in post]


def revived_fraction(model: models.Model, params: Params, x: Array,
                     dead_masks: Sequence[Array]) -> Revived:
    r"""Fraction of the initially dead units that fire on some input of ``x``.

    With D_l = {i : ``dead_masks[l][i]``} and F_l = {i : ∃x ∈ X, a_{l,i}(x) ≠ 0}:
    per layer |D_l ∩ F_l| / |D_l| and overall Σ_l |D_l ∩ F_l| / Σ_l |D_l| (NaN where the
    denominator is 0).
    """
    _check_mlp(model)
    masks = _check_masks(model, dead_masks)
    _, post = model.intermediates(params, jnp.asarray(x))
    fires = [np.asarray(f) for f in _fires(post)]
    hits = [int(np.sum(m & f)) for m, f in zip(masks, fires)]
    dead = [int(np.sum(m)) for m in masks]
    layers = tuple(h / n if n else math.nan for h, n in zip(hits, dead))
    return Revived(layers, sum(hits) / sum(dead) if sum(dead) else math.nan)


def make_arm(name: str, model: models.Model, input_shape: Sequence[int], *,
             learning_rate: float = 1e-3, iso_lam: float = 0.1, l2_lam: float = 1e-4,
             redo_tau: float = 0.1, redo_every: int = 100,
             scale: float | None = None) -> tuple[optax.GradientTransformation, training.Hooks]:
    """(optimizer, hooks) of one arm of :data:`ARMS`, for :func:`reactivation_curve`.

    * ``adam``: ``optax.adam(η)``, no hooks.
    * ``isometry_step``: ``optax.chain(optax.set_to_zero(), isometry_step(λ_iso, η))``: the task
      gradient is computed by the shared training step and then discarded, so each step is
      exactly W ← W − η·λ_iso·∇R(W) on the hidden weights; biases and the readout stay fixed.
    * ``adamo``: ``regularizers.adamo(η, λ_iso)`` — the same chain with Adam in the first link.
    * ``l2``: Adam with the coupled penalty λ_l2‖θ‖² (every layer, biases included).
    * ``redo``: Adam with ReDo (τ = ``redo_tau``) after every ``redo_every``-th step.

    ``scale`` (s of the isometry target) defaults to 2 for ReLU, as in ``make_hooks``.
    """
    if name not in ARMS:
        raise NtkplastError(f"arm: unknown {name!r}; choose one of {list(ARMS)}")
    if scale is None:
        scale = model.spec.gram_target
    adam = optax.adam(learning_rate)
    if name == "adam":
        return adam, training.Hooks()
    if name == "isometry_step":
        return optax.chain(optax.set_to_zero(), decoupled.isometry_step(
            iso_lam, learning_rate, scale=scale, model=model)), training.Hooks()
    if name == "adamo":
        return decoupled.adamo(learning_rate, iso_lam, scale=scale, model=model), training.Hooks()
    method = ({"name": "l2", "lam": l2_lam} if name == "l2" else
              {"name": "redo", "tau": redo_tau, "every": redo_every})
    return adam, make_hooks(method, model, input_shape, learning_rate)


def reactivation_curve(model: models.Model, params: Params, *, dead_masks: Sequence[Array],
                       tx: optax.GradientTransformation, hooks: training.Hooks, x: Array,
                       y: Array, probe_x: Array, steps: int, every: int, batch_size: int = 32,
                       per_layer: bool = False, key: Array) -> np.ndarray:
    """Revived fraction (:func:`revived_fraction` on ``probe_x``) while training.

    Trains from ``params`` (fresh optimizer state ``tx.init(params)``) on ``(x, y)`` with
    :func:`ntkplast.training.make_trainer` — cross-entropy, minibatches of ``batch_size`` in the
    epoch order of :func:`ntkplast.training.minibatch_indices` — for ``steps`` steps, and
    measures after steps 0, every, 2·every, …, steps.

    Args:
      model: a ReLU MLP.
      params: the parameters training starts from.
      dead_masks: one boolean ``(d_l,)`` mask per hidden layer, the units counted (as
        :func:`plant_dead_units` returns them, or ``LayerDormancy.dead_mask``).
      tx: the arm's optimizer (:func:`make_arm`).
      hooks: the arm's hooks (:func:`make_arm`).
      x: training inputs ``N × input_shape``.
      y: integer labels ``(N,)``.
      probe_x: inputs on which a unit counts as firing again.
      steps: a positive integer.
      every: a positive integer dividing ``steps``.
      batch_size: minibatch size B.
      per_layer: also return each hidden layer's revived fraction.
      key: split into the trainer's step key (hooks' randomness, e.g. ReDo's fresh draws) and
        the seed of the minibatch order.

    Returns:
      ``(steps // every + 1,)`` float array of the overall fraction (NaN throughout when no
      unit is dead); with ``per_layer``, ``(steps // every + 1, L + 1)``: the L hidden layers'
      fractions, then the overall one.
    """
    _check_mlp(model)
    masks = _check_masks(model, dead_masks)
    if not (isinstance(steps, int) and isinstance(every, int) and steps >= 1 and every >= 1
            and steps % every == 0):
        raise NtkplastError(f"steps, every: expected positive integers with every dividing "
                            f"steps, got steps={steps!r}, every={every!r}")
    k_step, k_order = jax.random.split(key)
    trainer = training.make_trainer(model, tx, hooks, key=k_step)
    seed = int(jax.random.randint(k_order, (), 0, 2**31 - 1))
    x, y = jnp.asarray(x), jnp.asarray(y)
    idx = training.minibatch_indices(seed, 0, len(y), batch_size, 0, steps)
    state = training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))

    def point(p):
        r = revived_fraction(model, p, probe_x, masks)
        return (*r.layers, r.overall) if per_layer else r.overall

    curve = [point(params)]
    for start in range(0, steps, every):
        state, _ = trainer.run_chunk(state, x, y, jnp.asarray(idx[start:start + every]))
        curve.append(point(state.params))
    return np.asarray(curve, dtype=np.float64)
