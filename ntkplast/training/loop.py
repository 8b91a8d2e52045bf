"""Continual training over a task stream, writing a checkpoint series.

One jit-compiled step (cross-entropy + optional penalty, an optax update, an optional
post-update transform) is scanned over chunks of minibatches; a chunk ends at every checkpoint,
so an interrupted run resumes from its last checkpoint with the same chunking and ends with
bit-identical parameters. Minibatch order, initialisation and reference runs are pure functions
of the seed. :func:`train_seeds` trains several seeds of one configuration in a single program,
``jax.vmap``-ed over the seeds, each into its own run folder; each seed's bookkeeping (manifest,
keys, resuming, writing checkpoints) is a lane of ``ntkplast.training._lanes``.

Observed plasticity (Dohare et al. 2024, "Loss of plasticity in deep continual learning"):
for each task t, the test accuracy at the end of its budget and the *online* accuracy — the
accuracy on each training minibatch before the step that trains on it, averaged over the task.
The *reset reference* trains a freshly initialised network on task t alone with the same budget
and minibatch order; plasticity loss at t is the reference's accuracy minus the run's.
Regression streams (``TrainConfig.loss = "mse"``) report mean squared errors instead, and their
plasticity loss is the run's error minus the reference's (positive: plasticity lost).
When the run is complete, a classification run that recorded its accuracy matrix
(``train.eval_previous``) also stores the average accuracy, backward transfer and forgetting
after the last task in the manifest as ``forgetting`` (:func:`ntkplast.forgetting.summary`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ntkplast import forgetting, models
from ntkplast.data import custom as custom_streams
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.hooks import Hooks
from ntkplast.io.lock import folder_lock
from ntkplast.regularizers import make_hooks
from ntkplast.runs import checkpoints
from ntkplast.training._lanes import Group, Lane, save_checkpoint, start_group
from ntkplast.training.config import RunConfig, previous_tasks, reference_task_set, resolve_measure
from ntkplast.training.references import Refs, measures, reference_runs
from ntkplast.training.sizes import check_sizes
from ntkplast.training.step import (
    OBJECTIVES,
    Evaluation,
    Objective,
    Trainer,
    TrainState,
    make_optimizer,
    make_trainer,
    task_batches,
)

__all__ = ["run_optimizer", "train_run", "train_seeds"]


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
        object that follows :class:`ntkplast.data.custom.Stream` (a user's own tasks, e.g.
        :class:`ntkplast.data.custom.ArrayStream`); the manifest then records the stream as
        ``custom`` and analysis needs an explicit probe file.
      progress: show a progress bar (task, step, loss, online score).
      stop_after_chunks: stop (as if killed) after this many chunks — for tests of resume.

    Returns:
      The run, opened for reading.
    """
    return train_seeds(cfg, [cfg.seed], [run_dir], resume=resume, hooks=hooks, stream=stream,
                       progress=progress, stop_after_chunks=stop_after_chunks)[0]


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

    The configuration is checked against the data and this machine's memory
    (:func:`ntkplast.training.sizes.check_sizes`) before anything is written, and each run
    folder is locked while it is written (:func:`ntkplast.io.lock.folder_lock`): a second
    training into the same folder fails at once, naming the first one's pid. Every checkpoint's
    SHA-256 goes into the manifest, and resuming checks it.

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
    hooks, plain, tx = run_optimizer(cfg, model, stream.input_shape, hooks)
    if not custom and cfg.stream.kind in streams.TASK_FREE_KINDS and hooks.on_task_end:
        raise NtkplastError(f"method: {cfg.method.get('name', 'the given hooks')!r} acts at task "
                            f"ends, but stream.kind = {cfg.stream.kind!r} has no task boundaries "
                            f"(its tasks are measurement windows); choose a method that acts "
                            f"every step")
    check_sizes(cfg, model, stream, seeds=len(seeds))  # before the first byte is written
    with contextlib.ExitStack() as locks:
        for run_dir in run_dirs:  # one writer per folder: a second one fails at once
            locks.enter_context(folder_lock(run_dir, "train"))
        _train_locked(cfg, seeds, run_dirs, stream, custom, model, hooks, plain, tx, objective,
                      resume, progress, stop_after_chunks)
    return [checkpoints.open_run(run_dir) for run_dir in run_dirs]


