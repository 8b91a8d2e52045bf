r"""Coupled penalties: ``penalty(params) -> λ·R(θ)``, added to the loss (``train.Hooks.penalty``).

Every constructor takes the strength λ first and returns a pure function of the params tuple.
Matrix penalties act on the matrix view M of each selected weight (``_common.as_matrix``: a
Dense ``W`` is ``d_in × d_out``; an HWIO Conv kernel is reshaped to ``(k·k·c_in) × c_out``, the
transpose of PyTorch's ``c_out × (c_in·k·k)``). With ``model`` given they act on the *effective*
weight M = m_W·W that the forward pass multiplies by (:func:`ntkplast.models.multipliers`), so an
NTK-parameterized network is pulled toward the same isometric forward map as a standard one;
without it (or for the standard parameterization, m_W = 1) M is the raw weight. Biases are never
matrix-penalized.

**Isometry (Gram) penalty** — the paper's regularizer (Rosseau, Müller & Nowé 2026, "Preserving
plasticity in continual learning via dynamical isometry", §4.2/§4.4, as read from the first
author's public PyTorch port, which cites those sections). For M ∈ R^{d_in×d_out} take the Gram
on the smaller side::

    d_out ≤ d_in:  G = MᵀM  (d_out × d_out),  s' = s
    d_out > d_in:  G = MMᵀ  (d_in × d_in),    s' = s · d_out/d_in   (rect_correction=True)
    R(M) = ½ ‖G − s'·I‖_F²            [÷ n, the Gram's side, when normalize=True]
    ∇R   = 2·M(MᵀM − s'I)  or  2·(MMᵀ − s'I)M

(In PyTorch's out × in layout the two cases are WWᵀ for a wide/square and WᵀW for a tall matrix.)
s = 1 asks for orthogonality; s = 2 compensates ReLU halving the second moment (He scale). The
rectangular correction makes s' the squared row norm of a He-initialised tall matrix.

*Normalisation conventions.* This module (like the PyTorch port) uses R = ½‖G − s'I‖_F², with
gradient 2M(G − s'I). The paper writes the penalty λ_paper·‖WᵀW − I‖_F², without the ½ and with
target I (gradient 4M(G − I)), so the same penalty is λ = 2·λ_paper here: the paper's
λ_paper = 1e-3 is λ = 2e-3 in ntkplast. (Its target I is s = 1; a ``[method]`` table defaults
to s = 2 for ReLU networks.)

The other penalties are the plasticity baselines ntkplast compares it with, each in its own
paper's normalisation (implemented in ``_baseline_penalties``, public here).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntkplast import models
from ntkplast.regularizers._baseline_penalties import (
    Penalty,
    _weight_penalty,
    l2_init_penalty,
    l2_penalty,
    parseval_penalty,
    spectral_norm,
    spectral_penalty,
    srip_penalty,
    srip_spectral_norm,
)
from ntkplast.regularizers._common import (
    Array,
    LayerSelection,
    Params,
    as_matrix,
    check_positive_int,
    select_layers,
    weight_multipliers,
    zeros_like_tree,
)
from ntkplast.validate import legacy_arguments

__all__ = ["Penalty", "isometry_gradient", "isometry_gradient_estimate", "isometry_loss",
           "isometry_loss_grad", "isometry_penalty", "isometry_target", "l2_init_penalty",
           "l2_penalty", "parseval_penalty", "spectral_norm", "spectral_penalty",
           "srip_penalty", "srip_spectral_norm"]


# ---------------------------------------------------------------------------------------------
# Isometry (Gram) penalty
# ---------------------------------------------------------------------------------------------

def isometry_target(d_in: int, d_out: int, scale: float = 1.0,
                    rect_correction: bool = True) -> float:
    """s': the Gram's target diagonal — ``scale``, times d_out/d_in for a tall (d_out > d_in) M.

    Examples:
      >>> from ntkplast import regularizers
      >>> regularizers.isometry_target(4, 8, scale=2.0)   # tall M: s · d_out/d_in
      4.0
      >>> regularizers.isometry_target(8, 4, scale=2.0)
      2.0
    """
    if rect_correction and d_out > d_in:
        return scale * d_out / d_in
    return float(scale)


def _gram_deviation(m: Array, scale: float, rect_correction: bool) -> tuple[Array, bool]:
    """(G − s'I, whether G = MᵀM) for the matrix view ``m``."""
    d_in, d_out = m.shape
    target = isometry_target(d_in, d_out, scale, rect_correction)
    out_side = d_out <= d_in
    g = m.T @ m if out_side else m @ m.T
    return g - target * jnp.eye(g.shape[0], dtype=m.dtype), out_side


def isometry_loss(w: Array, scale: float = 1.0, *, rect_correction: bool = True,
                  normalize: bool = False) -> Array:
    """R(M) = ½‖G − s'I‖_F² of one weight (module docstring); ÷ n when ``normalize``.

    Args:
      w: a Dense ``d_in × d_out`` or HWIO Conv weight (already multiplied by m_W if wanted).
      scale: s (1: orthogonal; 2: ReLU / He scale).
      rect_correction: multiply s by d_out/d_in for a tall matrix.
      normalize: divide by the Gram's side n = min(d_in, d_out), making λ width-independent.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> print(f"{regularizers.isometry_loss(jnp.eye(3)):.1f}")        # orthogonal: no penalty
      0.0
      >>> w = 2.0 * jnp.eye(3)                                         # G − I = 3I
      >>> print(f"{regularizers.isometry_loss(w):.1f}", f"{regularizers.isometry_loss(w, 4.0):.1f}")
      13.5 0.0
      >>> print(f"{regularizers.isometry_loss(w, normalize=True):.1f}")  # ÷ n = 3
      4.5
    """
    dev, _ = _gram_deviation(as_matrix(w), scale, rect_correction)
    r = 0.5 * jnp.sum(dev * dev)
    return r / dev.shape[0] if normalize else r


def isometry_loss_grad(w: Array, scale: float = 1.0, *, rect_correction: bool = True,
                       normalize: bool = False) -> Array:
    """Closed-form ∇R: 2·M(MᵀM − s'I) (d_out ≤ d_in) or 2·(MMᵀ − s'I)M, in ``w``'s shape.

    Examples:
      The closed form agrees with automatic differentiation:

      >>> import jax
      >>> import numpy as np
      >>> from ntkplast import regularizers
      >>> w = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
      >>> g = regularizers.isometry_loss_grad(w, 2.0)
      >>> bool(np.allclose(g, jax.grad(regularizers.isometry_loss)(w, 2.0), rtol=1e-4, atol=1e-4))
      True
    """
    m = as_matrix(w)
    dev, out_side = _gram_deviation(m, scale, rect_correction)
    g = 2.0 * (m @ dev if out_side else dev @ m)
    if normalize:
        g = g / dev.shape[0]
    return g.reshape(w.shape)


def isometry_penalty(lam: float, scale: float = 1.0, *, rect_correction: bool = True,
                     normalize: bool = False, layers: LayerSelection = "hidden",
                     model: models.Model | None = None) -> Penalty:
    """Coupled isometry penalty θ ↦ λ Σ_{l ∈ layers} R(m_l·W_l) (module docstring).

    Args:
      lam: λ ≥ 0 in the ½‖·‖² convention: λ = 2·λ_paper, the paper's unhalved λ_paper being
        half this one (module docstring).
      scale: as in :func:`isometry_loss`.
      rect_correction: as in :func:`isometry_loss`.
      normalize: as in :func:`isometry_loss`.
      layers: ``"hidden"`` (default: all weight matrices but the readout, no biases),
        ``"inner"``, ``"all"`` or a list of layer indices.
      model: when given, penalize the effective weights m_W·W.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(3), "b": jnp.zeros(3)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((3, 1)), "b": jnp.zeros(1)})      # readout
      >>> penalty = regularizers.isometry_penalty(0.1)                 # hidden layers only
      >>> print(f"{penalty(params):.2f}")                               # 0.1 · ½ · 3 · 3²
      1.35
      >>> everything = regularizers.isometry_penalty(0.1, layers="all")
      >>> print(f"{everything(params):.2f}")                   # + 0.1 · ½ · (3 − 1)² of the readout
      1.55
    """
    return _weight_penalty(
        lam, lambda m: isometry_loss(m, scale, rect_correction=rect_correction,
                                     normalize=normalize), layers, model)


def isometry_gradient(params: Params, scale: float = 1.0, *, rect_correction: bool = True,
                      normalize: bool = False, layers: LayerSelection = "hidden",
                      model: models.Model | None = None) -> Params:
    """∇_θ Σ_l R(m_l W_l) in closed form: a params-shaped tree, zero on biases and other layers.

    For an effective weight M = m·W the chain rule gives ∂R/∂W = m·∇R(M).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(3), "b": jnp.zeros(3)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((3, 1)), "b": jnp.zeros(1)})      # readout
      >>> grads = regularizers.isometry_gradient(params)             # 2·M(MᵀM − I) = 12·I
      >>> print(*(f"{g:.3f}" for g in jnp.diag(grads[0]["W"])), float(jnp.abs(grads[1]["W"]).sum()))
      12.000 12.000 12.000 0.0
    """
    mult = weight_multipliers(model, params)
    grads = list(zeros_like_tree(params))
    for i in select_layers(len(params), layers):
        m = mult[i]
        g = isometry_loss_grad(m * params[i]["W"], scale, rect_correction=rect_correction,
                               normalize=normalize)
        grads[i] = {**grads[i], "W": m * g}
    return tuple(grads)


@legacy_arguments(positional=("key", "probes", "scale"), after=1,
                  renamed={"probes": "num_probes"})
def isometry_gradient_estimate(params: Params, *, key: Array, num_probes: int = 4,
                               scale: float = 1.0, rect_correction: bool = True,
                               normalize: bool = False, layers: LayerSelection = "hidden",
                               model: models.Model | None = None) -> Params:
    r"""Unbiased randomised ∇R from ``num_probes`` = k Rademacher vectors (Hutchinson 1989).

    With A = G − s'I (n × n) and V ∈ {±1}^{n×k} (E[VVᵀ] = k·I), R̂ = (1/2k)‖AV‖_F² has
    E[R̂] = R, and its gradient, with U = AV,

        ∇R̂ = (1/k)·M(VUᵀ + UVᵀ)   (G = MᵀM)      or      (1/k)·(VUᵀ + UVᵀ)M   (G = MMᵀ),

    has E[∇R̂] = ∇R. It never forms G: cost O(d_in·d_out·k) per layer instead of
    O(d_in·d_out·n). The price is variance: the relative error of one estimate is of order
    √(n/k), so it suits small steps whose noise averages out over many updates.

    Every argument but ``params`` is keyword-only: ``key`` draws V (one split per layer); the
    other arguments are as in :func:`isometry_gradient`. The 0.2 spelling
    ``isometry_gradient_estimate(params, key, probes, scale)``, positional or with
    ``probes=``, still works with a DeprecationWarning.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(3), "b": jnp.zeros(3)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((3, 1)), "b": jnp.zeros(1)})      # readout
      >>> import jax
      >>> est = regularizers.isometry_gradient_estimate(params, key=jax.random.PRNGKey(0),
      ...                                              num_probes=4)
      >>> est[0]["W"].shape
      (3, 3)
      >>> print(*(f"{g:.3f}" for g in jnp.diag(est[0]["W"])))   # (VVᵀ)_ii/k = 1 exactly
      12.000 12.000 12.000
      >>> at_isometry = ({**params[0], "W": jnp.eye(3)}, params[1])
      >>> est = regularizers.isometry_gradient_estimate(at_isometry, key=jax.random.PRNGKey(0))
      >>> float(jnp.abs(est[0]["W"]).max())
      0.0
    """
    probes = check_positive_int("num_probes", num_probes)
    mult = weight_multipliers(model, params)
    grads = list(zeros_like_tree(params))
    selected = select_layers(len(params), layers)
    keys = jax.random.split(key, max(len(selected), 1))
    for k_layer, i in zip(keys, selected):
        w = params[i]["W"]
        m = mult[i] * as_matrix(w)
        d_in, d_out = m.shape
        target = isometry_target(d_in, d_out, scale, rect_correction)
        out_side = d_out <= d_in
        n = d_out if out_side else d_in
        v = jax.random.rademacher(k_layer, (n, probes), dtype=m.dtype)
        # three thin products with M and one full-size product: M is read three times
        if out_side:  # M(VUᵀ + UVᵀ) = [MV, MU]·[U, V]ᵀ
            y = m @ v
            u = m.T @ y - target * v
            g = jnp.concatenate([y, m @ u], axis=1) @ jnp.concatenate([u, v], axis=1).T
        else:  # (VUᵀ + UVᵀ)M = [V, U]·[MᵀU, MᵀV]ᵀ
            y = m.T @ v
            u = m @ y - target * v
            g = jnp.concatenate([v, u], axis=1) @ jnp.concatenate([m.T @ u, y], axis=1).T
        g = g / probes
        if normalize:
            g = g / n
        grads[i] = {**grads[i], "W": mult[i] * g.reshape(w.shape)}
    return tuple(grads)
