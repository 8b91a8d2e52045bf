r"""Curvature of the training loss on a probe set: the Hessian and the Gauss–Newton matrix.

The loss is the run's own objective on the probe set (:data:`ntkplast.training.step.OBJECTIVES`,
named by ``objective``), without any regularizer's penalty:

* ``"cross_entropy"``: L(θ) = −(1/N) Σ_i log softmax(f(x_i; θ))_{y_i}, ``y`` integer labels
  ``(N,)``;
* ``"mse"``: L(θ) = (1/(N·K)) Σ_i ‖f(x_i; θ) − y_i‖², ``y`` targets ``N × K``.

Two matrices over all P trained parameters θ (for a
:class:`~ntkplast.adapters.function.FunctionModel` with ``trainable``, only that entry; the rest
is held fixed), each only through matrix–vector products, never formed:

* the **Hessian** H = ∇²_θ L, by Hessian-vector products Hv = ∂/∂ε ∇L(θ + εv) (forward over
  reverse mode, linearised once per call); indefinite in general;
* the **Gauss–Newton matrix** (GGN) G = Jᵀ H_out J, J = ∂f(X)/∂θ the ``NK × P`` Jacobian of the
  outputs on the probe set and H_out the loss Hessian in the outputs
  (:func:`output_hessian_product`): Gv = Jᵀ(H_out(Jv)) by one Jacobian-vector product (forward
  mode) and one vector-Jacobian product (its transpose); positive semi-definite, of rank
  ≤ N·K (≤ N·(K − 1) for cross-entropy, whose H_out has the null vector 1).
  H = G + Σ_{i,k} (∂L/∂f_{ik}) ∇²_θ f_{ik}: where the loss's gradients in the outputs vanish (an
  interpolating fit) H = G (Martens 2020, "New insights and perspectives on the natural
  gradient method"). H_out depends on the outputs only, not on the labels, for both
  objectives, so G is defined on unlabeled probes.

Their top-k eigenvalues come from Lanczos with full reorthogonalisation
(:func:`ntkplast.spectra.top_eigenvalues`: m = ``num_matvecs`` products, default
min(P, max(2k + 20, 40))). The Ritz values θ_1 ≥ … ≥ θ_k of an m-step Krylov space satisfy
θ_i ≤ λ_i (Cauchy interlacing) and converge from below, the largest first; with m = P they are
exact. **Sharpness** is λ_max(H) (Lyle et al. 2023, "Understanding plasticity in neural
networks"; Lewandowski et al. 2024, "Directions of curvature as an explanation for loss of
plasticity"); the collapse of the Hessian's rank at task changes ("Spectral collapse",
arXiv 2509.22335) is read from :func:`top_k_ranks`, the effective and ε-rank of the top-k.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ntkplast import spectra
from ntkplast.adapters.function import FunctionModel
from ntkplast.errors import NtkplastError
from ntkplast.ranks import effective_rank
from ntkplast.training.step import OBJECTIVES

Array = jax.Array

__all__ = ["TopKRanks", "ggn_top_eigenvalues", "hessian_top_eigenvalues",
           "output_hessian_product", "probe_loss", "split_trainable", "top_k_ranks"]


def split_trainable(model: Any, params: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``(trained, rebuild)``: the parameters that curvature and gradients are taken in, and
    ``rebuild(trained)``, the full parameters ``model.apply`` takes.

    A :class:`~ntkplast.adapters.function.FunctionModel` with ``trainable`` trains the entry of
    that name (:meth:`~ntkplast.adapters.function.FunctionModel.split`), the other entries
    (e.g. BatchNorm statistics) held at their values; any other model trains all of ``params``.
    """
    if isinstance(model, FunctionModel) and model.trainable is not None:
        trained, fixed = model.split(params)
        return trained, lambda t: {**fixed, model.trainable: t}
    return params, lambda t: t


def _objective(objective: str) -> Any:
    if objective not in OBJECTIVES:
        raise NtkplastError(f"objective: unknown {objective!r}; choose from {list(OBJECTIVES)}")
    return OBJECTIVES[objective]


def probe_loss(model: Any, params: Any, x: Array, y: Array, *,
               objective: str = "cross_entropy") -> Array:
    """The objective's mean loss L(θ) on the probe set (module docstring), a scalar.

    ``x``: inputs ``N × input_shape``; ``y``: integer labels ``(N,)`` for ``"cross_entropy"``,
    targets ``N × K`` for ``"mse"``. ``model`` is anything with ``apply(params, x)`` returning
    outputs ``N × K``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import curvature
      >>> from ntkplast.adapters.function import FunctionModel
      >>> model = FunctionModel(lambda w, x: x @ w)                 # f(x) = x w, K = 1
      >>> x, y = jnp.array([[1.0], [2.0]]), jnp.array([[0.0], [0.0]])
      >>> print(f"{curvature.probe_loss(model, jnp.ones((1, 1)), x, y, objective='mse'):.2f}")
      2.50
    """
    return _objective(objective).loss(model.apply(params, x), y)


