"""Reset references: a fresh network trained on one task alone, measured as the run is.

On a reference task t the loop trains two: the method's own (same optimizer and hooks) and the
common baseline (plain optimizer, no method), each from ``fold_in(k_ref, t)`` with the run's
budget, minibatch order and step key, so the two differ only in the method and every method of
a seed meets the same baseline. Seeds trained together train their references together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkplast import models
from ntkplast.data import streams
from ntkplast.training.config import RunConfig
from ntkplast.training.step import (
    Evaluation,
    Trainer,
    TrainState,
    lane_of,
    stack_trees,
    task_batches,
)

__all__ = ["Refs", "measures", "reference_run", "reference_runs"]

Array = jax.Array


Refs = tuple[dict[str, Evaluation], dict[str, Evaluation]]
"""A lane's reset-reference measures on one task: (the method's own, the common baseline)."""


def measures(trainer: Trainer, params: models.Params, data: streams.Task,
              online: Evaluation) -> dict[str, Evaluation]:
    """The task's measures after training on it: online (given), train, and test if it has a
    test set."""
    out = {"online": online,
           "train": trainer.evaluate(params, jnp.asarray(data.x_train), jnp.asarray(data.y_train))}
    if len(data.y_test):
        out["test"] = trainer.evaluate(params, jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    return out


def reference_runs(lanes: Sequence[Any], trainer: Trainer, tx: optax.GradientTransformation,
                   data: streams.Task, task: int) -> list[dict[str, Evaluation]]:
    """:func:`reference_run` for every lane (anything with the run's ``cfg``, its reference key
    ``k_ref`` and step key ``k_step``), the lanes' fresh networks trained in one vmapped
    program when there are several (each with its own initialisation key, minibatches and step
    key, as alone; equal to separate runs to float rounding)."""
    if len(lanes) == 1:
        lane = lanes[0]
        return [reference_run(lane.cfg, trainer, tx, data, task,
                              key=jax.random.fold_in(lane.k_ref, task), step_key=lane.k_step)]
    cfg = lanes[0].cfg
    model = models.build(cfg.model)
    params = [model.init(jax.random.fold_in(lane.k_ref, task), data.x_train.shape[1:])
              for lane in lanes]
    n = len(data.y_train)
    steps = cfg.train.steps_for(n)
    state = TrainState(stack_trees(params), stack_trees([tx.init(p) for p in params]),
                       jnp.asarray(0, jnp.int32))
    idx = jnp.asarray(np.stack([task_batches(lane.cfg, task, n, 0, steps) for lane in lanes]))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    state, (_, scores, data_losses) = trainer.run_chunks(
        state, x, y, idx, jnp.stack([lane.k_step for lane in lanes]))
    seen = steps * cfg.train.batch_size
    scores, data_losses = np.asarray(scores), np.asarray(data_losses)
    return [measures(trainer, lane_of(state.params, k), data,
                      Evaluation(float(np.sum(scores[k])) / seen,
                                 float(np.sum(data_losses[k])) / seen))
            for k in range(len(lanes))]


def reference_run(cfg: RunConfig, trainer: Trainer, tx: optax.GradientTransformation,
                  data: streams.Task, task: int, *, key: Array,
                  step_key: Array) -> dict[str, Evaluation]:
    """Train a fresh network on ``data`` alone with the run's budget and minibatch order.

    Args:
      cfg: the run's configuration (model, step budget, batch size, minibatch schedule).
      trainer: how it trains (:func:`~ntkplast.training.make_trainer`).
      tx: the trainer's optimizer: the method's own, or a plain optimizer's.
      data: the task.
      task: its index in the stream (picks the minibatch order).
      key: initialises the network (the loop passes ``fold_in(k_ref, task)``).
      step_key: keys its steps (the run's own step key).

    Returns:
      Its measures, as the run's: ``"online"`` (over the task), ``"train"`` and, with a test
      set, ``"test"`` (at the end) — accuracies or mean squared errors, and mean losses.
    """
    model = models.build(cfg.model)
    params = model.init(key, data.x_train.shape[1:])
    state = TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
    n = len(data.y_train)
    steps = cfg.train.steps_for(n)
    idx = task_batches(cfg, task, n, 0, steps)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    state, (_, scores, data_losses) = trainer.run_chunk_keyed(state, x, y, jnp.asarray(idx),
                                                              step_key)
    seen = steps * cfg.train.batch_size
    online = Evaluation(float(np.sum(scores)) / seen, float(np.sum(data_losses)) / seen)
    return measures(trainer, state.params, data, online)
