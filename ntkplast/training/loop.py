"""Continual training over a task stream, writing a checkpoint series.

One jit-compiled step (cross-entropy + optional penalty, an optax update, an optional
post-update transform) is scanned over chunks of minibatches; a chunk ends at every checkpoint,
so an interrupted run resumes from its last checkpoint with the same chunking and ends with
bit-identical parameters. Minibatch order, initialisation and reference runs are pure functions
of the seed. :func:`train_seeds` trains several seeds of one configuration in a single program,
``jax.vmap``-ed over the seeds, each into its own run folder.

Observed plasticity (Dohare et al. 2024, "Loss of plasticity in deep continual learning"):
for each task t, the test accuracy at the end of its budget and the *online* accuracy — the
accuracy on each training minibatch before the step that trains on it, averaged over the task.
The *reset reference* trains a freshly initialised network on task t alone with the same budget
and minibatch order; plasticity loss at t is the reference's accuracy minus the run's.
Regression streams (``TrainConfig.loss = "mse"``) report mean squared errors instead, and their
plasticity loss is the run's error minus the reference's (positive: plasticity lost).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ntkplast import models
from ntkplast.data import custom as custom_streams
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.hooks import Hooks
from ntkplast.runs import checkpoints
from ntkplast.training.config import RunConfig, reference_task_set
from ntkplast.training.step import (
    OBJECTIVES,
    Objective,
    Trainer,
    TrainState,
    make_optimizer,
    make_trainer,
    minibatch_indices,
)

__all__ = ["reference_run", "train_run", "train_seeds"]

Array = jax.Array


def _chunk_bounds(steps: int, every: int) -> list[int]:
    """In-task step counts at which chunks end (checkpoints), the last being ``steps``."""
    if every <= 0:
        return [steps]
    return list(range(every, steps, every)) + [steps]


def train_run(cfg: RunConfig, run_dir: str | os.PathLike, *, resume: bool = False,
              hooks: Hooks | None = None, stream: custom_streams.Stream | None = None,
              progress: bool = True, stop_after_chunks: int | None = None) -> checkpoints.Run:
    """Train ``cfg`` over its task stream and write the checkpoint series to ``run_dir``.

    Args:
      cfg: the run's configuration.
      run_dir: output folder; must not hold a run yet unless ``resume`` is set.
      resume: continue a run folder from its last checkpoint (its manifest's configuration
        must equal ``cfg``). Resuming a finished run does nothing.
      hooks: regularizer / reset plug points (:class:`Hooks`); by default those of
        ``cfg.method``.
      stream: a prebuilt stream (defaults to ``streams.make_stream(cfg.stream)``), or any
        object that follows :class:`ntkplast.custom_streams.Stream` (a user's own tasks, e.g.
        :class:`ntkplast.custom_streams.ArrayStream`); the manifest then records the stream as
        ``custom`` and analysis needs an explicit probe file.
      progress: show a progress bar (task, step, loss, online score).
      stop_after_chunks: stop (as if killed) after this many chunks — for tests of resume.

    Returns:
      The run, opened for reading.
    """
    return train_seeds(cfg, [cfg.seed], [run_dir], resume=resume, hooks=hooks, stream=stream,
                       progress=progress, stop_after_chunks=stop_after_chunks)[0]


class _Lane:
    """One run of a training: its config, folder, manifest, keys and in-task bookkeeping."""

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool, config_record: dict,
                 manifest: dict[str, Any]):
        self.cfg, self.run_dir = cfg, run_dir
        self.k_init, self.k_step, self.k_ref, self.k_task_end = jax.random.split(
            jax.random.PRNGKey(cfg.seed), 4)
        self.online = 0.0
        manifest_path = run_dir / checkpoints.MANIFEST
        if manifest_path.exists():
            if not resume:
                raise NtkplastError(f"{run_dir} already holds a run; pass --resume to continue "
                                    f"it or choose another output folder")
            self.manifest = checkpoints.read_manifest(run_dir)
            if self.manifest.get("config") != config_record:
                raise NtkplastError(f"{run_dir} was written with a different configuration; "
                                    f"resume it with the same config, or train into a new folder")
            checkpoints.remove_stale_temporaries(run_dir)  # half-written files of a killed run
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoints.remove_stale_temporaries(run_dir)  # a run killed in its first write
            self.manifest = manifest
        self.written = {c["step"]: c for c in self.manifest["checkpoints"]}

    @property
    def last(self) -> dict[str, Any] | None:
        """The last checkpoint already on disk (None for a new run)."""
        return self.manifest["checkpoints"][-1] if self.manifest["checkpoints"] else None

    def load(self, entry: Mapping[str, Any], tx: optax.GradientTransformation,
             template: models.Params) -> tuple[models.Params, Any]:
        """Parameters and optimizer state of the written checkpoint ``entry``."""
        path = self.run_dir / entry["file"]
        arrays = checkpoints.load_arrays(path)
        params = checkpoints.arrays_to_params(arrays, source=str(path))
        return params, checkpoints.arrays_to_opt_state(arrays, tx.init(template),
                                                       source=str(path))


def _online_sum(metrics: Mapping[str, Any]) -> float:
    """The task's summed online score so far, as a checkpoint recorded it (format v1 runs
    called it ``online_correct``)."""
    return metrics.get("online_score_sum", metrics.get("online_correct", 0))


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def _lane_of(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _set_lane(tree: Any, i: int, value: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, v: a.at[i].set(v), tree, value)


def train_seeds(cfg: RunConfig, seeds: Sequence[int], run_dirs: Sequence[str | os.PathLike], *,
                resume: bool = False, hooks: Hooks | None = None,
                stream: custom_streams.Stream | None = None, progress: bool = True,
                stop_after_chunks: int | None = None) -> list[checkpoints.Run]:
    """Train ``cfg`` once per seed, all seeds in one vectorised program, one folder each.

    Run k is ``cfg`` with ``seed = seeds[k]``, written to ``run_dirs[k]`` exactly as
    :func:`train_run` writes a run (same manifest, same checkpoints, same metrics). With more
    than one seed, every step is ``jax.vmap``-ed over the seeds' stacked parameters, optimizer
    states, minibatch indices and step keys (the global step is shared), so S seeds cost one
    compiled program instead of S; evaluation, reset references and ``on_task_end`` run per
    seed. A vectorised run agrees with the same seed trained alone to float rounding, not bit for
    bit (batched matrix products sum in another order); its manifest lists the seeds it was
    trained with under ``vectorised_seeds``.

    Resuming (``resume=True``) restarts every seed from the latest checkpoint that all of them
    have written; a seed that had got further takes its own written checkpoints as the others
    catch up (nothing is written twice), so an interrupted vectorised run ends with the same
    files as an uninterrupted one. Finished runs are left alone.

    Args and returns as :func:`train_run` (one opened run per seed).
    """
    seeds = [int(s) for s in seeds]
    run_dirs = [Path(d) for d in run_dirs]
    if not seeds or len(set(seeds)) != len(seeds) or len(seeds) != len(run_dirs):
        raise NtkplastError(f"seeds: expected distinct seeds, one per run folder; got {seeds} "
                            f"for {len(run_dirs)} folder(s)")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise NtkplastError("run_dirs: every seed needs its own run folder")
    stream = stream if stream is not None else streams.make_stream(cfg.stream)
    custom = custom_streams.check_stream(stream, cfg.stream, cfg.model.num_outputs,
                                         cfg.train.loss)
    objective = OBJECTIVES[cfg.train.loss]
    model = models.build(cfg.model)
    if hooks is None:
        hooks = Hooks()
        if cfg.method:
            from ntkplast.regularizers import make_hooks  # regularizers import this module

            hooks = make_hooks(cfg.method, model, stream.input_shape, cfg.train.learning_rate)
    tx = make_optimizer(cfg.train)
    if hooks.optimizer is not None:
        tx = hooks.optimizer(tx)
    refs = reference_task_set(cfg.train.reference_tasks, len(stream))

    lanes = []
    for seed, run_dir in zip(seeds, run_dirs, strict=True):
        lane_cfg = dataclasses.replace(cfg, seed=seed)
        record = lane_cfg.to_dict()
        if custom:  # the [stream] table does not describe these tasks; analysis must not use it
            record["stream"] = None
        manifest = {
            "format": checkpoints.FORMAT, "format_version": checkpoints.FORMAT_VERSION,
            "model": cfg.model.to_dict(), "input_shape": list(stream.input_shape),
            "num_classes": stream.num_classes, "num_tasks": len(stream),
            "config": record, "checkpoints": [], "tasks": [], "complete": False,
        }
        if custom:
            manifest["stream"] = {"custom": getattr(stream, "name", type(stream).__name__)}
        if len(seeds) > 1:
            manifest["vectorised_seeds"] = seeds
        lanes.append(_Lane(lane_cfg, run_dir, resume, record, manifest))
    todo = [lane for lane in lanes if not lane.manifest.get("complete")]
    if todo:
        _train_lanes(todo, stream, model, tx, hooks, objective, refs, progress,
                     stop_after_chunks)
    return [checkpoints.open_run(lane.run_dir) for lane in lanes]


def _train_lanes(lanes: Sequence[_Lane], stream: custom_streams.Stream, model: models.Model,
                 tx: optax.GradientTransformation, hooks: Hooks, objective: Objective,
                 refs: frozenset[int], progress: bool, stop_after_chunks: int | None) -> None:
    """The training loop of :func:`train_seeds` over the unfinished ``lanes``."""
    cfg = lanes[0].cfg
    vectorised = len(lanes) > 1
    trainer = make_trainer(model, tx, hooks, lanes[0].k_step, objective)
    fresh = [model.init(lane.k_init, stream.input_shape) for lane in lanes]
    # Every lane restarts at the latest position that all of them have written.
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
        task, in_task = 0, 0
        for lane, state in zip(lanes, states, strict=True):
            if lane.last is None:
                _save_checkpoint(lane.run_dir, lane.manifest, state, task=0, kind="init",
                                 metrics={"task_step": 0})
    else:
        task, in_task = start["task"], start["metrics"].get("task_step", 0)
        for lane in lanes:
            m = lane.written[start["step"]]["metrics"]
            lane.online = _online_sum(m)
        if start["kind"] == "task_end":
            task, in_task = task + 1, 0
            for lane in lanes:
                lane.online = 0.0
    if vectorised:
        state = TrainState(_stack([s.params for s in states]),
                           _stack([s.opt_state for s in states]), states[0].step)
        step_keys = jnp.stack([lane.k_step for lane in lanes])
    else:
        state = states[0]

    def lane_state(i: int) -> TrainState:
        if not vectorised:
            return state
        return TrainState(_lane_of(state.params, i), _lane_of(state.opt_state, i), state.step)

    def with_lane(i: int, p: models.Params, o: Any) -> TrainState:
        if not vectorised:
            return TrainState(p, o, state.step)
        return TrainState(_set_lane(state.params, i, p), _set_lane(state.opt_state, i, o),
                          state.step)

    per_task = cfg.train.steps_per_task
    total = per_task * len(stream) if per_task is not None else None
    bar = tqdm(total=total, initial=int(state.step), disable=not progress, unit="step",
               dynamic_ncols=True)
    chunks_done = 0
    while task < len(stream):
        data = stream[task]
        n = len(data.y_train)
        steps = cfg.train.steps_for(n)
        x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
        for stop in (b for b in _chunk_bounds(steps, cfg.train.checkpoint_every) if b > in_task):
            idx = [minibatch_indices(lane.cfg.seed, task, n, cfg.train.batch_size, in_task, stop)
                   for lane in lanes]
            if vectorised:
                state, (losses, scores) = trainer.run_chunks(state, x, y, jnp.asarray(idx),
                                                             step_keys)
            else:
                state, (losses, scores) = trainer.run_chunk(state, x, y, jnp.asarray(idx[0]))
            losses = np.asarray(losses).reshape(len(lanes), -1)
            scores = np.asarray(scores).reshape(len(lanes), -1)
            bar.update(stop - in_task)
            in_task = stop
            step = int(state.step)
            for i, lane in enumerate(lanes):
                if step in lane.written:  # got this far before: take its own checkpoint
                    entry = lane.written[step]
                    state = with_lane(i, *lane.load(entry, tx, fresh[i]))
                    lane.online = _online_sum(entry["metrics"])
                    continue
                if not np.all(np.isfinite(losses[i])):
                    bad = step - losses.shape[1] + int(np.argmin(np.isfinite(losses[i])))
                    raise NtkplastError(
                        f"training diverged at step {bad} (task {task}): the loss is not "
                        f"finite; the last finite checkpoint is "
                        f"{lane.manifest['checkpoints'][-1]['file']} in {lane.run_dir}; lower "
                        f"train.learning_rate or the regularizer strength")
                lane.online += float(np.sum(scores[i]))
                online_score = lane.online / (in_task * cfg.train.batch_size)
                metrics = {"task_step": in_task, "online_score_sum": lane.online,
                           "loss": float(np.mean(losses[i])),
                           f"online_{objective.metric}": online_score}
                if in_task < steps:
                    _save_checkpoint(lane.run_dir, lane.manifest, lane_state(i), task,
                                     "periodic", metrics)
                    continue
                record = _end_task(lane, stream, trainer, tx, lane_state(i), task, refs,
                                   online_score, data)
                if hooks.on_task_end is not None:
                    s = lane_state(i)
                    state = with_lane(i, *hooks.on_task_end(
                        s.params, s.opt_state, task, jax.random.fold_in(lane.k_task_end, task)))
                lane.manifest["tasks"].append(record)
                metrics.update({k: v for k, v in record.items() if k != "task"})
                lane.manifest["complete"] = task == len(stream) - 1
                _save_checkpoint(lane.run_dir, lane.manifest, lane_state(i), task, "task_end",
                                 metrics)
            mean_online = np.mean([ln.online for ln in lanes]) / (in_task * cfg.train.batch_size)
            bar.set_postfix(task=task, loss=f"{float(np.mean(losses)):.3f}",
                            **{objective.metric: f"{mean_online:.3f}"})
            chunks_done += 1
            if stop_after_chunks is not None and chunks_done >= stop_after_chunks:
                bar.close()
                return
        task, in_task = task + 1, 0
        for lane in lanes:
            lane.online = 0.0
    bar.close()


def _end_task(lane: _Lane, stream: custom_streams.Stream, trainer: Trainer,
              tx: optax.GradientTransformation, state: TrainState, task: int,
              refs: frozenset[int], online_score: float, data: streams.Task) -> dict[str, Any]:
    """Evaluate ``lane`` after task ``task``; run its reset reference when asked.

    Names follow the objective's score: ``test_accuracy``, ``online_accuracy``,
    ``accuracy_on_tasks`` … for classification, ``test_mse`` … for regression.
    """
    cfg = lane.cfg
    objective = OBJECTIVES[cfg.train.loss]
    m = objective.metric
    record: dict[str, Any] = {
        "task": task, "end_step": int(state.step),
        f"test_{m}": trainer.evaluate(state.params, jnp.asarray(data.x_test),
                                      jnp.asarray(data.y_test)),
        f"online_{m}": online_score,
    }
    if cfg.train.eval_previous:
        record[f"{m}_on_tasks"] = [
            trainer.evaluate(state.params, *map(jnp.asarray, stream.test_set(s)))
            for s in range(task + 1)]
    if task in refs:
        ref_test, ref_online = reference_run(cfg, trainer, tx, data, task,
                                             jax.random.fold_in(lane.k_ref, task), lane.k_step)
        gap = ref_test - record[f"test_{m}"]
        record.update({f"reference_test_{m}": ref_test, f"reference_online_{m}": ref_online,
                       "plasticity_loss": gap if objective.higher_is_better else -gap})
    return record


def reference_run(cfg: RunConfig, trainer: Trainer, tx: optax.GradientTransformation,
                  data: streams.Task, task: int, key: Array,
                  step_key: Array) -> tuple[float, float]:
    """Train a fresh network on ``data`` alone with the run's budget and minibatch order.

    ``key`` initialises the network, ``step_key`` keys its steps (the run's own step key).

    Returns (test score at the end, online score over the task): accuracies for
    classification, mean squared errors for regression.
    """
    model = models.build(cfg.model)
    params = model.init(key, data.x_train.shape[1:])
    state = TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
    n = len(data.y_train)
    steps = cfg.train.steps_for(n)
    idx = minibatch_indices(cfg.seed, task, n, cfg.train.batch_size, 0, steps)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    state, (_, scores) = trainer.run_chunk_keyed(state, x, y, jnp.asarray(idx), step_key)
    online = float(np.sum(scores)) / (steps * cfg.train.batch_size)
    test = trainer.evaluate(state.params, jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    return test, online


def _save_checkpoint(run_dir: Path, manifest: dict[str, Any], state: TrainState, task: int,
                     kind: str, metrics: Mapping[str, Any]) -> None:
    """Write the checkpoint's .npz, then the manifest that lists it (both atomically)."""
    step = int(state.step)
    name = checkpoints.checkpoint_name(step)
    arrays = checkpoints.params_to_arrays(state.params)
    arrays.update(checkpoints.opt_state_to_arrays(state.opt_state))
    checkpoints.save_arrays(run_dir / name, arrays)
    manifest["checkpoints"].append({"file": name, "step": step, "task": task, "kind": kind,
                                    "metrics": dict(metrics)})
    checkpoints.write_manifest(run_dir, manifest)
