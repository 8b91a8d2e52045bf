r"""Normalize-and-project (NaP): LayerNorm before each activation, weights held at their norm.

Lyle, Zheng, Khetarpal, Martens, van Hasselt, Pascanu & Dabney (2024), "Normalization and
effective learning rates in reinforcement learning" (NeurIPS): with a LayerNorm between a
weight layer and its activation the layer's function is invariant to the scale of its
parameters, so their norm growing during training only lowers the effective learning rate
(∝ η/‖θ_l‖²). NaP makes that schedule explicit by projecting the parameters back onto the
sphere of their initial norm after every update:

    θ_l ← θ_l · ρ_l⁰ / ‖θ_l‖,    θ_l = (W_l, b_l),  ρ_l⁰ = ‖θ_l‖ at initialisation,

for every layer whose output is layer-normalised (ntkplast's ``layer_norm = true``: hidden
layers z ↦ φ(LN(z)); the weight and bias are scaled together, since LN(c·z) = LN(z) holds for
z = m_W·aW + m_b·b only when both scale, up to LN's ε). The readout, which no LayerNorm
follows, and LayerNorm's own γ, β are left free. The projection is an optax transformation
chained after the run's optimizer (:func:`project_to_init_norm`), its ρ⁰ kept in the optimizer
state (so checkpoints hold it and a reset reference, initialised afresh, takes its own).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.regularizers._common import Array, Params

__all__ = ["InitNormState", "normalized_layers", "project_to_init_norm"]


class InitNormState(NamedTuple):
    """ρ_l⁰ = ‖(W_l, b_l)‖ at initialisation of every projected layer (0 for the others)."""

    norms: tuple[Array, ...]


def normalized_layers(model: models.Model) -> tuple[int, ...]:
    """Indices of the weight layers whose output a LayerNorm normalises before φ, or
    :class:`NtkplastError` where NaP does not apply (no LayerNorm, or pre-norm blocks)."""
    spec = model.spec
    if spec.weight_constraint != "none":
        raise NtkplastError("nap: orthogonal layers already fix every weight's norm (σ_w·C(W) "
                            "is exactly semi-orthogonal); use plain training there")
    if not spec.layer_norm or spec.pre_norm:
        raise NtkplastError("nap: normalize-and-project needs a LayerNorm between each weight "
                            "layer and its activation, so the layer is scale-invariant; set "
                            "model.layer_norm = true (and pre_norm = false: a pre-norm block "
                            "normalises its input, not the weight layer's output)")
    return tuple(i for i, layer in enumerate(model.layers) if layer.post_norm)


def _norm(p: dict[str, Array]) -> Array:
    return jnp.sqrt(sum(jnp.sum(p[k] ** 2) for k in ("W", "b") if k in p))


def _project(params: Params, state: InitNormState, layers: tuple[int, ...]) -> Params:
    out = []
    for i, p in enumerate(params):
        q = dict(p)
        if i in layers:
            norm = _norm(p)
            scale = jnp.where(norm > 0, state.norms[i] / jnp.where(norm > 0, norm, 1.0), 1.0)
            for k in ("W", "b"):
                if k in p:
                    q[k] = p[k] * scale.astype(p[k].dtype)
        out.append(q)
    return tuple(out)


def project_to_init_norm(model: models.Model) -> optax.GradientTransformation:
    """NaP's projection (module docstring), to chain *after* the optimizer.

    ``init(params)`` records ρ⁰ of the layer-normalised layers
    (:func:`normalized_layers`); ``update(u, state, params)`` returns the update that lands
    ``apply_updates(params, u)`` on the sphere of those norms. Raises
    :class:`NtkplastError` for a model without post-LayerNorm layers.

    Examples:
      After an update that doubles the hidden layer, the projection brings it back to its
      initial norm; the readout (no LayerNorm after it) keeps the update:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from ntkplast import models, regularizers
      >>> model = models.build({"widths": [4], "num_outputs": 2, "layer_norm": True})
      >>> params = model.init(jax.random.PRNGKey(0), (3,))
      >>> nap = regularizers.project_to_init_norm(model)
      >>> state = nap.init(params)
      >>> double = jax.tree_util.tree_map(lambda p: p, params)     # an update u = θ
      >>> u, _ = nap.update(double, state, params)
      >>> new = optax.apply_updates(params, u)
      >>> ratio = lambda i: float(jnp.linalg.norm(new[i]["W"]) / jnp.linalg.norm(params[i]["W"]))
      >>> print(f"{ratio(0):.3f} {ratio(1):.3f}")
      1.000 2.000
    """
    layers = normalized_layers(model)

    def init(params: Params) -> InitNormState:
        return InitNormState(tuple(_norm(p) if i in layers else jnp.zeros(())
                                   for i, p in enumerate(params)))

    def update(updates, state: InitNormState, params=None):
        if params is None:
            raise NtkplastError("project_to_init_norm needs the params: call "
                                "update(grads, state, params)")
        moved = optax.apply_updates(params, updates)
        projected = _project(moved, state, layers)
        return jax.tree_util.tree_map(lambda a, p: a - p, projected, params), state

    return optax.GradientTransformation(init, update)
