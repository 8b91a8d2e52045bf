"""Branch a trained run at a task's end: a control and intervened continuations, as run folders.

A branch of parent run P at task k with intervention I is a run folder whose first checkpoint
is P's end-of-task-k state (parameters and optimizer state) after I, and which then trains
tasks k+1 … k+n exactly as P did: the same configuration (the stream cut at task k+n, the model
as I leaves it), the same minibatch order and step keys (pure functions of the seed, the task
and the global step), the same budget, the same method. The control I = ``none`` therefore
retraces P's tasks k+1 … k+n: its checkpoints are P's, byte for byte, when it trains as P did —
alone, or vectorised with the same seeds in the same order (:func:`ntkplast.training.train_seeds`;
given all of a vectorised parent's seeds, the branches train that way). Seeds given without
their vectorised siblings train alone, and their control then agrees with P to float rounding.

The manifest's ``branch`` entry records the parent folder, the checkpoint and its SHA-256, the
task k, the number of tasks n, the intervention and what it did. Folders are
``OUT/<parent label>/at<k>/<intervention slug>``; each is written under its writer lock (the
start checkpoint, then the manifest that lists it) and trained with ``resume``, so an
interrupted ``branch`` continues where it stopped when called again, and a finished branch is
left alone. The intervention's key is ``fold_in(fold_in(PRNGKey(seed), 0x6272), k)``; its
inputs ``x`` are the first :data:`INTERVENTION_INPUTS` training inputs of task k.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ntkplast import models, training
from ntkplast.branches.interventions import Intervention, apply_intervention, interventions_of
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.io.lock import LOCK_NAME, folder_lock
from ntkplast.runs import checkpoints

__all__ = ["BRANCH_KEY", "INTERVENTION_INPUTS", "Branch", "Parent", "branch",
           "branch_folder", "find_parents"]

BRANCH_KEY = 0x6272
"""Folded into a seed's key for the intervention's draws (``"br"``)."""
INTERVENTION_INPUTS = 1024
"""How many of task k's training inputs an intervention reads (``reset_dead``'s activity)."""


class Parent(NamedTuple):
    """A run to branch: its folder, a label (its folder below the given root), its manifest,
    configuration and seed."""

    path: Path
    label: str
    manifest: dict[str, Any]
    config: training.RunConfig

    @property
    def seed(self) -> int:
        return self.config.seed


class Branch(NamedTuple):
    """One branch folder: parent, branch point, intervention, folder."""

    parent: Parent
    at: int
    intervention: Intervention
    path: Path


def find_parents(root: str | os.PathLike) -> list[Parent]:
    """The ntkplast-trained runs at or below ``root`` (a run folder, or a folder of runs such as
    a method's ``seed<k>`` folders), labelled by their folder relative to ``root`` (a run given
    directly: its own name), in natural order; folders inside a branch output are left out."""
    root = Path(root)
    if not root.is_dir():
        raise NtkplastError(f"branch: {root} is not a folder; give a run folder or a folder of "
                            f"runs")
    if (root / checkpoints.MANIFEST).exists():
        found = [root]
    else:
        found = sorted((p.parent for p in root.rglob(checkpoints.MANIFEST)),
                       key=lambda p: [int(t) if t.isdigit() else t
                                      for t in re.split(r"(\d+)", str(p))])
    parents = []
    for path in found:
        manifest = checkpoints.read_manifest(path)
        if "branch" in manifest:
            continue
        label = path.name if path == root else path.relative_to(root).as_posix()
        parents.append(Parent(path, label, manifest, _config(path, manifest)))
    if not parents:
        raise NtkplastError(f"branch: no run folder (manifest.json) at or below {root}")
    return parents


def _config(path: Path, manifest: dict[str, Any]) -> training.RunConfig:
    stored = manifest.get("config")
    if not isinstance(stored, dict) or manifest.get("stream") is not None or \
            stored.get("stream") is None:
        raise NtkplastError(f"branch: {path} was not trained by ntkplast on a built-in stream "
                            f"(an imported run or a custom stream); a branch retrains its next "
                            f"tasks and needs the run's configuration and stream")
    return training.config_from_dict(checkpoints.upgrade_config(stored),
                                     where=f"{path / checkpoints.MANIFEST}: config")


def _task_end(parent: Parent, at: int) -> dict[str, Any]:
    """The parent's checkpoint entry at the end of task ``at``."""
    num_tasks = parent.config.stream.num_tasks
    if not 0 <= at < num_tasks - 1:
        raise NtkplastError(f"--at {at}: {parent.path} has tasks 0 … {num_tasks - 1}; a branch "
                            f"point must be a task with a next one (0 … {num_tasks - 2})")
    for entry in parent.manifest["checkpoints"]:
        if entry.get("kind") == "task_end" and entry.get("task") == at:
            return entry
    raise NtkplastError(f"--at {at}: {parent.path} has no checkpoint at the end of task {at} "
                        f"(not trained that far yet?)")


