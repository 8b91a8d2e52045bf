r"""Unit dormancy and feature rank of each hidden layer on a probe set.

For hidden layer l with post-activations a_l(x) ∈ R^{d_l} (:meth:`ntkplast.models.Model.
intermediates`; for a conv layer, unit i is channel i and |a| is averaged over spatial
positions first, as in Sokar et al.'s code):

* **ReDo score** (Sokar, Agarwal, Castro & Evci 2023, "The dormant neuron phenomenon in deep
  reinforcement learning"): s_{l,i} = E_x|a_{l,i}(x)| / ((1/d_l) Σ_j E_x|a_{l,j}(x)|); unit i is
  τ-dormant when s_{l,i} ≤ τ. A scale-free score: multiplying the layer's activations by c > 0
  leaves it unchanged.
* **Dead** units: zero on every probe input (and position). For ReLU these are the units whose
  score is 0, so the τ = 0 dormant fraction equals the dead fraction.
* **Frequency rule** (Dohare et al. 2024, "Loss of plasticity in deep continual learning", CIFAR
  analysis code): a unit is dormant when it is active (a ≠ 0) on under 1% of the probe inputs
  (conv: of the input × position pairs). A different quantity from the ReDo score; both are
  reported, each under its own name.
* **Effective rank** of the feature matrix Φ_l = a_l(X) ∈ R^{N×d_l} (Roy & Vetterli 2007) over
  its singular values σ (not σ²): exp(H(p)), p_i = σ_i / Σ_j σ_j.
* **srank** (Kumar, Agarwal, Ghosh & Levine 2021, "Implicit under-parameterization inhibits
  data-efficient deep reinforcement learning", ICLR): the smallest k with
  Σ_{i≤k} σ_i ≥ (1 − δ) Σ_i σ_i, δ = 0.01. Dohare et al.'s and Plasticine's code call this
  "stable rank"; ntkplast keeps "stable rank" for the matrix-analysis quantity ‖Φ‖_F²/‖Φ‖_2²
  (:func:`ntkplast.spectra.summary`), so each name means one thing.

For conv layers Φ_l is the spatial mean of a_l per channel (global average pooling), N × c_l.
Φ_l is not centred. Its σ are √λ of the smaller Gram (ΦᵀΦ, d_l × d_l) in float64
(:func:`ntkplast.linalg.gram_singular_values`): a zero σ comes out below √ε₆₄ · σ_max ≈
1e-8 σ_max, which moves neither rank measurably.

GroupSort and MaxMin (Anil, Lucas & Grosse 2019) zero no output: every input of a group
passes, permuted, and the layer's Jacobian is a permutation, so no unit is dead in ReLU's sense.
There a unit is one input of a group (a coordinate of the sort's input h_l, the pre-activation
after any norm), and it is **dead** when it never wins its group (is never the group's maximum)
on any probe input; its active frequency is the fraction of inputs (× positions) on which it
wins, and the frequency rule reads that. The ReDo score stays the score of the output
coordinates a_l, which for a sorted group rank positions rather than units.
:func:`unit_scores` returns one :class:`LayerDormancy` per hidden layer; its unchecked core
:func:`unit_scores_unchecked` skips the checks of the probe set and parameters, for a caller
that ran them once (the convention of :mod:`ntkplast.ntk` and :mod:`ntkplast.isometry`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import linalg, models
from ntkplast.errors import NtkplastError
from ntkplast.ranks import effective_rank, srank
from ntkplast.validate import check_number, check_probe_set

Array = jax.Array

__all__ = ["DormantFractions", "LayerDormancy", "active_frequency", "dead_units",
           "dormancy_scores", "effective_rank", "feature_matrix", "group_wins", "srank",
           "summarize_layers", "unit_scores", "unit_scores_unchecked"]


def _unit_axes(acts: Array) -> tuple[int, ...]:
    """Axes that are averaged per unit: the batch and any spatial axes (all but the last)."""
    return tuple(range(acts.ndim - 1))


def dormancy_scores(acts: Array) -> Array:
    """ReDo scores s_i = E_x|a_i(x)| / ((1/d) Σ_j E_x|a_j(x)|) of one layer (Sokar et al. 2023).

    ``acts``: ``(N, d)`` or ``(N, H, W, d)`` post-activations (|a| is averaged over inputs and
    positions). Returns ``(d,)``; all zeros when the whole layer is silent (every unit is then
    dormant for every τ ≥ 0).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import dormancy
      >>> acts = jnp.array([[0.0, 1.0, 3.0], [0.0, 1.0, 3.0]])     # N = 2 inputs, d = 3 units
      >>> print([f"{s:.2f}" for s in dormancy.dormancy_scores(acts)])   # E|a_i| / (4/3)
      ['0.00', '0.75', '2.25']
      >>> print([f"{s:.2f}" for s in dormancy.dormancy_scores(10 * acts)])   # scale-free
      ['0.00', '0.75', '2.25']
    """
    acts = jnp.asarray(acts)
    e = jnp.mean(jnp.abs(acts), axis=_unit_axes(acts))
    mean = jnp.mean(e)
    return jnp.where(mean > 0, e / jnp.where(mean > 0, mean, 1.0), 0.0)


def dead_units(acts: Array) -> Array:
    """Boolean ``(d,)`` mask of units that are exactly zero on every input and position.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import dormancy
      >>> acts = jnp.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.5]])
      >>> dormancy.dead_units(acts).tolist()
      [True, False, False]
    """
    acts = jnp.asarray(acts)
    return jnp.all(acts == 0, axis=_unit_axes(acts))


def active_frequency(acts: Array) -> Array:
    """Fraction ``(d,)`` of inputs (conv: input × position pairs) on which a unit is nonzero.

    Dohare et al. (2024) call a unit dormant when this is under 1%.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import dormancy
      >>> acts = jnp.array([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0], [0.0, 0.0, 1.0], [0.0, 4.0, 5.0]])
      >>> print([f"{f:.2f}" for f in dormancy.active_frequency(acts)])
      ['0.00', '0.75', '0.75']
    """
    acts = jnp.asarray(acts)
    return jnp.mean(acts != 0, axis=_unit_axes(acts))


def feature_matrix(acts: Array) -> Array:
    """Feature matrix Φ ``(N, d)``: the activations, spatially averaged per channel for conv.

    Examples:
      Conv activations ``(N, H, W, d)`` become ``N × d``, each channel averaged over positions:

      >>> import jax.numpy as jnp
      >>> from ntkplast import dormancy
      >>> phi = dormancy.feature_matrix(jnp.ones((2, 4, 4, 3)))
      >>> phi.shape, float(phi[0, 0])
      ((2, 3), 1.0)
    """
    acts = jnp.asarray(acts)
    return acts.reshape(acts.shape[0], -1, acts.shape[-1]).mean(axis=1)


class DormantFractions(NamedTuple):
    """The τ-dormant fractions of one layer: ``fractions[j]`` of the units have score ≤ ``taus[j]``.

    ``.at(τ)`` reads one; ``._asdict()`` gives ``{"taus": …, "fractions": …}``.
    """

    taus: tuple[float, ...]
    fractions: tuple[float, ...]

    def at(self, tau: float) -> float:
        """The fraction of units with ReDo score ≤ ``tau`` (one of :attr:`taus`).

        Examples:
          >>> from ntkplast.dormancy import DormantFractions
          >>> DormantFractions(taus=(0.0, 0.1), fractions=(0.25, 0.5)).at(0.1)
          0.5
        """
        try:
            return self.fractions[self.taus.index(float(tau))]
        except ValueError:
            raise NtkplastError(f"tau: {tau!r} is not one of the thresholds computed, "
                                f"{list(self.taus)}") from None


class LayerDormancy(NamedTuple):
    """Dormancy and feature rank of one hidden layer (host numpy arrays and Python scalars).

    Attributes:
      layer: index of the weight layer whose post-activation this is.
      scores: ``(d,)`` ReDo scores (:func:`dormancy_scores`).
      dormant_fraction: :class:`DormantFractions`, the fraction of units with score ≤ τ for each
        threshold τ asked for.
      dead_mask: ``(d,)`` True for units zero on every probe input.
      dead_count, dead_fraction: how many of the d units are dead.
      active_frequency: ``(d,)`` :func:`active_frequency`.
      frequency_dormant_fraction: fraction of units active on under ``frequency_threshold`` of
        the inputs (Dohare et al. 2024's rule).
      effective_rank: :func:`effective_rank` of the feature matrix.
      srank: :func:`srank` of the feature matrix.
    """

    layer: int
    scores: np.ndarray
    dormant_fraction: DormantFractions
    dead_mask: np.ndarray
    dead_count: int
    dead_fraction: float
    active_frequency: np.ndarray
    frequency_dormant_fraction: float
    effective_rank: float
    srank: int

    @property
    def dead_indices(self) -> np.ndarray:
        """Indices of the dead units."""
        return np.flatnonzero(self.dead_mask)


@functools.partial(jax.jit, static_argnums=0)
def _layer_stats(model: models.Model, params: models.Params, x: Array) -> list[tuple[Array, ...]]:
    """Per hidden layer: ReDo scores, dead mask, active frequency, feature matrix."""
    _, pre, post = models.forward(model, params, x)
    out = []
    for layer, p, z, a in zip(model.layers, params, pre, post):
        if layer.activation in models.GROUP_ACTIVATIONS:
            wins = group_wins(models.layer_norm(z, p) if layer.post_norm else z,
                              layer.group_size)
            out.append((dormancy_scores(a), ~jnp.any(wins, axis=_unit_axes(wins)),
                        jnp.mean(wins, axis=_unit_axes(wins)), feature_matrix(a)))
        else:
            out.append((dormancy_scores(a), dead_units(a), active_frequency(a),
                        feature_matrix(a)))
    return out


def group_wins(h: Array, group_size: int) -> Array:
    """Whether each unit is its group's maximum, GroupSort's notion of a unit firing.

    ``h``: the sort's input ``(N, d)`` or ``(N, H, W, d)``, units last, groups of
    ``group_size`` consecutive units. Returns a boolean array of ``h``'s shape; ties all count
    as wins.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import dormancy
      >>> h = jnp.array([[3.0, 1.0, 0.0, 2.0]])               # groups (3, 1) and (0, 2)
      >>> dormancy.group_wins(h, 2).tolist()
      [[True, False, False, True]]
    """
    groups = h.reshape(h.shape[:-1] + (h.shape[-1] // group_size, group_size))
    return (groups == jnp.max(groups, axis=-1, keepdims=True)).reshape(h.shape)


def unit_scores(model: models.Model, params: models.Params, x: Array, *,
                taus: Sequence[float] = (0.0, 0.025, 0.1), frequency_threshold: float = 0.01,
                srank_delta: float = 0.01) -> tuple[LayerDormancy, ...]:
    """Dormancy and feature rank of every hidden layer on probe inputs ``x`` (module docstring).

    Args:
      model: the network.
      params: its parameters.
      x: probe inputs, ``N × input_shape``.
      taus: thresholds τ ≥ 0 of the ReDo rule (Sokar et al. use 0.0, 0.025, 0.1).
      frequency_threshold: Dohare et al.'s activity-frequency threshold (1%).
      srank_delta: δ of Kumar et al.'s srank.

    Returns:
      One :class:`LayerDormancy` per hidden layer (the readout has no activation), in order.

    Examples:
      >>> import jax
      >>> from ntkplast import dormancy, models
      >>> model = models.build(models.ArchSpec(widths=(8, 8), num_outputs=2))
      >>> params = model.init(jax.random.PRNGKey(0), (4,))
      >>> x = jax.random.normal(jax.random.PRNGKey(1), (16, 4))
      >>> len(dormancy.unit_scores(model, params, x))   # one per hidden layer
      2

      Pushing every pre-activation of the first layer below zero kills all its units:

      >>> dead = ({**params[0], "b": params[0]["b"] - 100.0},) + params[1:]
      >>> first = dormancy.unit_scores(model, dead, x)[0]
      >>> print(first.dead_fraction, first.dormant_fraction.at(0.0), first.srank)
      1.0 1.0 0
    """
    x = check_probe_set(model, params, x)
    return unit_scores_unchecked(model, params, x, taus=taus,
                                 frequency_threshold=frequency_threshold, srank_delta=srank_delta)


def unit_scores_unchecked(model: models.Model, params: models.Params, x: Array, *,
                          taus: Sequence[float] = (0.0, 0.025, 0.1),
                          frequency_threshold: float = 0.01,
                          srank_delta: float = 0.01) -> tuple[LayerDormancy, ...]:
    """:func:`unit_scores` on a probe set already checked (:func:`check_probe_set`): its
    unchecked core (module docstring)."""
    stats = jax.device_get(_layer_stats(model, tuple(params), x))
    return summarize_layers(stats, taus=taus, frequency_threshold=frequency_threshold,
                            srank_delta=srank_delta)


def summarize_layers(stats: Sequence[tuple[Array, Array, Array, Array]], *,
                     taus: Sequence[float] = (0.0, 0.025, 0.1),
                     frequency_threshold: float = 0.01,
                     srank_delta: float = 0.01) -> tuple[LayerDormancy, ...]:
    """One :class:`LayerDormancy` per hidden layer from its ``(scores, dead mask, active
    frequency, feature matrix)`` (:func:`dormancy_scores`, :func:`dead_units`,
    :func:`active_frequency`, :func:`feature_matrix`); arguments as in :func:`unit_scores`."""
    try:
        taus = tuple(dict.fromkeys(float(t) for t in taus))  # in order, each once
    except (TypeError, ValueError):
        raise NtkplastError(f"taus: expected a sequence of numbers, got {taus!r}") from None
    if not taus or not all(math.isfinite(t) and t >= 0 for t in taus):
        raise NtkplastError(f"taus: expected one or more finite thresholds τ ≥ 0, got {taus}")
    frequency_threshold = check_number("frequency_threshold", frequency_threshold, high=1.0)
    srank_delta = check_number("srank_delta", srank_delta, high=1.0, open_high=True)
    out = []
    for i, (scores, dead, freq, features) in enumerate(stats):
        scores, dead, freq, features = (np.asarray(v) for v in (scores, dead, freq, features))
        d = scores.shape[0]
        sv = linalg.gram_singular_values(features)  # √λ of the d × d Gram, float64, host
        out.append(LayerDormancy(
            layer=i,
            scores=scores,
            dormant_fraction=DormantFractions(taus, tuple(int(np.sum(scores <= t)) / d
                                                          for t in taus)),
            dead_mask=dead,
            dead_count=int(np.sum(dead)),
            dead_fraction=int(np.sum(dead)) / d,
            active_frequency=freq,
            frequency_dormant_fraction=int(np.sum(freq < frequency_threshold)) / d,
            effective_rank=float(effective_rank(sv)),
            srank=int(srank(sv, srank_delta)),
        ))
    return tuple(out)
