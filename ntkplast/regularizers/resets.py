r"""Unit resets: ReDo and continual backprop.

Both replace chosen hidden units ("units": Dense outputs, or Conv channels) the same way
(:func:`reinitialize_units`), in three steps that re-implementations of both methods are known
to get wrong, so each is tested on its own:

1. the unit's **incoming** weights (its column of W_l, its bias) are re-drawn from the model's
   initialisation distribution (a fresh ``model.init`` draw);
2. its **outgoing** weights (its row of W_{l+1}; every flattened position of its channel when a
   conv layer feeds a dense one; its input-channel slice of a conv kernel) are set to zero, so the
   network's function does not jump (where a unit's outgoing row is also another reset unit's
   incoming column, zero wins);
3. the optimizer state of **exactly those weights** is reset (:func:`reset_optimizer_state`:
   every params-shaped subtree of the state — Adam's μ and ν, momentum's trace — is zeroed on
   those entries and left bit-identical elsewhere). optax keeps one global step count, so the
   restarted entries keep the global bias correction (Dohare et al.'s AdamGnT restarts a count
   per entry; Sokar et al.'s JAX code, like this one, does not).

**ReDo** (Sokar, Agarwal, Castro & Evci 2023, "The dormant neuron phenomenon in deep
reinforcement learning"): every T steps, score each hidden unit on a batch by
s_{l,i} = E_x|a_{l,i}| / ((1/d_l) Σ_j E_x|a_{l,j}|) (:func:`ntkplast.dormancy.dormancy_scores`)
and replace the τ-dormant ones (s ≤ τ).

**Continual backprop** (Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood & Sutton 2024, "Loss of
plasticity in deep continual learning", Algorithm 1, contribution utility), after every step and
for every hidden layer l::

    a_i ← a_i + 1                                                     (age)
    u_i ← η·u_i + (1 − η)·E_x|h_{l,i}(x)| · Σ_k |W_{l+1}[i, k]|        (utility, decay η)
    û_i = u_i / (1 − η^{a_i})                                          (bias-corrected)
    E   = {i : a_i > m}                                                 (mature units)
    c  ← c + ρ·|E|;  r = min(⌊c⌋, |E|);  c ← c − ⌊c⌋                   (replacement accumulator)

and the r units of E with the smallest û are replaced (u_i = 0, a_i = 0). The accumulator stays
in [0, 1), so no step replaces more than ⌊ρ·|E|⌋ + 1 units: it cannot save up a burst (for
example while no unit is mature yet), and the long-run rate is ρ·|E| per step.

Both run inside the jitted step through a ``post_step(params, opt_state, x, key, step) ->
(params, opt_state)`` hook that sees the step's minibatch ``x``; continual backprop carries its
(u, a, c) in the optimizer state through :func:`with_state`. ReDo also runs at task ends
(:func:`redo_task_end`, a ``train.Hooks.on_task_end`` on a fixed probe batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntkplast import dormancy, models
from ntkplast.errors import NtkplastError
from ntkplast.regularizers._common import (
    Array,
    Params,
    check_nonnegative,
    check_positive_int,
)
from ntkplast.regularizers.decoupled import L2InitState
from ntkplast.validate import legacy_arguments

PostStep = Callable[[Params, Any, Array, Array, Array], tuple[Params, Any]]

__all__ = ["CBPState", "WithState", "cbp_init", "cbp_step", "continual_backprop",
           "reinitialize_units", "redo", "redo_step", "redo_task_end", "reset_optimizer_state",
           "unit_weight_masks", "with_state"]


# ---------------------------------------------------------------------------------------------
# Carrying a method's own state in the optimizer state
# ---------------------------------------------------------------------------------------------

class WithState(NamedTuple):
    """An optimizer state with a reset method's state beside it (:func:`with_state`)."""

    inner: Any
    extra: Any