def run_optimizer(cfg: RunConfig, model: models.Model, input_shape: Sequence[int],
                  hooks: Hooks | None = None
                  ) -> tuple[Hooks, optax.GradientTransformation, optax.GradientTransformation]:
    """(hooks, plain optimizer, the run's optimizer) of ``cfg``: the method's hooks (by default
    ``make_hooks(cfg.method, …)``; none without a method), ``train.optimizer`` as configured,
    and that optimizer as the method's ``Hooks.optimizer`` wraps it (its state is what a
    checkpoint stores)."""
    if hooks is None:
        hooks = Hooks()
        if cfg.method:
            hooks = make_hooks(cfg.method, model, input_shape, cfg.train.learning_rate)
    plain = make_optimizer(cfg.train)
    return hooks, plain, hooks.optimizer(plain) if hooks.optimizer is not None else plain


def _train_locked(cfg: RunConfig, seeds: Sequence[int], run_dirs: Sequence[Path],
                  stream: custom_streams.Stream, custom: bool, model: models.Model, hooks: Hooks,
                  plain: optax.GradientTransformation, tx: optax.GradientTransformation,
                  objective: Objective, resume: bool, progress: bool,
                  stop_after_chunks: int | None) -> None:
    """:func:`train_seeds` once its folders are locked: open or start each lane, then train."""
    lanes = []
    for seed, run_dir in zip(seeds, run_dirs, strict=True):
        lane_cfg = dataclasses.replace(cfg, seed=seed)
        record = lane_cfg.to_dict()
        if custom:  # the [stream] table does not describe these tasks; analysis must not use it
            record["stream"] = None
        origin: dict[str, Any] = {}
        if custom:
            origin["stream"] = {"custom": getattr(stream, "name", type(stream).__name__)}
        if len(seeds) > 1:
            origin["vectorised_seeds"] = seeds
        manifest = checkpoints.new_manifest(
            cfg.model, stream.input_shape, about={"num_classes": stream.num_classes,
                                                  "num_tasks": len(stream), "config": record},
            tasks=True, origin=origin)
        lanes.append(Lane(lane_cfg, run_dir, resume, record, manifest))
    todo = [lane for lane in lanes if not lane.manifest.get("complete")]
    if todo:
        k_step = todo[0].k_step  # keys the one-lane trainer; vectorised lanes pass their own
        baseline = None
        if hooks != Hooks():  # a method: the common baseline trains without it
            baseline = (plain, make_trainer(model, plain, Hooks(), objective, key=k_step))
        plan = _Plan(stream, model, objective, tx, hooks,
                     make_trainer(model, tx, hooks, objective, key=k_step),
                     reference_task_set(cfg.train.reference_tasks, len(stream)),
                     None if custom else cfg.stream.kind, baseline)
        _train_lanes(todo, plan, progress, stop_after_chunks)


class _Plan(NamedTuple):
    """What every lane of one training shares: the stream, model, objective, the method's
    optimizer and hooks with their trainer, the reference tasks, and the common baseline's
    plain optimizer and trainer (None when the method is plain training: its own reference is
    the baseline)."""

    stream: custom_streams.Stream
    model: models.Model
    objective: Objective
    tx: optax.GradientTransformation
    hooks: Hooks
    trainer: Trainer
    refs: Container[int]
    stream_kind: str | None
    baseline: tuple[optax.GradientTransformation, Trainer] | None