def output_hessian_product(outputs: Array, u: Array, *, objective: str = "cross_entropy"
                           ) -> Array:
    r"""H_out u: the Hessian of the mean loss in the outputs applied to ``u``, per example.

    ``outputs``, ``u``: ``N × K``. For mean softmax cross-entropy, with p_i = softmax(f_i),
    H_out,i = (diag(p_i) − p_i p_iᵀ)/N, so (H_out u)_i = (p_i ⊙ u_i − p_i ⟨p_i, u_i⟩)/N; for the
    mean squared error over all N·K outputs, H_out = 2/(N·K) · I. Neither needs the labels.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import curvature
      >>> f = jnp.zeros((1, 2))                                     # p = (½, ½)
      >>> u = jnp.array([[1.0, -1.0]])
      >>> print(curvature.output_hessian_product(f, u).tolist())   # (½ − ¼·2)… = ½ u
      [[0.5, -0.5]]
      >>> print(curvature.output_hessian_product(f, u, objective="mse").tolist())
      [[1.0, -1.0]]
    """
    _objective(objective)
    if objective == "mse":
        return 2.0 * u / outputs.size
    if outputs.ndim != 2:
        raise NtkplastError(f"cross_entropy: expected logits N × K, got shape {outputs.shape}")
    p = jax.nn.softmax(outputs, axis=-1)
    return (p * u - p * jnp.sum(p * u, axis=-1, keepdims=True)) / outputs.shape[0]


def _flat(model: Any, params: Any) -> tuple[Array, Callable[[Array], Any]]:
    """The trained parameters as one vector θ ∈ R^P, and θ ↦ the full parameters."""
    trained, rebuild = split_trainable(model, params)
    flat, unravel = ravel_pytree(trained)
    return flat, lambda v: rebuild(unravel(v))


@functools.partial(jax.jit, static_argnames=("model", "objective", "k", "num_matvecs"))
def _hessian_top(model: Any, params: Any, x: Array, y: Array, key: Array, objective: str,
                 k: int, num_matvecs: int | None) -> Array:
    theta, full = _flat(model, params)
    loss = _objective(objective).loss
    _, hvp = jax.linearize(jax.grad(lambda v: loss(model.apply(full(v), x), y)), theta)
    return spectra.top_eigenvalues(hvp, theta.size, k, key=key, num_matvecs=num_matvecs)


@functools.partial(jax.jit, static_argnames=("model", "objective", "k", "num_matvecs"))
def _ggn_top(model: Any, params: Any, x: Array, key: Array, objective: str, k: int,
             num_matvecs: int | None) -> Array:
    theta, full = _flat(model, params)
    outputs, jvp = jax.linearize(lambda v: model.apply(full(v), x), theta)
    vjp = jax.linear_transpose(jvp, theta)

    def ggn(v: Array) -> Array:
        return vjp(output_hessian_product(outputs, jvp(v), objective=objective))[0]

    return spectra.top_eigenvalues(ggn, theta.size, k, key=key, num_matvecs=num_matvecs)


def hessian_top_eigenvalues(model: Any, params: Any, x: Array, y: Array, *, k: int, key: Array,
                            objective: str = "cross_entropy", num_matvecs: int | None = None
                            ) -> Array:
    r"""The k largest eigenvalues λ_1 ≥ … ≥ λ_k of the loss Hessian H = ∇²_θ L, shape ``(k,)``.

    Lanczos (:func:`ntkplast.spectra.top_eigenvalues`, start vector drawn from ``key``) on
    Hessian-vector products Hv (module docstring), over every trained parameter. λ_1 is the
    sharpness (Lyle et al. 2023; Lewandowski et al. 2024). ``x``: inputs ``N × input_shape``;
    ``y``: labels ``(N,)`` (cross-entropy) or targets ``N × K`` (mse). The largest in the
    algebraic order: negative eigenvalues show only when fewer than k are positive. In the
    parameters' dtype (float64 under ``jax_enable_x64``). One compilation per (model, objective,
    k, num_matvecs, shapes).

    Examples:
      Linear least squares: H = (2/N) XᵀX = diag(1, 4) for these inputs.

      >>> import jax
      >>> import jax.numpy as jnp
      >>> from ntkplast import curvature
      >>> from ntkplast.adapters.function import FunctionModel
      >>> model = FunctionModel(lambda w, x: x @ w)
      >>> x, y = jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.zeros((2, 1))
      >>> lam = curvature.hessian_top_eigenvalues(model, jnp.ones((2, 1)), x, y, k=2,
      ...                                         key=jax.random.PRNGKey(0), objective="mse")
      >>> print([f"{v:.3f}" for v in lam])
      ['4.000', '1.000']
    """
    _objective(objective)
    return _hessian_top(model, params, jnp.asarray(x), jnp.asarray(y), key, objective, k,
                        num_matvecs)


