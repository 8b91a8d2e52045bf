r"""Task-boundary interventions: FIRE, plasticity injection and head reset.

Each is a ``train.Hooks.on_task_end(params, opt_state, task, key) -> (params, opt_state)``,
called after task ``task``'s evaluation and before its task-end checkpoint, which therefore
holds the parameters the next task starts from (as for every ``on_task_end`` method). ``every``
= k acts after tasks k−1, 2k−1, … (counted from 0). Weights follow :mod:`ntkplast.models`: a
Dense ``W`` is ``d_in × d_out``; an HWIO conv kernel is the ``(k·k·c_in) × c_out`` matrix
(``as_matrix``).

**FIRE** (Han, Park, Oh, Kim, Lee & Kim 2026, "FIRE: Frobenius-isometry reinitialization for
balancing the stability–plasticity tradeoff", ICLR, arXiv 2602.08040): each selected weight is
moved toward the Frobenius-nearest scaled semi-orthogonal matrix,

    W ← (1 − α)·W + α·√(d_out/d_in)·polar(W),    polar(W) = W(WᵀW)^{-1/2} (d_in ≥ d_out)
                                                  or (WWᵀ)^{-1/2}W (d_in < d_out),

so at α = 1 every one of the min(d_in, d_out) singular values is √(d_out/d_in):
WᵀW = (d_out/d_in)·I_{d_out} when d_in ≥ d_out, WWᵀ = (d_out/d_in)·I_{d_in} otherwise (the
reference code's scale √(out/in) on PyTorch's out × in weight). polar(W) is the solution of the
orthogonal Procrustes problem, min ‖W − Q‖_F over semi-orthogonal Q, and comes from cubic
Newton–Schulz iterations (:func:`newton_schulz_polar`). It acts on the effective weight m_W·W
(polar is scale-free, so the stored W moves to (1 − α)W + α√(d_out/d_in)·polar(W)/m_W). Biases
and LayerNorm parameters are untouched. A conv kernel is orthogonalised as its reshaped
(k·k·c_in) × c_out matrix — the Procrustes solution for that matrix, where the reference code
orthogonalises each of the k·k taps' c_out × c_in slices separately and divides by k·k (both
give Gram c_out/(k²c_in)·I when c_in ≥ c_out).

**Plasticity injection** (Nikishin, Oh, Ostrovski, Lyle, Pascanu, Dabney & Barreto 2023, "Deep
reinforcement learning with plasticity injection", NeurIPS): the head h_θ is frozen and a fresh
h_θ' added with a frozen copy of itself subtracted, f(x) = h_θ(x) + h_θ'(x) − h_θ'₀(x), so the
output does not change at injection and only θ' (and the shared trunk) trains. With
ntkplast's head, the linear readout z = m_W·a W + m_b·b of the trunk's features a, the sum is
the one readout W_θ + W' − W'₀ (and b_θ + b' − b'₀): it equals the stored W at injection, its
gradient is the gradient in W', and the frozen W_θ − W'₀ is a constant offset. So the readout
keeps its stored value and its optimizer state is zeroed (θ' starts with no moments): exactly
the two-head network, trained by the same optimizer, with the fresh draw h_θ' cancelling
(:func:`plasticity_injection_task_end`). Adam's bias correction keeps the run's global count, as
in the unit resets (:mod:`~ntkplast.regularizers.resets`). A head of several layers (a hidden
layer before the readout) would need a second network inside the model, which ntkplast's fixed
per-layer parameters cannot hold; only the readout is injected.

**Head reset**: the readout's W and b are re-drawn from the model's initialisation
(``model.init(key, input_shape)``, the run's init scheme) and their optimizer state zeroed
(:func:`head_reset_task_end`); the trunk, LayerNorm parameters included, is untouched.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

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
    check_positive_int,
    select_layers,
    weight_multipliers,
)
from ntkplast.regularizers.resets import reset_optimizer_state
from ntkplast.validate import check_number

OnTaskEnd = Callable[[Params, Any, int, Array], tuple[Params, Any]]

__all__ = ["NS_STEPS", "fire", "fire_task_end", "head_reset_task_end", "newton_schulz_polar",
           "plasticity_injection_task_end", "readout_mask"]

NS_STEPS = 30
"""Default Newton–Schulz steps: ≤ 1e-5 from orthogonality (max |XᵀX − I|, float32) on fresh
He-initialised square weights up to 1024 × 1024 (condition number ≈ 5·10³; 26 steps) and on
trained ones (the paper runs' 512 × 512 weights: ≤ 9 steps)."""


def newton_schulz_polar(m: Array, *, steps: int = NS_STEPS) -> Array:
    """polar(M), the semi-orthogonal factor of ``m`` (``d_in × d_out``), by Newton–Schulz.

    Works on the tall orientation X (``m`` or ``mᵀ``, more rows than columns): X₀ = X/ρ with
    ρ = √min(‖XᵀX‖_∞, tr XᵀX) ≥ σ_max (both bound λ_max(XᵀX)), then ``steps`` cubic iterations
    X ← 1.5·X − 0.5·X(XᵀX), which send every singular value in (0, √3) to 1 (linearly at rate
    1.5 from small ones, then quadratically) and keep the singular vectors. A rank-deficient
    ``m`` keeps its zero singular values (a partial isometry); a zero ``m`` stays zero. The
    products run at full float32 precision (``Precision.HIGHEST``: no TF32 on GPUs).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> m = jnp.array([[3.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
      >>> print(regularizers.newton_schulz_polar(m).round(4).tolist())
      [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    """
    steps = check_positive_int("ns_steps", steps)
    tall = m.shape[0] >= m.shape[1]
    x = m if tall else m.T
    mul = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)  # no TF32 on GPUs
    gram = mul(x.T, x)
    bound = jnp.sqrt(jnp.minimum(jnp.max(jnp.sum(jnp.abs(gram), axis=1)), jnp.trace(gram)))
    x = x / jnp.where(bound > 0, bound, 1.0)
    x = jax.lax.fori_loop(0, steps, lambda _, x: 1.5 * x - 0.5 * mul(x, mul(x.T, x)), x)
    return x if tall else x.T