def branch_folder(out: str | os.PathLike, parent: Parent, at: int,
                  intervention: Intervention) -> Path:
    """``OUT/<parent label>/at<k>/<intervention slug>``."""
    return Path(out) / parent.label / f"at{at}" / intervention.slug


def _branch_config(parent: Parent, at: int, tasks: int, spec: models.ArchSpec,
                   data_dir: str | None) -> training.RunConfig:
    stream = dataclasses.replace(parent.config.stream, num_tasks=at + 1 + tasks,
                                 **({"data_dir": data_dir} if data_dir is not None else {}))
    return dataclasses.replace(parent.config, stream=stream, model=spec)


def _record(parent: Parent, entry: dict[str, Any], at: int, tasks: int,
            intervention: Intervention) -> dict[str, Any]:
    return {"parent": str(parent.path.resolve()), "parent_checkpoint": entry["file"],
            "parent_sha256": entry.get("sha256"), "at_task": at, "tasks": tasks,
            "intervention": intervention.label}


def _same_branch(manifest: dict[str, Any], record: dict[str, Any]) -> bool:
    stored = manifest.get("branch")
    return isinstance(stored, dict) and all(stored.get(k) == v for k, v in record.items())


def _parent_state(parent: Parent, at: int, input_shape: Sequence[int]
                  ) -> tuple[models.Model, models.Params, Any]:
    """The parent's model, parameters and optimizer state at the end of task ``at``."""
    model = models.build(parent.config.model)
    _, _, tx = training.run_optimizer(parent.config, model, input_shape)
    template = model.init(jax.random.PRNGKey(0), tuple(input_shape))
    return (model, *checkpoints.checkpoint_state(parent.path, _task_end(parent, at),
                                                 tx.init(template)))


def _start(parent: Parent, at: int, tasks: int, intervention: Intervention, dest: Path,
           stream: streams.TaskStream, data_dir: str | None, vectorised: Sequence[int] | None,
           state: Callable[[], tuple[models.Model, models.Params, Any]]) -> models.ArchSpec:
    """Write branch ``dest``'s first checkpoint and manifest unless it holds them already
    (the parent's ``state()`` read only then); returns the branch's architecture."""
    entry = _task_end(parent, at)
    record = _record(parent, entry, at, tasks, intervention)
    with folder_lock(dest, "branch"):
        if (dest / checkpoints.MANIFEST).exists():
            manifest = checkpoints.read_manifest(dest)
            if not _same_branch(manifest, record):
                raise NtkplastError(f"{dest} holds another run or branch; give another --out")
            return models.ArchSpec.from_dict(manifest["model"])
        start_file = checkpoints.checkpoint_name(entry["step"])
        other = [p.name for p in dest.iterdir() if p.name not in (LOCK_NAME, start_file)]
        if other:
            raise NtkplastError(f"{dest} holds files but no manifest ({other[0]}, …); give "
                                f"another --out")
        model, params, opt_state = state()
        x = np.asarray(stream[at].x_train[:INTERVENTION_INPUTS])
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(parent.seed),
                                                    BRANCH_KEY), at)
        done = apply_intervention(intervention, model, params, opt_state, x, key=key)
        cfg = _branch_config(parent, at, tasks, done.model.spec, data_dir)
        origin: dict[str, Any] = {}
        if vectorised is not None:
            origin["vectorised_seeds"] = list(vectorised)
        origin["branch"] = {**record, "did": done.record}
        manifest = checkpoints.new_manifest(
            done.model.spec, stream.input_shape,
            about={"num_classes": stream.num_classes, "num_tasks": at + 1 + tasks,
                   "config": cfg.to_dict()}, tasks=True, origin=origin)
        checkpoints.append_checkpoint(
            dest, manifest, done.params, step=entry["step"], task=at, kind="task_end",
            metrics={**{k: v for k, v in entry.get("metrics", {}).items()
                        if k in checkpoints.RESUME_METRICS},
                     "intervention": intervention.label}, opt_state=done.opt_state)
        return done.model.spec