def with_state(tx: optax.GradientTransformation,
               init_fn: Callable[[Params], Any]) -> optax.GradientTransformation:
    """Wrap ``tx`` so its state is ``WithState(tx_state, init_fn(params))``.

    The update is ``tx``'s; ``extra`` passes through untouched (a ``post_step`` hook updates
    it). Keeping the method's state here means checkpoints store it and a resumed run continues
    it exactly, and a reset-reference run (which calls ``tx.init`` on fresh params) starts it anew.
    """

    def init(params: Params) -> WithState:
        return WithState(tx.init(params), init_fn(params))

    def update(updates, state: WithState, params=None):
        updates, inner = tx.update(updates, state.inner, params)
        return updates, WithState(inner, state.extra)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------------
# The shared reset mechanics
# ---------------------------------------------------------------------------------------------

def _outgoing_mask(unit_mask: Array, w_next: Array) -> Array:
    """Boolean mask, shaped like ``w_next``, of the weights leaving the masked units."""
    d = unit_mask.shape[0]
    if w_next.ndim == 4:  # conv → conv: input-channel axis
        return jnp.broadcast_to(unit_mask[None, None, :, None], w_next.shape)
    rows = w_next.shape[0]
    if rows % d:
        raise NtkplastError(f"layer of {d} units feeds a weight with {rows} input rows; "
                            f"expected a multiple of {d}")
    # dense → dense (rows = d) or conv → flatten → dense (rows = H·W·d, channel fastest)
    return jnp.broadcast_to(jnp.tile(unit_mask, rows // d)[:, None], w_next.shape)


def unit_weight_masks(params: Params, unit_masks: Sequence[Array]) -> tuple[Params, Params]:
    """(incoming, outgoing) boolean params-shaped trees for per-hidden-layer unit masks.

    ``unit_masks[l]`` is a ``(d_l,)`` mask over the units of hidden layer l (the output of
    weight layer l), for l = 0 … L−2. *incoming* marks their columns of W_l and entries of b_l;
    *outgoing* marks their rows of W_{l+1}.
    """
    if len(unit_masks) != len(params) - 1:
        raise NtkplastError(f"expected one unit mask per hidden layer ({len(params) - 1}), "
                            f"got {len(unit_masks)}")
    incoming = [{k: jnp.zeros(v.shape, bool) for k, v in p.items()} for p in params]
    outgoing = [{k: jnp.zeros(v.shape, bool) for k, v in p.items()} for p in params]
    for i, m in enumerate(unit_masks):
        incoming[i]["W"] = jnp.broadcast_to(m, params[i]["W"].shape)
        if "b" in params[i]:
            incoming[i]["b"] = m
        outgoing[i + 1]["W"] = _outgoing_mask(m, params[i + 1]["W"])
    return tuple(incoming), tuple(outgoing)


def reinitialize_units(params: Params, fresh: Params, unit_masks: Sequence[Array]) -> Params:
    """Re-draw the masked units' incoming weights from ``fresh``; zero their outgoing weights."""
    incoming, outgoing = unit_weight_masks(params, unit_masks)
    return jax.tree_util.tree_map(
        lambda p, f, i, o: jnp.where(o, jnp.zeros_like(p), jnp.where(i, f, p)),
        params, fresh, incoming, outgoing)


def reset_optimizer_state(opt_state: Any, params: Params, weight_mask: Params) -> Any:
    """Zero the optimizer state of exactly the weights in ``weight_mask``.

    Every subtree of ``opt_state`` with the params' tree structure (Adam's μ and ν, momentum's
    trace, …) is set to 0 where the mask is True and left unchanged elsewhere; counts, schedules
    and L2 Init's anchor θ₀ (:class:`~ntkplast.regularizers.decoupled.L2InitState`) are not touched.
    """
    treedef = jax.tree_util.tree_structure(params)

    def is_param_like(node) -> bool:
        return (isinstance(node, L2InitState)
                or jax.tree_util.tree_structure(node) == treedef)

    def reset(node):
        if isinstance(node, L2InitState) or jax.tree_util.tree_structure(node) != treedef:
            return node
        return jax.tree_util.tree_map(lambda s, m: jnp.where(m, jnp.zeros_like(s), s),
                                      node, weight_mask)

    return jax.tree_util.tree_map(reset, opt_state, is_leaf=is_param_like)


def _replace_units(init_fn: Callable[[Array], Params], params: Params, opt_state: Any,
                   unit_masks: list[Array], key: Array) -> tuple[Params, Any]:
    """Steps 1–3 of the module docstring for the masked units.

    The fresh draw ``init_fn(key)`` (a whole ``model.init``: QR factorisations for an
    orthogonal init) runs only on steps where some unit is replaced (``lax.cond``).
    """

    def replace(args):
        p, s = args
        new_params = reinitialize_units(p, init_fn(key), unit_masks)
        touched = jax.tree_util.tree_map(jnp.logical_or, *unit_weight_masks(p, unit_masks))
        return new_params, reset_optimizer_state(s, p, touched)

    any_unit = jnp.any(jnp.stack([jnp.any(m) for m in unit_masks]))
    return jax.lax.cond(any_unit, replace, lambda a: a, (params, opt_state))


def check_resettable(model: models.Model, method: str) -> None:
    """Raise unless every hidden unit's outgoing weights are the next layer's row for it.

    A residual skip carries the unit's value past the next layer, so zeroing that row no
    longer silences it; GroupSort's outputs are sorted positions, not units; a CReLU unit
    feeds two rows (relu(z) and relu(−z)) and is scored on two features; an orthogonal
    layer's columns all depend on every free parameter. No reset is defined there. (A
    LayerNorm after the weight layer is allowed: a re-drawn unit shifts the norm's mean and
    variance, so the function moves slightly at the reset.)
    """
    spec = model.spec
    grouped = spec.activation in models.GROUP_ACTIVATIONS + models.WIDENING_ACTIVATIONS
    if spec.residual or grouped or spec.weight_constraint != "none":
        what = ("residual skips" if spec.residual else
                f"activation={spec.activation!r} (units are not one feature each)" if grouped
                else "orthogonal layers (a column of W_eff is no column of the free W)")
        raise NtkplastError(f"{method}: unit resets zero a unit's outgoing weights to keep the "
                            f"function, which {what} do not allow; use a plain stack "
                            f"(residual = false, an elementwise activation) or another method")


def _init_fn(model: models.Model, params: Params, input_shape: Sequence[int] | None,
             init_fn: Callable[[Array], Params] | None) -> Callable[[Array], Params]:
    if init_fn is not None:
        return init_fn
    shape = _input_shape(model, params, input_shape)
    return lambda key: model.init(key, shape)


def _input_shape(model: models.Model, params: Params,
                 input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if model.spec.kind == "mlp":
        return (int(params[0]["W"].shape[0]),)
    raise NtkplastError("input_shape: a cnn's re-initialisation needs the per-example input "
                        "shape (H, W, C); pass input_shape=")


def _hidden_activations(model: models.Model, params: Params, x: Array) -> list[Array]:
    _, post = model.intermediates(params, x)
    return post


# ---------------------------------------------------------------------------------------------
# ReDo
# ---------------------------------------------------------------------------------------------

@legacy_arguments(positional=("key",), after=4)
def redo_step(model: models.Model, params: Params, opt_state: Any, x: Array, *, key: Array,
              tau: float = 0.1, input_shape: Sequence[int] | None = None,
              init_fn: Callable[[Array], Params] | None = None
              ) -> tuple[Params, Any, list[Array]]:
    """One ReDo reset on batch ``x``: replace every τ-dormant hidden unit (module docstring).

    ``key`` (keyword-only) feeds ``init_fn(key) -> params``, which draws the fresh weights
    (default ``model.init(key, input_shape)``; ``input_shape`` defaults to ``(d_in,)`` for an
    MLP). Returns (params, opt_state, per-hidden-layer dormant masks). Pure and jit-compatible.
    ``key`` as the fifth positional argument (the 0.2 spelling) still works, with a
    DeprecationWarning.
    """
    init_fn = _init_fn(model, params, input_shape, init_fn)
    masks = [dormancy.dormancy_scores(a) <= tau
             for a in _hidden_activations(model, params, x)]
    params, opt_state = _replace_units(init_fn, params, opt_state, masks, key)
    return params, opt_state, masks


def redo(model: models.Model, *, tau: float = 0.1, every: int = 1000,
         input_shape: Sequence[int] | None = None,
         init_fn: Callable[[Array], Params] | None = None) -> PostStep:
    """ReDo every ``every`` steps on the step's minibatch, as a ``post_step`` hook.

    ``post_step(params, opt_state, x, key, step)`` resets after the updates numbered
    every−1, 2·every−1, … (global step counted from 0). ``tau``: the dormancy threshold τ;
    ``input_shape``, ``init_fn`` as in :func:`redo_step`.
    """
    check_resettable(model, "redo")
    tau = check_nonnegative("tau", tau)
    every = check_positive_int("every", every)

    def post_step(params: Params, opt_state: Any, x: Array, key: Array, step: Array):
        def reset(args):
            p, s = args
            p, s, _ = redo_step(model, p, s, x, key=key, tau=tau, input_shape=input_shape,
                                init_fn=init_fn)
            return p, s

        return jax.lax.cond((step + 1) % every == 0, reset, lambda a: a, (params, opt_state))

    return post_step


def redo_task_end(model: models.Model, x: Array, *, tau: float = 0.1,
                  input_shape: Sequence[int] | None = None,
                  init_fn: Callable[[Array], Params] | None = None):
    """ReDo at each task's end on the fixed probe batch ``x`` (a ``train.Hooks.on_task_end``)."""
    check_resettable(model, "redo")
    tau = check_nonnegative("tau", tau)
    x = jnp.asarray(x)

    @jax.jit
    def apply(params, opt_state, key):
        params, opt_state, _ = redo_step(model, params, opt_state, x, key=key, tau=tau,
                                         input_shape=input_shape, init_fn=init_fn)
        return params, opt_state

    def on_task_end(params: Params, opt_state: Any, task: int, key: Array):
        del task
        return apply(params, opt_state, key)

    return on_task_end


# ---------------------------------------------------------------------------------------------
# Continual backprop
# ---------------------------------------------------------------------------------------------

class CBPState(NamedTuple):
    """Per hidden layer: utilities u, ages a (int32) and the replacement accumulator c."""

    utility: tuple[Array, ...]
    age: tuple[Array, ...]
    accumulator: tuple[Array, ...]


def cbp_init(params: Params) -> CBPState:
    """Zero utilities, ages and accumulators for every hidden layer of ``params``."""
    widths = [p["W"].shape[-1] for p in params[:-1]]
    return CBPState(tuple(jnp.zeros((d,), jnp.float32) for d in widths),
                    tuple(jnp.zeros((d,), jnp.int32) for d in widths),
                    tuple(jnp.zeros((), jnp.float32) for _ in widths))


def _outgoing_l1(unit_count: int, w_next: Array) -> Array:
    """Σ_k |W_{l+1}[i, k]| per unit i (all flattened positions of a channel; conv kernels)."""
    a = jnp.abs(w_next)
    if w_next.ndim == 4:
        return jnp.sum(a, axis=(0, 1, 3))
    return jnp.sum(a.reshape(-1, unit_count, a.shape[-1]), axis=(0, 2))


def _smallest_k(values: Array, eligible: Array, k: Array) -> Array:
    """Mask of the ``k`` eligible entries with the smallest values (ties: lower index first)."""
    order = jnp.argsort(jnp.where(eligible, values, jnp.inf))
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
    return (rank < k) & eligible


@legacy_arguments(positional=("key",), after=5)
def cbp_step(model: models.Model, params: Params, opt_state: Any, state: CBPState, x: Array, *,
             key: Array, replacement_rate: float = 1e-4, decay_rate: float = 0.99,
             maturity_threshold: int = 100, input_shape: Sequence[int] | None = None,
             init_fn: Callable[[Array], Params] | None = None
             ) -> tuple[Params, Any, CBPState, list[Array]]:
    """One continual-backprop step on batch ``x`` (module docstring). Pure and jit-compatible.

    h is taken on ``x`` at the current (post-update) params; ``key``, ``input_shape``,
    ``init_fn`` as in :func:`redo_step` (``key`` as the sixth positional argument, the 0.2
    spelling, still works with a DeprecationWarning). Returns (params, opt_state, state,
    per-hidden-layer masks of the replaced units).
    """
    init_fn = _init_fn(model, params, input_shape, init_fn)
    acts = _hidden_activations(model, params, x)
    utilities, ages, accs, masks = [], [], [], []
    for j, h in enumerate(acts):
        d = h.shape[-1]
        age = state.age[j] + 1
        mean_abs = jnp.mean(jnp.abs(h), axis=tuple(range(h.ndim - 1)))
        u = decay_rate * state.utility[j] + (1 - decay_rate) * mean_abs * _outgoing_l1(
            d, params[j + 1]["W"])
        u_hat = u / (1 - decay_rate ** age.astype(u.dtype))
        eligible = age > maturity_threshold
        acc = state.accumulator[j] + replacement_rate * jnp.sum(eligible)
        whole = jnp.floor(acc)
        k = jnp.minimum(whole, jnp.sum(eligible)).astype(jnp.int32)
        mask = _smallest_k(u_hat, eligible, k)
        masks.append(mask)
        utilities.append(jnp.where(mask, 0.0, u))
        ages.append(jnp.where(mask, 0, age))
        accs.append(acc - whole)
    params, opt_state = _replace_units(init_fn, params, opt_state, masks, key)
    return params, opt_state, CBPState(tuple(utilities), tuple(ages), tuple(accs)), masks


class ContinualBackprop(NamedTuple):
    """Continual backprop's two plug points.

    ``optimizer(tx)`` wraps the optimizer so its state carries :class:`CBPState`
    (``WithState(tx_state, CBPState)``); ``post_step`` runs :func:`cbp_step` after each update.
    """

    optimizer: Callable[[optax.GradientTransformation], optax.GradientTransformation]
    post_step: PostStep


def continual_backprop(model: models.Model, *, replacement_rate: float = 1e-4,
                       decay_rate: float = 0.99, maturity_threshold: int = 100,
                       input_shape: Sequence[int] | None = None,
                       init_fn: Callable[[Array], Params] | None = None) -> ContinualBackprop:
    """Continual backprop (Dohare et al. 2024) as an optimizer wrapper plus a ``post_step`` hook.

    Args:
      replacement_rate: ρ, the fraction of mature units replaced per step (10⁻⁴ in the paper's
        permuted-MNIST runs).
      decay_rate: η, the utility's running-average decay (0.99).
      maturity_threshold: m, steps a unit is protected after (re)initialisation (100).
      input_shape: per-example input shape (needed for a cnn).
      init_fn: ``init_fn(key) -> params`` draws replacement weights (default ``model.init``).
    """
    check_resettable(model, "continual_backprop")
    replacement_rate = check_nonnegative("replacement_rate", replacement_rate)
    if replacement_rate >= 1:
        raise NtkplastError(f"replacement_rate: expected a fraction in [0, 1), got "
                            f"{replacement_rate!r}")
    decay_rate = check_nonnegative("decay_rate", decay_rate)
    if decay_rate >= 1:
        raise NtkplastError(f"decay_rate: expected a number in [0, 1), got {decay_rate!r}")
    if isinstance(maturity_threshold, bool) or not isinstance(maturity_threshold, int) \
            or maturity_threshold < 0:
        raise NtkplastError(f"maturity_threshold: expected an integer >= 0, got "
                            f"{maturity_threshold!r}")

    def optimizer(tx: optax.GradientTransformation) -> optax.GradientTransformation:
        return with_state(tx, cbp_init)

    def post_step(params: Params, opt_state: WithState, x: Array, key: Array, step: Array):
        del step
        if not isinstance(opt_state, WithState):
            raise NtkplastError("continual_backprop: the optimizer state carries no CBPState; "
                                "wrap the optimizer with continual_backprop(...).optimizer")
        params, inner, state, _ = cbp_step(
            model, params, opt_state.inner, opt_state.extra, x, key=key,
            replacement_rate=replacement_rate, decay_rate=decay_rate,
            maturity_threshold=maturity_threshold, input_shape=input_shape, init_fn=init_fn)
        return params, WithState(inner, state)

    return ContinualBackprop(optimizer, post_step)
