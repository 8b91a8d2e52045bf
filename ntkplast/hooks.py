"""The plug points of training: :class:`Hooks`, which regularizers fill and the loop calls.

It sits at the bottom of the import graph (as optax keeps its protocols in ``optax/_src/base.py``)
so that :mod:`ntkplast.regularizers` builds hooks and :mod:`ntkplast.training` calls them without
importing each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax

from ntkplast import models

__all__ = ["Hooks"]

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Hooks:
    """Where regularizers and reset methods plug into training.

    Attributes:
      penalty: ``penalty(params) -> scalar`` added to the loss (coupled regularizers: L2,
        isometry, L2 Init …). Traced inside the jitted step.
      post_update: ``post_update(params, key, step) -> params`` applied after each optimizer
        step (decoupled steps: shrink & perturb, AdamO's isometry step). Traced inside the step;
        ``key`` is derived from the run seed and the global step.
      post_step: ``post_step(params, opt_state, xb, key, step) -> (params, opt_state)`` applied
        after ``post_update``, with the step's minibatch inputs ``xb`` (unit resets that score
        units on the data: ReDo, continual backprop). Traced inside the step.
      on_task_end: ``on_task_end(params, opt_state, task, key) -> (params, opt_state)`` called
        (outside jit) after each task's evaluation and before its checkpoint (resets).
      optimizer: ``optimizer(tx) -> tx`` wraps the run's optax optimizer (decoupled gradients
        such as L2 Init's, or a method that keeps its own state in the optimizer state).

    Everything but ``on_task_end`` also applies to the reset-reference runs, so the reference is
    the same method trained from a fresh initialisation.
    """

    penalty: Callable[[models.Params], Array] | None = None
    post_update: Callable[[models.Params, Array, Array], models.Params] | None = None
    post_step: Callable[[models.Params, Any, Array, Array, Array],
                        tuple[models.Params, Any]] | None = None
    on_task_end: Callable[[models.Params, Any, int, Array], tuple[models.Params, Any]] | None = None
    optimizer: Callable[[optax.GradientTransformation],
                        optax.GradientTransformation] | None = None
