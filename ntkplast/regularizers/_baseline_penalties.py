r"""Coupled baseline penalties: L2, L2 Init, spectral regularization, Parseval and SRIP.

The plasticity baselines the isometry penalty (:mod:`ntkplast.regularizers.penalties`) is
compared with, each ``penalty(params) -> λ·R(θ)`` in its own paper's normalisation, with the
conventions of that module (strength λ first; matrix penalties on the matrix view M of each
selected weight, the effective weight m_W·W when ``model`` is given). Also the two things every
coupled penalty shares: the :data:`Penalty` type and ``_weight_penalty``, the per-layer sum
θ ↦ λ Σ_l term(m_l·W_l). Public through :mod:`ntkplast.regularizers.penalties` and
:mod:`ntkplast.regularizers`.
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
)

Penalty = Callable[[Params], Array]

__all__ = ["Penalty", "l2_init_penalty", "l2_penalty", "parseval_penalty", "spectral_norm",
           "spectral_penalty", "srip_penalty", "srip_spectral_norm"]


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

