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
paper's normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.regularizers._common import (
    Array,
    LayerSelection,
    Params,
    as_matrix,
    check_layers,
    check_nonnegative,
    check_positive_int,
    select_layers,
    weight_multipliers,
    zeros_like_tree,
)
from ntkplast.validate import legacy_arguments

Penalty = Callable[[Params], Array]

__all__ = ["Penalty", "isometry_gradient", "isometry_gradient_estimate", "isometry_loss",
           "isometry_loss_grad", "isometry_penalty", "isometry_target", "l2_init_penalty",
           "l2_penalty", "parseval_penalty", "spectral_norm", "spectral_penalty",
           "srip_penalty", "srip_spectral_norm"]


def _weight_penalty(lam: float, term: Callable[[Array], Array], layers: LayerSelection,
                    model: models.Model | None) -> Penalty:
    """θ ↦ λ Σ_{l ∈ layers} term(m_l·W_l): a penalty summed over the selected effective weights."""
    lam = check_nonnegative("lam", lam)
    layers = check_layers(layers)

    def penalty(params: Params) -> Array:
        mult = weight_multipliers(model, params)
        return lam * sum((term(mult[i] * params[i]["W"])
                          for i in select_layers(len(params), layers)), jnp.zeros(()))

    return penalty


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
      scale, rect_correction, normalize: as in :func:`isometry_loss`.
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


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------

def _leaves(params: Params, layers: LayerSelection, include_biases: bool) -> list[Array]:
    out = []
    for i in select_layers(len(params), layers):
        out.append(params[i]["W"])
        if include_biases and "b" in params[i]:
            out.append(params[i]["b"])
    return out


def l2_penalty(lam: float, *, layers: LayerSelection = "all",
               include_biases: bool = True) -> Penalty:
    """L2 regularization (coupled weight decay): θ ↦ λ‖θ‖² = λ Σ_p θ_p².

    The squared norm without ½, so its gradient is 2λθ and it is L2 Init with θ₀ = 0 (Kumar et
    al. 2023 compare the two in this form). Under plain SGD it equals weight decay of 2λ·η per
    step; under Adam it is *not* AdamW's decoupled decay (Loshchilov & Hutter 2019).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": jnp.ones((2, 2)), "b": jnp.ones(2)},)
      >>> print(f"{regularizers.l2_penalty(0.5)(params):.2f}")                       # 0.5 · 6
      3.00
      >>> print(f"{regularizers.l2_penalty(0.5, include_biases=False)(params):.2f}")
      2.00
    """
    lam = check_nonnegative("lam", lam)
    layers = check_layers(layers)

    def penalty(params: Params) -> Array:
        return lam * sum((jnp.sum(p * p) for p in _leaves(params, layers, include_biases)),
                         jnp.zeros(()))

    return penalty


def _safe_norm(sq: Array) -> Array:
    """√sq with gradient 0 (not NaN) at sq = 0."""
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def l2_init_penalty(lam: float, init_params: Params, *, squared: bool = True,
                    layers: LayerSelection = "all", include_biases: bool = True) -> Penalty:
    """L2 Init (Kumar, Marklund & Van Roy 2023, "Maintaining plasticity in continual learning
    via regenerative regularization"): θ ↦ λ‖θ − θ₀‖², θ₀ the parameters at initialisation.

    ``squared=True`` is the paper's squared Euclidean distance (gradient 2λ(θ − θ₀)).
    ``squared=False`` is the *unsquared* variant found in some RL code, λ Σ_tensors ‖θ_t − θ₀_t‖₂
    (one Euclidean norm per parameter tensor; its pull has constant magnitude λ per tensor; the
    gradient is taken as 0 at θ_t = θ₀_t). The two are different regularizers; name which one a
    result used.

    θ₀ is a constant here. In a training loop whose reset-reference runs start from a fresh
    initialisation, use :func:`ntkplast.regularizers.add_l2_init_gradient` instead, which keeps
    θ₀ in the optimizer state and so always anchors to the run's own initialisation.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> init = ({"W": jnp.zeros((2, 2)), "b": jnp.zeros(2)},)
      >>> penalty = regularizers.l2_init_penalty(0.5, init)
      >>> print(f"{penalty(init):.2f}")                                   # no pull at θ₀
      0.00
      >>> moved = jax.tree_util.tree_map(lambda p: p + 1.0, init)
      >>> print(f"{penalty(moved):.2f}")                   # 0.5 · ‖θ − θ₀‖² = 0.5 · 6
      3.00
      >>> unsquared = regularizers.l2_init_penalty(0.5, init, squared=False)
      >>> print(f"{unsquared(moved):.3f}")               # 0.5 · (‖1‖_W + ‖1‖_b) = 0.5 · (2 + √2)
      1.707
    """
    lam = check_nonnegative("lam", lam)
    layers = check_layers(layers)

    def penalty(params: Params) -> Array:
        cur = _leaves(params, layers, include_biases)
        ref = _leaves(init_params, layers, include_biases)
        if len(cur) != len(ref):
            raise NtkplastError("l2_init_penalty: init_params do not match the params' layers")
        sq = [jnp.sum((p - p0) ** 2) for p, p0 in zip(cur, ref)]
        terms = sq if squared else [_safe_norm(s) for s in sq]
        return lam * sum(terms, jnp.zeros(()))

    return penalty


def _power_start(n: int, dtype) -> Array:
    """A fixed, generic unit start vector (deterministic, so penalties stay pure)."""
    v = jax.random.normal(jax.random.PRNGKey(0), (n,), dtype=dtype)
    return v / jnp.linalg.norm(v)


