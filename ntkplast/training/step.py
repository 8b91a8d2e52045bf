"""One jit-compiled training step and the pieces it is made of.

Objectives (the loss a step minimises and the per-example score a run reports), the optimizer
factory, :class:`TrainState`, :func:`make_trainer` (the step scanned over a chunk of minibatches,
optionally ``jax.vmap``-ed over seeds) and the deterministic minibatch schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkplast import models
from ntkplast.hooks import Hooks
from ntkplast.training.config import RunConfig, TrainConfig

__all__ = ["OBJECTIVES", "Evaluation", "Objective", "TrainState", "Trainer", "correct",
           "cross_entropy", "make_optimizer", "make_trainer", "mean_squared_error",
           "lane_of", "minibatch_indices", "nll", "online_indices", "set_lane", "squared_errors",
           "stack_trees", "task_batches"]

Array = jax.Array


class TrainState(NamedTuple):
    """What a step carries: parameters, optimizer state, and the global step."""

    params: models.Params
    opt_state: Any
    step: Array


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """The optax transformation named by ``cfg.optimizer``."""
    if cfg.optimizer == "sgd":
        return optax.sgd(cfg.learning_rate)
    if cfg.optimizer == "momentum":
        return optax.sgd(cfg.learning_rate, momentum=cfg.momentum)
    return optax.adam(cfg.learning_rate)


def nll(logits: Array, labels: Array) -> Array:
    """Per example the softmax cross-entropy −log softmax(f(x_i))_{y_i}."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy −(1/B) Σ_i log softmax(f(x_i))_{y_i}."""
    return jnp.mean(nll(logits, labels))


def mean_squared_error(outputs: Array, targets: Array) -> Array:
    """(1/(B·K)) Σ_i ‖f(x_i) − y_i‖², targets ``B × K`` (or ``B`` for one output)."""
    return jnp.mean(squared_errors(outputs, targets))