def _check_alpha(alpha: float, ns_steps: int) -> float:
    """α ∈ [0, 1] (returned as a float) and ``ns_steps`` ≥ 1, or :class:`NtkplastError`."""
    alpha = check_number("alpha", alpha, high=1.0)
    check_positive_int("ns_steps", ns_steps)
    return alpha


def fire(params: Params, *, alpha: float = 1.0, ns_steps: int = NS_STEPS,
         layers: LayerSelection = "all", model: models.Model | None = None) -> Params:
    """FIRE (module docstring) on the selected layers' weights: a new params tree.

    ``alpha`` ∈ [0, 1] interpolates (0: unchanged, 1: the scaled polar factor); ``model`` gives
    the multipliers m_W (``None``: the standard parameterization, m_W = 1); ``layers`` as in
    :func:`~ntkplast.regularizers.select_layers` (default every weight layer, readout included,
    as the reference code applies it to every Linear and Conv layer).

    Examples:
      At α = 1 a 4 × 2 weight ends with WᵀW = (2/4)·I; the bias is untouched:

      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> params = ({"W": jnp.array([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]]),
      ...            "b": jnp.ones(2)},)
      >>> new = regularizers.fire(params)
      >>> print((new[0]["W"].T @ new[0]["W"]).round(4).tolist(), new[0]["b"].tolist())
      [[0.5, 0.0], [0.0, 0.5]] [1.0, 1.0]
    """
    alpha = _check_alpha(alpha, ns_steps)
    selected = set(select_layers(len(params), check_layers(layers)))
    mult = weight_multipliers(model, params)
    out = []
    for i, p in enumerate(params):
        q = dict(p)
        if i in selected:
            w = p["W"]
            m = as_matrix(w)
            target = math.sqrt(m.shape[1] / m.shape[0]) / mult[i] * \
                newton_schulz_polar(m, steps=ns_steps)
            q["W"] = (1.0 - alpha) * w + alpha * target.reshape(w.shape).astype(w.dtype)
        out.append(q)
    return tuple(out)


def _due(task: int, every: int, at_task: int | None = None) -> bool:
    """Whether an intervention acts after task ``task`` (module docstring)."""
    return task == at_task if at_task is not None else (task + 1) % every == 0