def spectral_norm(w: Array, num_iters: int = 20) -> Array:
    """σ_max(M) by ``num_iters`` power iterations on MᵀM from a fixed start vector.

    Returns uᵀMv with the singular-vector estimates u, v held constant (``stop_gradient``), so
    its gradient is u vᵀ — the exact derivative of σ_max at convergence (the estimator of Miyato
    et al. 2018's spectral normalisation, recomputed from scratch instead of carried in state).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> print(f"{regularizers.spectral_norm(jnp.diag(jnp.array([3.0, 1.0]))):.3f}")
      3.000
    """
    m = as_matrix(w)
    v = _power_start(m.shape[1], m.dtype)

    def body(_, v):
        u = m @ v
        u = u / (jnp.linalg.norm(u) + 1e-30)
        v = m.T @ u
        return v / (jnp.linalg.norm(v) + 1e-30)

    v = jax.lax.stop_gradient(jax.lax.fori_loop(0, num_iters, body, v))
    u = m @ v
    u = jax.lax.stop_gradient(u / (jnp.linalg.norm(u) + 1e-30))
    return u @ m @ v


def spectral_penalty(lam: float, *, target: float = 1.0, num_iters: int = 20,
                     layers: LayerSelection = "all",
                     model: models.Model | None = None) -> Penalty:
    """Spectral regularization (Lewandowski, Bortkiewicz, Kumar, Trzciński, Machado & Kumar,
    "Learning continually by spectral regularization", ICLR 2025): θ ↦ λ Σ_l (σ_max(M_l) − t)²,

    t = ``target`` (1), σ_max by :func:`spectral_norm` (``num_iters`` power iterations, recomputed
    each call from a fixed start). Gradient 2λ(σ_max − t)·u vᵀ. Weight matrices only (the
    paper's treatment of biases is not reproduced); all layers by default.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": jnp.diag(jnp.array([3.0, 1.0])), "b": jnp.zeros(2)},)
      >>> print(f"{regularizers.spectral_penalty(1.0)(params):.3f}")     # (σ_max − 1)²
      4.000
    """
    num_iters = check_positive_int("num_iters", num_iters)
    return _weight_penalty(lam, lambda m: (spectral_norm(m, num_iters) - target) ** 2,
                           layers, model)


def parseval_penalty(lam: float, scale: float = 1.0, *, layers: LayerSelection = "hidden",
                     model: models.Model | None = None) -> Penalty:
    """Parseval regularization (Chung, Nguyen, Rahman, Soatto & Lu 2024, "Parseval
    regularization for continual reinforcement learning"): θ ↦ λ Σ_l ‖MᵀM − s·I‖_F².

    The Gram of the output units' weight vectors (PyTorch's WWᵀ for W out × in), always
    d_out × d_out — not the smaller side — and without the ½ or the rectangular correction of
    the isometry penalty. Hidden layers only by default (the paper leaves the output layer out).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(3), "b": jnp.zeros(3)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((3, 1)), "b": jnp.zeros(1)})      # readout
      >>> print(f"{regularizers.parseval_penalty(1.0)(params):.1f}")    # ‖4I − I‖_F² = 3 · 9
      27.0
    """

    def term(w: Array) -> Array:
        m = as_matrix(w)
        dev = m.T @ m - scale * jnp.eye(m.shape[1], dtype=m.dtype)
        return jnp.sum(dev * dev)

    return _weight_penalty(lam, term, layers, model)


def srip_spectral_norm(w: Array, num_iters: int = 2) -> Array:
    """σ̂(G − I), G the smaller-side Gram of M, by power iteration on the symmetric A = G − I.

    A is applied matrix-free (Av = Mᵀ(Mv) − v); v₀ is a fixed unit vector, v ← Av/‖Av‖
    ``num_iters`` times (held constant for the gradient), and σ̂ = ‖A v‖ ≤ ‖A‖₂, which converges
    to the spectral norm ‖A‖₂ = max|λ(A)|.
    """
    m = as_matrix(w)
    d_in, d_out = m.shape
    out_side = d_out <= d_in

    def apply_a(v):
        return (m.T @ (m @ v) if out_side else m @ (m.T @ v)) - v

    v = _power_start(min(d_in, d_out), m.dtype)

    def body(_, v):
        a = apply_a(v)
        return a / (jnp.linalg.norm(a) + 1e-30)

    v = jax.lax.stop_gradient(jax.lax.fori_loop(0, num_iters, body, v))
    return _safe_norm(jnp.sum(apply_a(v) ** 2))


def srip_penalty(lam: float, *, num_iters: int = 2, squared: bool = False,
                 layers: LayerSelection = "hidden",
                 model: models.Model | None = None) -> Penalty:
    """SRIP (Bansal, Chen & Wang 2018, "Can we gain more from orthogonality regularizations in
    training deep CNNs?"): θ ↦ λ Σ_l σ(WᵀW − I), the spectral norm of each Gram's deviation
    from I (smaller-side Gram, as in the authors' code), estimated by :func:`srip_spectral_norm`
    (the paper uses two power iterations).

    ``squared=True`` penalizes σ̂² instead, as the authors' released code does; the paper's
    formula is the unsquared norm (default).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(3), "b": jnp.zeros(3)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((3, 1)), "b": jnp.zeros(1)})      # readout
      >>> print(f"{regularizers.srip_penalty(0.1)(params):.3f}")                  # 0.1 · 3
      0.300
      >>> print(f"{regularizers.srip_penalty(0.1, squared=True)(params):.3f}")    # 0.1 · 3²
      0.900
    """
    num_iters = check_positive_int("num_iters", num_iters)

    def term(w: Array) -> Array:
        s = srip_spectral_norm(w, num_iters)
        return s * s if squared else s

    return _weight_penalty(lam, term, layers, model)

