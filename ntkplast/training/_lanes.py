"""The lanes of a training: each run's bookkeeping, their shared state, resuming and writing.

A *lane* is one run of :func:`ntkplast.training.loop.train_seeds`: its configuration, folder,
manifest, keys and the task's online sums (:class:`Lane`). The lanes trained together share one
:class:`Group` state, their parameters and optimizer states stacked on a leading axis when there
are several. :func:`start_group` picks the position every lane has written and loads it (a new
run writes its initial checkpoints); :func:`save_checkpoint` writes a lane's checkpoint and
then the manifest that lists it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints
from ntkplast.training.config import RunConfig
from ntkplast.training.step import Trainer, TrainState, lane_of, set_lane, stack_trees

__all__ = ["Group", "Lane", "save_checkpoint", "start_group"]

Array = jax.Array


class Lane:
    """One run of a training: its config, folder, manifest, keys and in-task bookkeeping."""

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool, config_record: dict,
                 manifest: dict[str, Any]):
        self.cfg, self.run_dir = cfg, run_dir
        self.k_init, self.k_step, self.k_ref, self.k_task_end = jax.random.split(
            jax.random.PRNGKey(cfg.seed), 4)
        self.online, self.online_loss = 0.0, 0.0  # the task's summed online score and loss
        manifest_path = run_dir / checkpoints.MANIFEST
        if os.path.lexists(manifest_path):
            if not resume:
                raise NtkplastError(f"{run_dir} already holds a run; pass --resume to continue "
                                    f"it or choose another output folder")
            self.manifest = checkpoints.read_manifest(run_dir)
            if checkpoints.upgrade_config(self.manifest.get("config")) != config_record:
                raise NtkplastError(f"{run_dir} was written with a different configuration; "
                                    f"resume it with the same config, or train into a new folder")
        else:
            self.manifest = manifest
        checkpoints.remove_stale_temporaries(run_dir)  # half-written files of a killed run
        self.written = {c["step"]: c for c in self.manifest["checkpoints"]}

    @property
    def last(self) -> dict[str, Any] | None:
        """The last checkpoint already on disk (None for a new run)."""
        return self.manifest["checkpoints"][-1] if self.manifest["checkpoints"] else None

    def resume_sums(self, metrics: Mapping[str, Any]) -> None:
        """Take the task's summed online score and loss so far from a checkpoint's metrics
        (format v1 runs called the score ``online_correct``; runs written before the online
        loss was recorded resume with it unknown, NaN, for that task)."""
        self.online = metrics.get("online_score_sum", metrics.get("online_correct", 0))
        unknown = float("nan") if metrics.get("task_step", 0) else 0.0  # 0 at a task's start
        self.online_loss = metrics.get("online_loss_sum", unknown)

    def load(self, entry: Mapping[str, Any], tx: optax.GradientTransformation,
             template: models.Params) -> tuple[models.Params, Any]:
        """Parameters and optimizer state of the written checkpoint ``entry``."""
        return checkpoints.checkpoint_state(self.run_dir, entry, tx.init(template))



class Group:
    """The lanes trained together and their state: one :class:`TrainState`, or with several
    lanes their parameters and optimizer states stacked on a leading axis (global step shared).
    """

    def __init__(self, lanes: Sequence[Lane], states: Sequence[TrainState]):
        self.lanes = list(lanes)
        self.vectorised = len(self.lanes) > 1
        if self.vectorised:
            self.state = TrainState(stack_trees([s.params for s in states]),
                                    stack_trees([s.opt_state for s in states]), states[0].step)
            self.step_keys = jnp.stack([lane.k_step for lane in self.lanes])
        else:
            self.state = states[0]

    def lane_state(self, i: int) -> TrainState:
        """Lane ``i``'s own state."""
        if not self.vectorised:
            return self.state
        return TrainState(lane_of(self.state.params, i), lane_of(self.state.opt_state, i),
                          self.state.step)

    def set_lane(self, i: int, params: models.Params, opt_state: Any) -> None:
        """Replace lane ``i``'s parameters and optimizer state."""
        if not self.vectorised:
            self.state = TrainState(params, opt_state, self.state.step)
            return
        self.state = TrainState(set_lane(self.state.params, i, params),
                                set_lane(self.state.opt_state, i, opt_state), self.state.step)

    def run_chunk(self, trainer: Trainer, x: Array, y: Array,
                  idx: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        """Train every lane on its minibatches ``idx[k]``; per lane the chunk's per-step
        (losses, scores, per-example loss sums), each ``lanes × C``."""
        if self.vectorised:
            self.state, out = trainer.run_chunks(self.state, x, y, jnp.asarray(idx),
                                                 self.step_keys)
        else:
            self.state, out = trainer.run_chunk(self.state, x, y, jnp.asarray(idx[0]))
        return tuple(np.asarray(a).reshape(len(self.lanes), -1) for a in out)



def start_group(lanes: Sequence[Lane], model: models.Model, tx: optax.GradientTransformation,
                input_shape: tuple[int, ...]) -> tuple[Group, list[models.Params], int, int]:
    """The group's state at the latest position that every lane has written, its lanes' fresh
    parameters (templates for loading), and the (task, in-task step) to continue from."""
    fresh = [model.init(lane.k_init, input_shape) for lane in lanes]
    starts = [lane.last for lane in lanes]
    start = None if any(s is None for s in starts) else min(starts, key=lambda c: c["step"])
    states = []
    for lane, params in zip(lanes, fresh, strict=True):
        if start is None:
            states.append(TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32)))
        else:
            p, o = lane.load(lane.written[start["step"]], tx, params)
            states.append(TrainState(p, o, jnp.asarray(start["step"], jnp.int32)))
    if start is None:
        for lane, state in zip(lanes, states, strict=True):
            if lane.last is None:
                save_checkpoint(lane, state, task=0, kind="init", metrics={"task_step": 0})
        return Group(lanes, states), fresh, 0, 0
    task, in_task = start["task"], start["metrics"].get("task_step", 0)
    for lane in lanes:
        lane.resume_sums(lane.written[start["step"]]["metrics"])
    if start["kind"] == "task_end":
        task, in_task = task + 1, 0
        for lane in lanes:
            lane.online, lane.online_loss = 0.0, 0.0
    return Group(lanes, states), fresh, task, in_task


def save_checkpoint(lane: Lane, state: TrainState, task: int, kind: str,
                     metrics: Mapping[str, Any]) -> None:
    """Write ``lane``'s checkpoint of ``state`` with its optimizer state, then the manifest that
    lists it (:func:`ntkplast.runs.checkpoints.append_checkpoint`)."""
    checkpoints.append_checkpoint(lane.run_dir, lane.manifest, state.params, step=int(state.step),
                                  task=task, kind=kind, metrics=metrics,
                                  opt_state=state.opt_state)