def _weight_mask(params: Params, layers: Sequence[int], keys: tuple[str, ...]) -> Params:
    """A boolean params-shaped tree: True on the ``keys`` entries of the given layers."""
    return tuple({k: jnp.full(v.shape, i in layers and k in keys) for k, v in p.items()}
                 for i, p in enumerate(params))


def readout_mask(params: Params) -> Params:
    """A boolean params-shaped tree marking the readout's W and b (not its LayerNorm γ, β)."""
    return _weight_mask(params, (len(params) - 1,), ("W", "b"))


def fire_task_end(model: models.Model, *, alpha: float = 1.0, ns_steps: int = NS_STEPS,
                  layers: LayerSelection = "all", every: int = 1,
                  reset_optimizer: bool = False) -> OnTaskEnd:
    """FIRE at task boundaries (module docstring) as a ``train.Hooks.on_task_end``.

    ``alpha``, ``ns_steps``, ``layers`` as in :func:`fire`; ``every``: act after every k-th
    task; ``reset_optimizer``: also zero the optimizer state of the moved weights (the
    reference code restarts its optimizer at every task for every method; ntkplast's runs keep
    it, so the default keeps it here too).
    """
    every = check_positive_int("every", every)
    layers = check_layers(layers)
    alpha = _check_alpha(alpha, ns_steps)

    @jax.jit
    def apply(params: Params, opt_state: Any) -> tuple[Params, Any]:
        new = fire(params, alpha=alpha, ns_steps=ns_steps, layers=layers, model=model)
        if reset_optimizer:
            selected = select_layers(len(params), layers)
            opt_state = reset_optimizer_state(opt_state, params,
                                              _weight_mask(params, selected, ("W",)))
        return new, opt_state

    def on_task_end(params: Params, opt_state: Any, task: int, key: Array):
        del key
        return apply(params, opt_state) if _due(task, every) else (params, opt_state)

    return on_task_end


def plasticity_injection_task_end(*, every: int = 1, at_task: int | None = None) -> OnTaskEnd:
    """Plasticity injection into the readout (module docstring) as a
    ``train.Hooks.on_task_end``: the function is unchanged and the readout's W, b restart
    their optimizer state (the fresh head θ' has no history).

    ``every``: inject after every k-th task; ``at_task``: inject once, after that task
    (counted from 0) instead, as the paper does.
    """
    every = check_positive_int("every", every)
    if at_task is not None and (isinstance(at_task, bool) or not isinstance(at_task, int)
                                or at_task < 0):
        raise NtkplastError(f"at_task: expected a task index >= 0, got {at_task!r}")
    if at_task is not None and every != 1:
        raise NtkplastError("plasticity_injection: give every (inject after every k-th task) "
                            "or at_task (inject once), not both")
    reset = jax.jit(lambda s, p: reset_optimizer_state(s, p, readout_mask(p)))

    def on_task_end(params: Params, opt_state: Any, task: int, key: Array):
        del key
        return (params, reset(opt_state, params)) if _due(task, every, at_task) \
            else (params, opt_state)

    return on_task_end


def head_reset_task_end(model: models.Model, input_shape: Sequence[int], *, every: int = 1,
                        init_fn: Callable[[Array], Params] | None = None) -> OnTaskEnd:
    """Head reset (module docstring) as a ``train.Hooks.on_task_end``: the readout's W and b
    ← those of ``init_fn(key)`` (default ``model.init(key, input_shape)``, the run's init
    scheme, drawn with the hook's key), their optimizer state zeroed; every other parameter
    untouched. ``every``: reset after every k-th task.
    """
    every = check_positive_int("every", every)
    shape = tuple(int(s) for s in input_shape)
    draw = init_fn if init_fn is not None else (lambda key: model.init(key, shape))

    @jax.jit
    def apply(params: Params, opt_state: Any, key: Array) -> tuple[Params, Any]:
        fresh = draw(key)[-1]
        head = {k: (fresh[k] if k in ("W", "b") else v) for k, v in params[-1].items()}
        return params[:-1] + (head,), reset_optimizer_state(opt_state, params,
                                                           readout_mask(params))

    def on_task_end(params: Params, opt_state: Any, task: int, key: Array):
        return apply(params, opt_state, key) if _due(task, every) else (params, opt_state)

    return on_task_end
