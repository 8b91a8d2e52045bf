"""The shared types and protocols: :data:`Array`, :data:`Params`, the model protocols
(:class:`ApplyModel`, :class:`ModelWithIntermediates`), the task-stream protocol
(:class:`Stream`) and the plug points of training (:class:`Hooks`).

It sits at the bottom of the import graph (as optax keeps its protocols in ``optax/_src/base.py``)
and imports nothing from ntkplast, so every stage can name these types without importing another
stage: :mod:`ntkplast.regularizers` builds hooks and :mod:`ntkplast.training` calls them without
importing each other. The old homes re-export them: ``models.Params``, ``hooks.Hooks``,
``data.custom.Stream``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import jax
import numpy as np

if TYPE_CHECKING:  # for the annotations of Hooks only: importing ntkplast.models loads no optax
    import optax

__all__ = ["ApplyModel", "Array", "Hooks", "ModelWithIntermediates", "Params", "Stream"]

Array = jax.Array
"""A JAX array (``jax.Array``)."""

Params = tuple[dict[str, Array], ...]
"""An ntkplast network's parameters: one ``{"W": ..., "b": ...}`` dict per weight layer
(:mod:`ntkplast.models`)."""


@runtime_checkable
class ApplyModel(Protocol):
    """What the generic NTK engine needs of a model: ``apply(params, x)``, the logits ``N × K``
    of a batch ``x`` (:func:`ntkplast.ntk.generic_parts`, :func:`ntkplast.ntk.ntk_matvec`).

    :class:`ntkplast.models.Model` and :class:`ntkplast.adapters.FunctionModel` follow it.
    """

    def apply(self, params: Any, x: Array) -> Array: ...


@runtime_checkable
class ModelWithIntermediates(ApplyModel, Protocol):
    """An :class:`ApplyModel` that also returns its layers' values: ``intermediates(params, x)``
    is the pre-activations ``[z_1, …, z_L]`` and the post-activations ``[a_1, …, a_{L-1}]``
    (what unit dormancy and layer-Jacobian spectra read). :class:`ntkplast.models.Model` follows
    it; :class:`ntkplast.adapters.FunctionModel` does when it is given its layer functions.
    """

    def intermediates(self, params: Any, x: Array) -> tuple[list[Array], list[Array]]: ...


@runtime_checkable
class Stream(Protocol):
    """What training needs of a task stream (the table in :mod:`ntkplast.data.custom`).

    ``stream[t]`` is a :class:`ntkplast.data.tasks.Task` (typed ``Any`` here, which keeps this
    module below :mod:`ntkplast.data`).
    """

    input_shape: tuple[int, ...]
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, t: int) -> Any: ...

    def test_set(self, t: int) -> tuple[np.ndarray, np.ndarray]: ...


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

    penalty: Callable[[Params], Array] | None = None
    post_update: Callable[[Params, Array, Array], Params] | None = None
    post_step: Callable[[Params, Any, Array, Array, Array],
                        tuple[Params, Any]] | None = None
    on_task_end: Callable[[Params, Any, int, Array], tuple[Params, Any]] | None = None
    optimizer: Callable[[optax.GradientTransformation],
                        optax.GradientTransformation] | None = None
