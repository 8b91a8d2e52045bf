"""Sizes checked before a run writes its first byte: the data, the step counter, the memory.

:func:`check_sizes` refuses a configuration that could only fail later, after the initial
checkpoint is on disk, or exhaust the machine first: a minibatch larger than the first task's
training set (the schedule would hold ``B`` indices per step before any check), more steps than
the int32 step counter holds, and a network whose parameters, gradients and two optimizer
moments (4 × 4 bytes per parameter, per seed trained together) exceed physical memory. The
parameter count comes from ``jax.eval_shape`` (:func:`ntkplast.validate.expected_param_shapes`),
which allocates nothing.
"""

from __future__ import annotations

import math

from ntkplast import models
from ntkplast.data import custom as custom_streams
from ntkplast.errors import NtkplastError
from ntkplast.io.safe_read import array_file_bytes
from ntkplast.training.config import RunConfig
from ntkplast.validate import expected_param_shapes

__all__ = ["MAX_STEPS", "check_sizes"]

MAX_STEPS = 2**31 - 1
"""Largest global step (the training state counts steps in int32)."""
_BYTES_PER_PARAMETER = 4 * 4  # float32 parameters, gradients and Adam's two moments


def check_sizes(cfg: RunConfig, model: models.Model, stream: custom_streams.Stream,
                seeds: int = 1) -> None:
    """Raise :class:`NtkplastError` when ``cfg`` cannot train on ``stream`` here (module doc).

    Args:
      cfg: the run's configuration.
      model: the network built from ``cfg.model``.
      stream: the task stream; its first task is built to read its size.
      seeds: how many seeds train together (vectorised), each with its own state.
    """
    steps = cfg.train.steps_for(len(stream[0].y_train))  # refuses B > N_train
    if steps * len(stream) > MAX_STEPS:
        raise NtkplastError(f"train: {steps} steps per task × {len(stream)} tasks is more than "
                            f"the {MAX_STEPS} steps a run can count; use fewer steps or tasks")
    try:
        shapes = expected_param_shapes(model, stream.input_shape)
    except (OverflowError, ValueError, TypeError) as e:
        raise NtkplastError(f"model: the network cannot be built for inputs of shape "
                            f"{tuple(stream.input_shape)} ({e}); check model.widths") from None
    count = sum(math.prod(s) for layer in shapes for s in layer.values())
    need, have = _BYTES_PER_PARAMETER * count * seeds, array_file_bytes()
    if need > have:
        raise NtkplastError(f"model.widths = {list(cfg.model.widths)}: {count:,} parameters "
                            f"need about {need / 2**30:,.1f} GiB for weights, gradients and "
                            f"optimizer state, more than this machine's {have / 2**30:,.1f} GiB; "
                            f"use narrower layers")