def _lanes(parents: Sequence[Parent]) -> list[list[Parent]]:
    """The parents in training groups: the seeds of a vectorised parent train together, in
    its ``vectorised_seeds`` order, when all of them are given; every other parent alone."""
    by_setting: dict[tuple[str, tuple[int, ...]], list[Parent]] = {}
    for p in parents:
        setting = json.dumps({**p.config.to_dict(), "seed": None}, sort_keys=True)
        seeds = tuple(p.manifest.get("vectorised_seeds") or (p.seed,))
        by_setting.setdefault((setting, seeds), []).append(p)
    groups = []
    for (_, seeds), members in by_setting.items():
        by_seed = {p.seed: p for p in members}
        if len(seeds) > 1 and sorted(by_seed) == sorted(seeds) and len(members) == len(seeds):
            groups.append([by_seed[s] for s in seeds])
        else:
            groups.extend([p] for p in members)
    return groups


def branch(run_dirs: str | os.PathLike | Sequence[str | os.PathLike], at: Sequence[int],
           interventions: Sequence[str | Intervention], *, out: str | os.PathLike,
           tasks: int = 1, progress: bool = True, data_dir: str | None = None) -> list[Branch]:
    """Branch every run at the end of each task in ``at``, once per intervention (and once as
    the control ``none``, always), training ``tasks`` tasks from there (module docstring).

    Args:
      run_dirs: a run folder, a folder of runs (e.g. a method's ``seed<k>`` folders), or a list
        of run folders; ntkplast-trained runs on a built-in stream with optimizer state.
      at: the branch points k (tasks whose end is checkpointed and that have a next task).
      interventions: ``NAME[:ARGS]`` (:mod:`ntkplast.branches.interventions`).
      out: the output folder (locked while branches are written).
      tasks: n ≥ 1, how many tasks each branch trains.
      progress: show training progress.
      data_dir: where the stream's dataset is, if not where the runs were trained.

    Returns:
      Every :class:`Branch`, finished (parents in order, then branch points, then
      interventions with ``none`` first).
    """
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise NtkplastError(f"--tasks: expected a number of tasks >= 1, got {tasks!r}")
    points = sorted({int(k) for k in at})
    if not points:
        raise NtkplastError("--at: give at least one branch point (a task index)")
    roots = [run_dirs] if isinstance(run_dirs, str | os.PathLike) else list(run_dirs)
    parents = [p for r in roots for p in find_parents(r)]
    ivs = interventions_of(interventions)
    for p in parents:
        for k in points:
            _task_end(p, k)
            if k + tasks >= p.config.stream.num_tasks:
                raise NtkplastError(f"--tasks {tasks}: {p.path} ends at task "
                                    f"{p.config.stream.num_tasks - 1}, so a branch at task {k} "
                                    f"trains at most {p.config.stream.num_tasks - 1 - k}")
    out = Path(out)
    made: list[Branch] = []
    with folder_lock(out, "branch"):
        for group in _lanes(parents):
            vectorised = [p.seed for p in group] if len(group) > 1 else None
            stream = streams.make_stream(_branch_config(group[0], points[-1], tasks,
                                                        group[0].config.model, data_dir).stream)
            for k in points:
                states = {p.path: functools.cache(functools.partial(
                    _parent_state, p, k, stream.input_shape)) for p in group}  # read once
                for iv in ivs:
                    dirs = [branch_folder(out, p, k, iv) for p in group]
                    specs = {_start(p, k, tasks, iv, d, stream, data_dir, vectorised,
                                    states[p.path]) for p, d in zip(group, dirs, strict=True)}
                    cfg = _branch_config(group[0], k, tasks, specs.pop(), data_dir)
                    training.train_seeds(cfg, [p.seed for p in group], dirs, resume=True,
                                         progress=progress)
                    made += [Branch(p, k, iv, d) for p, d in zip(group, dirs, strict=True)]
    order = {p.path: i for i, p in enumerate(parents)}
    return sorted(made, key=lambda b: (order[b.parent.path], b.at, ivs.index(b.intervention)))