def _train_lanes(lanes: Sequence[Lane], plan: _Plan, progress: bool,
                 stop_after_chunks: int | None) -> None:
    """The training loop of :func:`train_seeds` over the unfinished ``lanes``: every task in
    chunks that end at checkpoints, each chunk recorded per lane by :func:`_after_chunk`."""
    cfg, stream = lanes[0].cfg, plan.stream
    group, fresh, task, in_task = start_group(lanes, plan.model, plan.tx, stream.input_shape)
    per_task = cfg.train.steps_per_task
    total = per_task * len(stream) if per_task is not None else None
    bar = tqdm(total=total, initial=int(group.state.step), disable=not progress, unit="step",
               dynamic_ncols=True)
    chunks_done = 0
    while task < len(stream):
        data = stream[task]
        n = len(data.y_train)
        steps = cfg.train.steps_for(n)
        x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
        for stop in (b for b in _chunk_bounds(steps, cfg.train.checkpoint_every) if b > in_task):
            idx = [task_batches(lane.cfg, task, n, in_task, stop) for lane in lanes]
            losses, scores, data_losses = group.run_chunk(plan.trainer, x, y, idx)
            bar.update(stop - in_task)
            in_task = stop
            refs = (_references(lanes, plan, data, task, int(group.state.step))
                    if in_task == steps and task in plan.refs else {})
            for i in range(len(lanes)):
                _after_chunk(group, i, fresh[i], (losses[i], scores[i], data_losses[i]), task,
                             in_task, steps, data, plan, refs.get(i))
            mean_online = np.mean([ln.online for ln in lanes]) / (in_task * cfg.train.batch_size)
            bar.set_postfix(task=task, loss=f"{float(np.mean(losses)):.3f}",
                            **{plan.objective.metric: f"{mean_online:.3f}"})
            chunks_done += 1
            if stop_after_chunks is not None and chunks_done >= stop_after_chunks:
                bar.close()
                return
        task, in_task = task + 1, 0
        for lane in lanes:
            lane.online, lane.online_loss = 0.0, 0.0
    bar.close()


def _after_chunk(group: Group, i: int, template: models.Params,
                 outputs: tuple[np.ndarray, np.ndarray, np.ndarray], task: int, in_task: int,
                 steps: int, data: streams.Task, plan: _Plan, refs: Refs | None) -> None:
    """Record lane ``i``'s chunk that ended at in-task step ``in_task``: a periodic checkpoint,
    or at the task's end its evaluation, reference measures ``refs`` (own, baseline; on
    reference tasks) and ``on_task_end`` hook; a lane that got this far before takes its own
    written checkpoint instead. ``outputs`` are the chunk's per-step (loss, summed score,
    summed per-example loss)."""
    lane = group.lanes[i]
    step = int(group.state.step)
    if step in lane.written:
        entry = lane.written[step]
        group.set_lane(i, *lane.load(entry, plan.tx, template))
        lane.resume_sums(entry["metrics"])
        return
    losses, scores, data_losses = outputs
    if not np.all(np.isfinite(losses)):
        bad = step - len(losses) + int(np.argmin(np.isfinite(losses)))
        raise NtkplastError(
            f"training diverged at step {bad} (task {task}): the loss is not finite; the last "
            f"finite checkpoint is {lane.manifest['checkpoints'][-1]['file']} in "
            f"{lane.run_dir}; lower train.learning_rate or the regularizer strength")
    lane.online += float(np.sum(scores))
    lane.online_loss += float(np.sum(data_losses))
    seen = in_task * lane.cfg.train.batch_size
    online = Evaluation(lane.online / seen, lane.online_loss / seen)
    metrics = {"task_step": in_task, "online_score_sum": lane.online,
               "loss": float(np.mean(losses)), f"online_{plan.objective.metric}": online.score}
    if np.isfinite(online.loss):  # unknown only for a pre-0.2 run resumed inside a task
        metrics.update(online_loss_sum=lane.online_loss, online_loss=online.loss)
    if in_task < steps:
        save_checkpoint(lane, group.lane_state(i), task, "periodic", metrics)
        return
    record = _end_task(lane, plan, group.lane_state(i), task, online, data, refs)
    if plan.hooks.on_task_end is not None:
        s = group.lane_state(i)
        group.set_lane(i, *plan.hooks.on_task_end(s.params, s.opt_state, task,
                                                  jax.random.fold_in(lane.k_task_end, task)))
    lane.manifest["tasks"].append(record)
    metrics.update({k: v for k, v in record.items() if k != "task"})
    lane.manifest["complete"] = task == len(plan.stream) - 1
    if lane.manifest["complete"] and (summary := forgetting.summary(lane.manifest)) is not None:
        lane.manifest["forgetting"] = summary  # ACC, BWT and F after the last task
    save_checkpoint(lane, group.lane_state(i), task, "task_end", metrics)


