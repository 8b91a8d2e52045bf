"""Continual training over a task stream: configs → the jitted step → the loop.

===================  ==========================================================================
module               what it holds
===================  ==========================================================================
``config``           :class:`TrainConfig`, :class:`RunConfig`, TOML configs and ``--set`` overrides
``step``             objectives, :class:`TrainState`, :func:`make_trainer`, the minibatch schedule
``loop``             :func:`train_run`, :func:`train_seeds` (vmapped seeds): the training loop
``references``       reset references (own method, common baseline) and per-task measures
===================  ==========================================================================

The plug points regularizers fill are :class:`ntkplast.hooks.Hooks`. ``from ntkplast import
train`` is this package under its flat name.
"""

from ntkplast.hooks import Hooks
from ntkplast.training.config import (
    LOSSES,
    MEASURES,
    OPTIMIZERS,
    SECTIONS,
    RunConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    previous_tasks,
    read_toml,
    reference_task_set,
    resolve_measure,
)
from ntkplast.training.loop import run_optimizer, train_run, train_seeds
from ntkplast.training.references import reference_run
from ntkplast.training.step import (
    OBJECTIVES,
    Evaluation,
    Objective,
    Trainer,
    TrainState,
    correct,
    cross_entropy,
    make_optimizer,
    make_trainer,
    mean_squared_error,
    minibatch_indices,
    nll,
    online_indices,
    squared_errors,
)

__all__ = [
    "LOSSES", "MEASURES", "OBJECTIVES", "OPTIMIZERS", "SECTIONS", "Evaluation", "Hooks",
    "Objective", "RunConfig", "TrainConfig", "TrainState", "Trainer", "apply_overrides",
    "config_from_dict", "correct", "cross_entropy", "load_config", "make_optimizer",
    "make_trainer", "mean_squared_error", "minibatch_indices", "nll", "online_indices",
    "previous_tasks", "read_toml", "reference_run", "reference_task_set", "resolve_measure",
    "run_optimizer",
    "squared_errors", "train_run", "train_seeds",
]