def correct(logits: Array, labels: Array) -> Array:
    """Per example 1 if argmax_k f_k(x_i) = y_i, else 0."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def squared_errors(outputs: Array, targets: Array) -> Array:
    """Per example (1/K) ‖f(x_i) − y_i‖²."""
    return jnp.mean((outputs - targets.reshape(outputs.shape)) ** 2, axis=-1)


class Objective(NamedTuple):
    """A training loss, the per-example score a run reports, and the score's name.

    The online score of a task is the mean of ``score`` over every training example of the task,
    each taken before the step that trains on it; the training and test scores its mean over the
    task's training and test sets at the end of the task. ``example_loss`` is the loss per
    example (``loss`` is its mean), reported the same three ways. ``plasticity_loss`` is signed
    so that a positive value always means the run learned the task worse than its reference.
    """

    loss: Callable[[Array, Array], Array]
    score: Callable[[Array, Array], Array]
    metric: str
    higher_is_better: bool
    example_loss: Callable[[Array, Array], Array]


OBJECTIVES: dict[str, Objective] = {
    "cross_entropy": Objective(cross_entropy, correct, "accuracy", True, nll),
    "mse": Objective(mean_squared_error, squared_errors, "mse", False, squared_errors),
}


class Evaluation(NamedTuple):
    """Mean score (accuracy or mean squared error) and mean loss over a set of examples."""

    score: float
    loss: float



class Trainer(NamedTuple):
    """Jit-compiled pieces of training, built once per (model, optimizer, hooks, objective).

    ``run_chunk(state, x, y, idx)`` scans the steps of one chunk with the trainer's step key
    (``make_trainer``'s ``key``);
    ``run_chunk_keyed(state, x, y, idx, step_key)`` is the same with the key as an argument;
    ``run_chunks(state, x, y, idx, step_keys)`` is ``run_chunk_keyed`` vmapped over S runs
    (parameters, optimizer states, ``idx`` of shape S × C × B and keys stacked on axis 0; the
    global step shared). Each returns the new state and, per step, (loss with any penalty,
    summed score, summed per-example loss), all taken on the minibatch before the step.
    ``evaluate(params, x, y)`` is the objective's mean score and loss (:class:`Evaluation`).
    """

    run_chunk: Callable[..., tuple[TrainState, tuple[Array, Array, Array]]]
    run_chunk_keyed: Callable[..., tuple[TrainState, tuple[Array, Array, Array]]]
    run_chunks: Callable[..., tuple[TrainState, tuple[Array, Array, Array]]]
    evaluate: Callable[[models.Params, Array, Array], Evaluation]


def make_trainer(model: models.Model, tx: optax.GradientTransformation, hooks: Hooks,
                 objective: Objective = OBJECTIVES["cross_entropy"], *, key: Array) -> Trainer:
    """Build the jitted chunk runners (:class:`Trainer`).

    ``idx`` is ``C × B`` minibatch indices into the task's ``x``/``y`` (on device); a chunk
    scans C steps and returns the new state and per step (loss, summed score, summed
    per-example loss) before the step (for classification the score is the number correct).

    Args:
      model: the network whose ``apply`` the loss differentiates.
      tx: the optimizer.
      hooks: the method's plug points (penalty, post-update, post-step; :class:`Hooks`).
      objective: the loss and score (:data:`OBJECTIVES`; default cross-entropy).
      key: the step key of ``run_chunk``: step t is keyed by ``fold_in(key, t)`` (the
        ``run_chunk_keyed``/``run_chunks`` variants take theirs as an argument instead).
    """

    def loss_fn(params, xb, yb):
        outputs = model.apply(params, xb)
        loss = objective.loss(outputs, yb)
        if hooks.penalty is not None:
            loss = loss + hooks.penalty(params)
        return loss, (jnp.sum(objective.score(outputs, yb)),
                      jnp.sum(objective.example_loss(outputs, yb)))

    def step(state: TrainState, batch_idx, x, y, step_key):
        xb, yb = x[batch_idx], y[batch_idx]
        (loss, (score, data_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, xb, yb)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        key_t = jax.random.fold_in(step_key, state.step)
        if hooks.post_update is not None:
            params = hooks.post_update(params, key_t, state.step)
        if hooks.post_step is not None:
            params, opt_state = hooks.post_step(params, opt_state, xb,
                                                jax.random.fold_in(key_t, 1), state.step)
        return TrainState(params, opt_state, state.step + 1), (loss, score, data_loss)

    def scan_chunk(state, x, y, idx, step_key):
        return jax.lax.scan(lambda s, b: step(s, b, x, y, step_key), state, idx)

    run_chunk_keyed = jax.jit(scan_chunk)
    lanes = TrainState(0, 0, None)  # the global step is shared by vectorised runs
    run_chunks = jax.jit(jax.vmap(scan_chunk, in_axes=(lanes, None, None, 0, 0),
                                  out_axes=(lanes, 0)))

    def run_chunk(state, x, y, idx):
        return run_chunk_keyed(state, x, y, idx, key)

    @jax.jit
    def sums(params, x, y):
        outputs = model.apply(params, x)
        return jnp.sum(objective.score(outputs, y)), jnp.sum(objective.example_loss(outputs, y))

    def evaluate(params, x, y, batch: int = 2048) -> Evaluation:
        n = len(y)
        parts = [sums(params, x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]
        return Evaluation(sum(float(p[0]) for p in parts) / max(n, 1),
                          sum(float(p[1]) for p in parts) / max(n, 1))

    return Trainer(run_chunk, run_chunk_keyed, run_chunks, evaluate)


def online_indices(num_train: int, batch_size: int, start: int, stop: int) -> np.ndarray:
    """Minibatches ``start … stop-1`` of a task trained online (shape ``(stop-start) × B``):
    minibatch k holds examples ``kB … (k+1)B − 1``, the task's training set once, in the order
    the stream gives it."""
    if stop * batch_size > num_train:
        raise ValueError(f"minibatch {stop - 1} runs past the task's {num_train} examples")
    return np.arange(start * batch_size, stop * batch_size, dtype=np.int32).reshape(
        stop - start, batch_size)


def minibatch_indices(seed: int, task: int, num_train: int, batch_size: int,
                      start: int, stop: int) -> np.ndarray:
    """Indices of minibatches ``start … stop-1`` of task ``task`` (shape ``(stop-start) × B``).

    Epoch e of task t visits the training set in the order ``default_rng([seed, 1, t, e])
    .permutation(N)``; minibatches run through the epochs back to back, so the order is fixed by
    (seed, task) alone and a resumed run sees exactly the same minibatches.
    """
    first, last = start * batch_size, stop * batch_size
    epochs = range(first // num_train, (last - 1) // num_train + 1)
    order = np.concatenate([np.random.default_rng([seed, 1, task, e]).permutation(num_train)
                            for e in epochs])
    offset = epochs[0] * num_train
    return order[first - offset:last - offset].reshape(stop - start, batch_size).astype(np.int32)


def task_batches(cfg: RunConfig, task: int, n: int, start: int, stop: int) -> np.ndarray:
    """Minibatch indices ``start … stop-1`` of task ``task``: in stream order for the online
    protocol, else the seeded shuffled schedule."""
    if cfg.train.online:
        return online_indices(n, cfg.train.batch_size, start, stop)
    return minibatch_indices(cfg.seed, task, n, cfg.train.batch_size, start, stop)


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stack pytrees of equal structure leaf by leaf on a new leading (lane) axis."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def lane_of(tree: Any, i: int) -> Any:
    """Lane ``i`` of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def set_lane(tree: Any, i: int, value: Any) -> Any:
    """A stacked pytree with lane ``i`` replaced by ``value``."""
    return jax.tree_util.tree_map(lambda a, v: a.at[i].set(v), tree, value)