def _gap(run: float, reference: float, higher_is_better: bool) -> float:
    """Plasticity loss: how much worse the run is than the reference (positive: worse)."""
    return reference - run if higher_is_better else run - reference


def _end_task(lane: Lane, plan: _Plan, state: TrainState, task: int, online: Evaluation,
              data: streams.Task, refs: Refs | None) -> dict[str, Any]:
    """Evaluate ``lane`` after task ``task``; on reference tasks record both reset references
    (``refs``: the measures of the method's own and of the common baseline).

    The record holds, with m the objective's score (``accuracy`` or ``mse``): ``online_m``,
    ``online_loss``, ``train_m``, ``train_loss``, ``test_m`` and ``test_loss`` (with a test
    set), ``m_on_tasks`` (``eval_previous``, at the tasks ``eval_previous_every`` picks; None for
    earlier tasks without a test set or left out by ``eval_previous_max``),
    ``plasticity_measure`` (which of them is the plasticity signal, e.g. ``train_accuracy``) and
    ``plasticity_score`` (its value). On a reference task also ``reference_<measure>_m`` (the
    method itself from a fresh network), ``baseline_<measure>_m`` (a fresh network, plain
    optimizer, no method), their ``reference_score`` / ``baseline_score``, and
    ``plasticity_loss`` / ``plasticity_loss_baseline``: the run's shortfall from each.
    """
    cfg, m, better = lane.cfg, plan.objective.metric, plan.objective.higher_is_better
    scores = measures(plan.trainer, state.params, data, online)
    record: dict[str, Any] = {"task": task, "end_step": int(state.step)}
    for name, ev in scores.items():
        record[f"{name}_{m}"] = ev.score
        if np.isfinite(ev.loss):
            record[f"{name}_loss"] = ev.loss
    every = cfg.train.eval_previous_every
    if (cfg.train.eval_previous and "test" in scores
            and ((task + 1) % every == 0 or task == len(plan.stream) - 1)):
        chosen = set(previous_tasks(task, cfg.train.eval_previous_max))
        record[f"{m}_on_tasks"] = [_test_score(plan, state.params, s) if s in chosen else None
                                   for s in range(task + 1)]
    measure = resolve_measure(cfg.train.plasticity_measure, plan.stream_kind, cfg.train.online,
                              "test" in scores)
    record.update(plasticity_measure=f"{measure}_{m}",
                  plasticity_score=scores[measure].score)
    if refs is None:
        return record
    own, base = refs
    for prefix, ref in (("reference", own), ("baseline", base)):
        record.update({f"{prefix}_{name}_{m}": ev.score for name, ev in ref.items()})
        record[f"{prefix}_score"] = ref[measure].score
    record["plasticity_loss"] = _gap(scores[measure].score, own[measure].score, better)
    record["plasticity_loss_baseline"] = _gap(scores[measure].score, base[measure].score,
                                              better)
    return record


def _test_score(plan: _Plan, params: models.Params, task: int) -> float | None:
    x, y = plan.stream.test_set(task)
    return plan.trainer.evaluate(params, jnp.asarray(x), jnp.asarray(y)).score if len(y) else None


def _references(lanes: Sequence[Lane], plan: _Plan, data: streams.Task, task: int,
                step: int) -> dict[int, Refs]:
    """Lane index → (own, baseline) reference measures of task ``task``, for the lanes that have
    not written the task's end yet; the lanes' references train together (:func:`_reference_runs`).
    Plain training has no separate baseline: its own reference is it."""
    todo = [i for i, lane in enumerate(lanes) if step not in lane.written]
    if not todo:
        return {}
    group = [lanes[i] for i in todo]
    own = reference_runs(group, plan.trainer, plan.tx, data, task)
    base = own if plan.baseline is None else reference_runs(group, plan.baseline[1],
                                                             plan.baseline[0], data, task)
    return {i: (o, b) for i, o, b in zip(todo, own, base, strict=True)}

