r"""Decoupled steps: the isometry step and AdamO, shrink & perturb, L2 Init's anchored gradient.

A *decoupled* regularizer never enters the loss, so an adaptive optimizer's moments see only the
task gradient (as AdamW decouples weight decay; Loshchilov & Hutter 2019). Each comes in the form
that fits where it is used:

* an optax ``GradientTransformation`` to ``optax.chain`` with any optimizer
  (:func:`isometry_step`, :func:`adamo`, :func:`add_l2_init_gradient`);
* a ``train.Hooks.post_update(params, key, step) -> params`` function, which works with
  ``train.make_trainer`` as it is (:func:`isometry_post_update`, :func:`shrink_perturb`);
* a ``train.Hooks.on_task_end`` function (:func:`shrink_perturb_task_end`).

**AdamO** (Rosseau, Müller & Nowé 2026, "Preserving plasticity in continual learning via
dynamical isometry", §4.4): Adam on the task gradient, then the isometry step on the result,
with the learning rate's schedule::

    W̃_{t+1} = W_t − η_t · Adam_t(∇L)                   (moments m_t, v_t of ∇L only)
    W_{t+1} = W̃_{t+1} − η_iso,t · λ · ∇R(W̃_{t+1})       (η_iso,t = η_t unless given)

with R the isometry penalty (½‖G − s'I‖_F², :mod:`ntkplast.regularizers.penalties`; its λ is
twice the paper's unhalved λ_paper). Cheaper variants (see benchmarks/RESULTS.md, "Regularizer
cost"): ``every=k`` takes the isometry step on every k-th update only, with strength k·λ (the
same average pull); ``num_probes=k`` replaces ∇R by the unbiased Rademacher estimate
:func:`~ntkplast.regularizers.penalties.isometry_gradient_estimate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.regularizers._common import (
    Array,
    LayerSelection,
    Params,
    check_layers,
    check_nonnegative,
    check_positive_int,
    select_layers,
)
from ntkplast.regularizers.penalties import isometry_gradient, isometry_gradient_estimate
from ntkplast.validate import legacy_arguments

Schedule = float | Callable[[Array], Array]
PostUpdate = Callable[[Params, Array, Array], Params]
OnTaskEnd = Callable[[Params, Any, int, Array], tuple[Params, Any]]

__all__ = ["IsometryStepState", "L2InitState", "add_l2_init_gradient", "adamo",
           "isometry_post_update", "isometry_step", "shrink_perturb", "shrink_perturb_task_end"]


def _rate(learning_rate: Schedule, count: Array) -> Array:
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _check_rate(learning_rate: Schedule) -> Schedule:
    if callable(learning_rate):
        return learning_rate
    lr = check_nonnegative("learning_rate", learning_rate)
    if lr <= 0:
        raise NtkplastError(f"learning_rate: expected a positive number or an optax schedule, "
                            f"got {learning_rate!r}")
    return lr


def _iso_grad_fn(num_probes: int | None, scale: float, rect_correction: bool, normalize: bool,
                 layers: LayerSelection, model: models.Model | None):
    """``grad(params, key)``: exact closed-form ∇R, or its ``num_probes``-vector estimate."""
    kw = dict(scale=scale, rect_correction=rect_correction, normalize=normalize, layers=layers,
              model=model)
    if num_probes is None:
        return lambda params, key: isometry_gradient(params, **kw)
    num_probes = check_positive_int("num_probes", num_probes)
    return lambda params, key: isometry_gradient_estimate(params, key=key, num_probes=num_probes,
                                                          **kw)


Pull = Callable[[Any, Callable[[Any], Params], Array, Array], Any]


def _isometry_pull(lam: float, learning_rate: Schedule, *, scale: float, rect_correction: bool,
                   normalize: bool, layers: LayerSelection, model: models.Model | None,
                   every: int, num_probes: int | None) -> Pull | None:
    """The isometry step both plug points share; ``None`` when λ = 0 (nothing to do).

    Checks the settings once and returns ``pull(tree, point, key, t)``: for the update numbered
    t (from 0), tree − η(t)·every·λ·∇R(point(tree)) when every divides t + 1, else tree
    unchanged (``lax.cond``). :func:`isometry_step` pulls the optimizer's update, measured at
    params + update; :func:`isometry_post_update` pulls the params themselves.
    """
    lam = check_nonnegative("lam", lam)
    learning_rate = _check_rate(learning_rate)
    every = check_positive_int("every", every)
    layers = check_layers(layers)
    grad_fn = _iso_grad_fn(num_probes, scale, rect_correction, normalize, layers, model)
    if lam == 0:
        return None

    def pull(tree: Any, point: Callable[[Any], Params], key: Array, t: Array) -> Any:
        coeff = _rate(learning_rate, t) * (lam * every)

        def step(x):
            g = grad_fn(point(x), key)
            return jax.tree_util.tree_map(lambda a, gi: a - coeff * gi, x, g)

        if every == 1:
            return step(tree)
        return jax.lax.cond((t + 1) % every == 0, step, lambda x: x, tree)

    return pull


def _require_params(name: str, params: Params | None) -> None:
    """Raise unless an optax ``update`` was given the params (``name`` needs them)."""
    if params is None:
        raise NtkplastError(f"{name} needs the params: call update(grads, state, params)")


def _initial_key(key: Array | int | None) -> Array:
    """A PRNG key from a key, an integer seed, or ``None`` (key 0)."""
    if key is None:
        return jax.random.PRNGKey(0)
    if isinstance(key, int | np.integer):
        return jax.random.PRNGKey(int(key))
    return jnp.asarray(key)


class IsometryStepState(NamedTuple):
    """State of :func:`isometry_step`: the update count (for the schedule) and a PRNG key."""

    count: Array
    key: Array


@legacy_arguments(renamed={"probes": "num_probes", "seed": "key"})
def isometry_step(lam: float, learning_rate: Schedule, *, key: Array | int | None = None,
                  scale: float = 1.0, rect_correction: bool = True, normalize: bool = False,
                  layers: LayerSelection = "hidden", model: models.Model | None = None,
                  every: int = 1, num_probes: int | None = None) -> optax.GradientTransformation:
    """The decoupled isometry step, to chain *after* an optimizer (AdamO's second half).

    Given the optimizer's update u_t and the params W_t it returns
    u_t − η_t·λ·∇R(W_t + u_t): the isometry step taken from the point the optimizer reached, so
    ``apply_updates`` lands on W̃ − η_t λ ∇R(W̃), W̃ = W_t + u_t. Nothing enters the optimizer's
    moments. ``λ = 0`` returns u_t unchanged (bit-exact).

    Args:
      lam: λ ≥ 0, in the ½‖G − s'I‖² convention of
        :func:`~ntkplast.regularizers.penalties.isometry_loss`
        (λ = 2·λ_paper for the paper's unhalved ‖WᵀW − I‖²).
      learning_rate: η_iso: a float or an optax schedule of the update count (pass the
        optimizer's own schedule so the step follows it).
      key: PRNG key (or an integer seed) of the probe vectors, carried in the state; ``None``
        is key 0. ``seed=``, its 0.2 name, still works with a DeprecationWarning.
      scale: as in :func:`~ntkplast.regularizers.penalties.isometry_penalty`.
      rect_correction: as in :func:`~ntkplast.regularizers.penalties.isometry_penalty`.
      normalize: as in :func:`~ntkplast.regularizers.penalties.isometry_penalty`.
      layers: as in :func:`~ntkplast.regularizers.penalties.isometry_penalty`.
      model: as in :func:`~ntkplast.regularizers.penalties.isometry_penalty`.
      every: take the step after every ``every``-th update only, with strength ``every``·λ.
      num_probes: None for the exact closed-form ∇R; k for the k-probe randomised estimate
        (``probes=`` in 0.2, still accepted with a DeprecationWarning).

    Examples:
      With no task gradient, one step of η·λ = 0.05 moves W = 2I along ∇R = 12·I to 1.4·I; the
      readout is not a hidden layer and stays:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(2), "b": jnp.zeros(2)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((2, 1)), "b": jnp.zeros(1)})      # readout
      >>> zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
      >>> opt = optax.chain(optax.sgd(0.1), regularizers.isometry_step(0.5, 0.1))
      >>> updates, state = opt.update(zero_grads, opt.init(params), params)
      >>> new = optax.apply_updates(params, updates)
      >>> print(*(f"{w:.3f}" for w in jnp.diag(new[0]["W"])))
      1.400 1.400
      >>> print(*(f"{w:.3f}" for w in new[1]["W"].ravel()))
      1.000 1.000
    """
    pull = _isometry_pull(lam, learning_rate, scale=scale, rect_correction=rect_correction,
                          normalize=normalize, layers=layers, model=model, every=every,
                          num_probes=num_probes)
    first_key = _initial_key(key)

    def init(params: Params) -> IsometryStepState:
        del params
        return IsometryStepState(jnp.zeros([], jnp.int32), first_key)

    def update(updates, state: IsometryStepState, params=None):
        _require_params("isometry_step", params)
        count = state.count + 1
        if pull is None:
            return updates, IsometryStepState(count, state.key)
        key, sub = jax.random.split(state.key)
        updates = pull(updates, lambda u: optax.apply_updates(params, u), sub, state.count)
        return updates, IsometryStepState(count, key)

    return optax.GradientTransformation(init, update)


@legacy_arguments(renamed={"probes": "num_probes", "seed": "key"})
def adamo(learning_rate: Schedule, lam: float = 1e-3, *, key: Array | int | None = None,
          b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          iso_learning_rate: Schedule | None = None, scale: float = 1.0,
          rect_correction: bool = True, normalize: bool = False,
          layers: LayerSelection = "hidden", model: models.Model | None = None, every: int = 1,
          num_probes: int | None = None) -> optax.GradientTransformation:
    """AdamO (module docstring): ``optax.chain(optax.adam(...), isometry_step(...))``.

    The state is ``(adam_state, IsometryStepState)``; ``adam_state`` is exactly optax.adam's, and
    its moments see only the task gradient. With ``lam = 0`` the parameters follow optax.adam
    bit for bit. ``iso_learning_rate`` defaults to ``learning_rate`` (schedule included).
    The paper's reported setting is λ_paper = 1e-3 in its unhalved convention, λ = 2e-3 here,
    with learning rate 1e-4 and, for ReLU networks, ``scale=2``; the default ``lam=1e-3`` is
    half that pull. Other arguments (``key``, ``num_probes`` and their 0.2 names ``seed``,
    ``probes``) as in :func:`isometry_step`.

    Examples:
      With λ = 0 AdamO is Adam, bit for bit:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(2), "b": jnp.zeros(2)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((2, 1)), "b": jnp.zeros(1)})      # readout
      >>> zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
      >>> grads = jax.tree_util.tree_map(jnp.ones_like, params)
      >>> adamo, adam = regularizers.adamo(1e-3, 0.0), optax.adam(1e-3)
      >>> u_adamo, _ = adamo.update(grads, adamo.init(params), params)
      >>> u_adam, _ = adam.update(grads, adam.init(params), params)
      >>> all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree_util.tree_leaves(u_adamo),
      ...                                                 jax.tree_util.tree_leaves(u_adam)))
      True
    """
    iso_lr = learning_rate if iso_learning_rate is None else iso_learning_rate
    return optax.chain(
        optax.adam(learning_rate, b1=b1, b2=b2, eps=eps),
        isometry_step(lam, iso_lr, key=key, scale=scale, rect_correction=rect_correction,
                      normalize=normalize, layers=layers, model=model, every=every,
                      num_probes=num_probes))


@legacy_arguments(renamed={"probes": "num_probes"})
def isometry_post_update(lam: float, learning_rate: Schedule, *, scale: float = 1.0,
                         rect_correction: bool = True, normalize: bool = False,
                         layers: LayerSelection = "hidden", model: models.Model | None = None,
                         every: int = 1, num_probes: int | None = None) -> PostUpdate:
    """The isometry step as a ``train.Hooks.post_update``: W ← W − η(step)·λ·∇R(W).

    Run after the optimizer step, so ``Hooks(post_update=...)`` with ``optimizer="adam"`` is
    AdamO (up to float rounding, the same map as :func:`adamo`) without changing the optimizer.
    ``step`` is the global step of the update just taken (0 for the first), which a schedule
    receives; ``every``/``num_probes`` as in :func:`isometry_step` (the hook's key draws the
    probes; ``probes=``, the 0.2 name, still works with a DeprecationWarning).

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(2), "b": jnp.zeros(2)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((2, 1)), "b": jnp.zeros(1)})      # readout
      >>> zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
      >>> hook = regularizers.isometry_post_update(0.5, 0.1)
      >>> new = hook(params, jax.random.PRNGKey(0), jnp.asarray(0))   # W ← W − 0.05 · 12·I
      >>> print(*(f"{w:.3f}" for w in jnp.diag(new[0]["W"])))
      1.400 1.400
    """
    pull = _isometry_pull(lam, learning_rate, scale=scale, rect_correction=rect_correction,
                          normalize=normalize, layers=layers, model=model, every=every,
                          num_probes=num_probes)

    def post_update(params: Params, key: Array, step: Array) -> Params:
        if pull is None:
            return params
        return pull(params, lambda p: p, key, step)

    return post_update


# ---------------------------------------------------------------------------------------------
# Shrink & perturb
# ---------------------------------------------------------------------------------------------

def _shrink_perturb_map(shrink: float, sigma: float, noise: Callable[[Array], Params] | None,
                        layers: LayerSelection, include_biases: bool):
    shrink = check_nonnegative("shrink", shrink)
    if shrink > 1:
        raise NtkplastError(f"shrink: expected a fraction in [0, 1], got {shrink!r}")
    sigma = check_nonnegative("sigma", sigma)
    layers = check_layers(layers)

    def apply(params: Params, key: Array) -> Params:
        selected = set(select_layers(len(params), layers))
        if noise is None:
            leaves, treedef = jax.tree_util.tree_flatten(params)
            keys = jax.random.split(key, len(leaves))
            eps = jax.tree_util.tree_unflatten(
                treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])
        else:
            eps = noise(key)
        out = []
        for i, (p, e) in enumerate(zip(params, eps)):
            q = dict(p)
            if i in selected:
                for name in p:
                    if name == "W" or include_biases:
                        q[name] = (1.0 - shrink) * p[name] + sigma * e[name]
            out.append(q)
        return tuple(out)

    return apply


def shrink_perturb(shrink: float, sigma: float, *, every: int = 1,
                   noise: Callable[[Array], Params] | None = None,
                   layers: LayerSelection = "all", include_biases: bool = True) -> PostUpdate:
    """Shrink & perturb (Ash & Adams 2020, "On warm-starting neural network training") as a
    ``train.Hooks.post_update``: after every ``every``-th step, θ ← (1 − shrink)·θ + σ·ε.

    ε ~ N(0, I) by default; pass ``noise=lambda key: model.init(key, input_shape)`` to perturb
    with a fresh draw from the initialisation distribution, as Ash & Adams do (a whole
    ``model.init`` per application: with an orthogonal init that is one QR factorisation per
    layer, slow if taken every step). Drawing the noise dominates the cost (3.7× an Adam step
    on the benchmark MLP with ``every=1``; benchmarks/RESULTS.md). Applied every
    step (``every=1``) it is the continual variant Dohare et al. (2024) compare against; at task
    boundaries use :func:`shrink_perturb_task_end`.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(2), "b": jnp.zeros(2)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((2, 1)), "b": jnp.zeros(1)})      # readout
      >>> zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
      >>> hook = regularizers.shrink_perturb(0.1, 0.0)                  # σ = 0: shrink only
      >>> new = hook(params, jax.random.PRNGKey(0), jnp.asarray(0))
      >>> print(*(f"{w:.3f}" for w in jnp.diag(new[0]["W"])))           # (1 − 0.1) · 2
      1.800 1.800
      >>> noisy = regularizers.shrink_perturb(0.1, 0.01)(params, jax.random.PRNGKey(0), 0)
      >>> bool(jnp.abs(noisy[0]["W"] - new[0]["W"]).max() > 0)
      True
    """
    every = check_positive_int("every", every)
    apply = _shrink_perturb_map(shrink, sigma, noise, layers, include_biases)

    def post_update(params: Params, key: Array, step: Array) -> Params:
        if every == 1:
            return apply(params, key)
        return jax.lax.cond((step + 1) % every == 0, lambda p: apply(p, key), lambda p: p,
                            params)

    return post_update


def shrink_perturb_task_end(shrink: float, sigma: float, *,
                            noise: Callable[[Array], Params] | None = None,
                            layers: LayerSelection = "all",
                            include_biases: bool = True) -> OnTaskEnd:
    """Shrink & perturb once at each task's end (``train.Hooks.on_task_end``); the optimizer
    state is kept. Formula and arguments as in :func:`shrink_perturb`.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from ntkplast import regularizers
      >>> params = ({"W": 2.0 * jnp.eye(2), "b": jnp.zeros(2)},      # hidden layer: W = 2I
      ...           {"W": jnp.ones((2, 1)), "b": jnp.zeros(1)})      # readout
      >>> zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
      >>> hook = regularizers.shrink_perturb_task_end(0.5, 0.0)
      >>> new, opt_state = hook(params, "the optimizer state", 3, jax.random.PRNGKey(0))
      >>> print(*(f"{w:.3f}" for w in jnp.diag(new[0]["W"])), "|", opt_state)
      1.000 1.000 | the optimizer state
    """
    apply = jax.jit(_shrink_perturb_map(shrink, sigma, noise, layers, include_biases))

    def on_task_end(params: Params, opt_state: Any, task: int, key: Array):
        del task
        return apply(params, key), opt_state

    return on_task_end


# ---------------------------------------------------------------------------------------------
# L2 Init with its anchor in the optimizer state
# ---------------------------------------------------------------------------------------------

class L2InitState(NamedTuple):
    """θ₀, the parameters the transformation was initialised with."""

    init_params: Params


def add_l2_init_gradient(lam: float, *, squared: bool = True) -> optax.GradientTransformation:
    """L2 Init's gradient, to chain *before* the optimizer (coupled, like a loss term).

    g ← g + 2λ(θ − θ₀) — the gradient of λ‖θ − θ₀‖² (Kumar, Marklund & Van Roy 2023); with
    ``squared=False``, g ← g + λ(θ_t − θ₀_t)/‖θ_t − θ₀_t‖ per tensor (the unsquared variant,
    0 at θ_t = θ₀_t). θ₀ is the params passed to ``init`` — a run's (or a reset reference's)
    own initialisation — and is kept in the state (so it is checkpointed). Every parameter,
    biases included, as in the paper. ``optax.chain(add_l2_init_gradient(λ), optax.adam(η))``
    equals adding :func:`~ntkplast.regularizers.penalties.l2_init_penalty` to the loss.

    Examples:
      The pull 2λ(θ − θ₀) toward the parameters the state was initialised with:

      >>> import jax.numpy as jnp
      >>> from ntkplast import regularizers
      >>> init = ({"W": jnp.zeros((2, 2))},)
      >>> transform = regularizers.add_l2_init_gradient(0.5)
      >>> state = transform.init(init)
      >>> moved = ({"W": jnp.ones((2, 2))},)
      >>> grads = ({"W": jnp.zeros((2, 2))},)
      >>> out, _ = transform.update(grads, state, moved)
      >>> print(*(f"{g:.3f}" for g in out[0]["W"].ravel()))              # 2 · 0.5 · (1 − 0)
      1.000 1.000 1.000 1.000
    """
    lam = check_nonnegative("lam", lam)

    def init(params: Params) -> L2InitState:
        return L2InitState(jax.tree_util.tree_map(jnp.array, params))

    def update(updates, state: L2InitState, params=None):
        _require_params("add_l2_init_gradient", params)

        def pull(g, p, p0):
            d = p - p0
            if squared:
                return g + 2.0 * lam * d
            sq = jnp.sum(d * d)
            pos = sq > 0
            return g + lam * jnp.where(pos, d / jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)

        return jax.tree_util.tree_map(pull, updates, params, state.init_params), state

    return optax.GradientTransformation(init, update)