def ggn_top_eigenvalues(model: Any, params: Any, x: Array, *, k: int, key: Array,
                        objective: str = "cross_entropy", num_matvecs: int | None = None
                        ) -> Array:
    r"""The k largest eigenvalues of the Gauss–Newton matrix G = Jᵀ H_out J, shape ``(k,)``.

    Lanczos (:func:`ntkplast.spectra.top_eigenvalues`, start vector drawn from ``key``) on
    Gv = Jᵀ H_out J v: J v by forward mode, Jᵀ u by the transpose of that linear map, H_out by
    :func:`output_hessian_product`; J (``NK × P``) is never formed. Needs no labels. ``x``:
    inputs ``N × input_shape``. G and the NTK Θ = J Jᵀ share their nonzero eigenvalues when
    H_out = c·I (mse: c = 2/(N·K)), so there λ_i(G) = c·λ_i(Θ).

    Examples:
      For a linear model and mse, G equals the Hessian, (2/N) XᵀX = diag(1, 4):

      >>> import jax
      >>> import jax.numpy as jnp
      >>> from ntkplast import curvature
      >>> from ntkplast.adapters.function import FunctionModel
      >>> model = FunctionModel(lambda w, x: x @ w)
      >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0]])
      >>> lam = curvature.ggn_top_eigenvalues(model, jnp.ones((2, 1)), x, k=2,
      ...                                     key=jax.random.PRNGKey(0), objective="mse")
      >>> print([f"{v:.3f}" for v in lam])
      ['4.000', '1.000']
    """
    _objective(objective)
    return _ggn_top(model, params, jnp.asarray(x), key, objective, k, num_matvecs)


class TopKRanks(NamedTuple):
    """Summaries of a top-k spectrum (:func:`top_k_ranks`), Python floats.

    Attributes:
      lambda_max: λ_1.
      effective_rank: exp(H(p)) of the top k, p_i = λ_i⁺ / Σ_{j≤k} λ_j⁺, in [1, k] (0 when no
        λ_i > 0).
      eps_rank: #{i ≤ k : λ_i > eps · λ_1}, in [0, k]; k means "at least k".
      eps: the relative threshold used.
      k: how many eigenvalues were summarised.
    """

    lambda_max: float
    effective_rank: float
    eps_rank: float
    eps: float
    k: int


def top_k_ranks(eigs: Any, *, eps: float = 1e-2) -> TopKRanks:
    r"""λ_max, effective rank and ε-rank of the k largest eigenvalues ``eigs`` ``(k,)``, in float64.

    What the k-truncation means: both ranks are of the rank-k truncation M_k = Σ_{i≤k} λ_i v_i v_iᵀ
    of the matrix, not of the matrix. The **effective rank** (Roy & Vetterli 2007;
    :func:`ntkplast.ranks.effective_rank`) exp(−Σ_{i≤k} p_i log p_i), p_i = λ_i⁺/Σ_{j≤k} λ_j⁺
    (λ⁺ = max(λ, 0), so a Hessian's negative eigenvalues count as 0), says over how many of the
    top-k directions the curvature is spread, between 1 (one direction dominates) and k (all k
    equal); it ignores the tail λ_{k+1}, …, which the full effective rank would count. The
    **ε-rank** #{i ≤ k : λ_i > ε·λ_1} counts the top-k directions with curvature above a
    fraction ε of the sharpest (0 when λ_1 ≤ 0); it saturates at k. From Lanczos Ritz values
    (θ_i ≤ λ_i), both read the Ritz values, not the exact λ_i.

    Examples:
      >>> from ntkplast import curvature
      >>> r = curvature.top_k_ranks([4.0, 4.0, 0.01, -1.0], eps=0.01)
      >>> print(f"{r.lambda_max:.1f} {r.effective_rank:.3f} {r.eps_rank:.0f} {r.k}")
      4.0 2.018 2 4
    """
    lam = np.sort(np.asarray(eigs, np.float64).reshape(-1))[::-1]
    if lam.size == 0:
        raise NtkplastError("top_k_ranks: expected at least one eigenvalue")
    lmax = float(lam[0])
    eps_rank = float(np.sum(lam > eps * lmax)) if lmax > 0 else 0.0
    return TopKRanks(lmax, float(effective_rank(lam)), eps_rank, float(eps), int(lam.size))
