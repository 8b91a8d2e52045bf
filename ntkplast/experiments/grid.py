"""Methods × seeds: train, resume and analyse a grid of runs, and gather their per-task metrics.

An experiment is one base :class:`~ntkplast.training.RunConfig` trained once per (method, seed)
into ``OUT/<method>/seed<k>/``. :func:`run_grid` skips finished runs, resumes interrupted ones
(the run folder's manifest must hold the same configuration, so a folder from another grid is
refused rather than mixed in) and analyses each run (:func:`ntkplast.analysis.analyze`, whose
per-checkpoint cache makes a re-run cheap). What comes back is plain data: for each method, one
metrics :class:`~ntkplast.table.Table` per seed — what every comparison figure in
:mod:`ntkplast.figures` and every test in :mod:`ntkplast.stats` takes.

``per_task`` (:func:`ntkplast.table.per_task`: a ``seeds × tasks`` array of one metric read at
task ends), ``mean_interval`` and ``final_tasks_interval`` (:mod:`ntkplast.stats.intervals`:
its mean over seeds with a Student-t interval) are importable from here as well.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast import analysis, training
from ntkplast.errors import NtkplastError
from ntkplast.experiments import executors
from ntkplast.experiments.executors import Executor
from ntkplast.stats.intervals import final_tasks_interval, mean_interval
from ntkplast.table import Table, per_task

__all__ = ["GridResult", "RunJob", "check_method_name", "final_tasks_interval", "gather",
           "grid_jobs", "mean_interval", "per_task", "run_grid", "run_job", "run_jobs"]


@dataclasses.dataclass(frozen=True)
class GridResult:
    """What :func:`run_grid` returns.

    Attributes:
      tables: method name → one analysis table per seed (in ``seeds`` order).
      run_dirs: method name → the run folders, in the same order.
      seeds: the seeds.
    """

    tables: dict[str, list[Table]]
    run_dirs: dict[str, list[Path]]
    seeds: tuple[int, ...]


def check_method_name(name: str) -> str:
    """``name`` if it can name a method's folder (letters, digits, ``- _ . =``); else an error."""
    if not name or not all(c.isalnum() or c in "-_.=" for c in name) or name.startswith("."):
        raise NtkplastError(f"methods: name {name!r} must be a non-empty folder name of letters, "
                            f"digits and - _ . =")
    return name


@dataclasses.dataclass(frozen=True)
class RunJob:
    """One unit of work for an executor: train (or resume) and analyse the runs of ``config``
    under ``seeds``, one folder each — together in one vectorised program when there are
    several (:func:`ntkplast.training.train_seeds`). ``method`` names the method's folder.
    Plain, picklable data."""

    method: str
    config: training.RunConfig
    seeds: tuple[int, ...]
    run_dirs: tuple[Path, ...]
    settings: analysis.Settings | None = None
    analyze: bool = True
    progress: bool = True
    data_dir: str | None = None


def run_job(job: RunJob) -> list[Table]:
    """Carry out ``job``; returns one analysis table per seed (empty list without analysis)."""
    training.train_seeds(job.config, job.seeds, job.run_dirs, resume=True, progress=job.progress)
    if not job.analyze:
        return []
    return [analysis.analyze(d, job.settings, data_dir=job.data_dir, progress=job.progress)
            for d in job.run_dirs]


def grid_jobs(base: training.RunConfig, methods: Mapping[str, Mapping[str, Any]],
              seeds: Sequence[int], out_dir: str | os.PathLike, *,
              vectorise_seeds: bool = False, **job_options: Any) -> list[RunJob]:
    """The jobs of :func:`run_grid`: one per (method, seed), or one per method with
    ``vectorise_seeds``. ``job_options`` are :class:`RunJob`'s ``settings``, ``analyze``,
    ``progress`` and ``data_dir``."""
    if not methods:
        raise NtkplastError("methods: the grid has no methods")
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise NtkplastError(f"seeds: expected distinct seeds, got {list(seeds)}")
    out = Path(out_dir).absolute()  # jobs may run in other processes, other folders
    if job_options.get("data_dir") is not None:
        job_options["data_dir"] = str(Path(job_options["data_dir"]).absolute())
    jobs = []
    for name, method in methods.items():
        check_method_name(name)
        cfg = dataclasses.replace(base, method=dict(method))
        groups = [seeds] if vectorise_seeds else [(s,) for s in seeds]
        jobs += [RunJob(name, cfg, group, tuple(out / name / f"seed{s}" for s in group),
                        **job_options) for group in groups]
    return jobs


def run_jobs(jobs: Sequence[RunJob], executor: Executor | None = None) -> list[list[Table]]:
    """:func:`run_job` on every job through ``executor`` (by default one after another in this
    process); one list of tables per job, in job order."""
    executor = executor if executor is not None else executors.LocalExecutor()
    return executor.map(run_job, jobs)


def gather(jobs: Sequence[RunJob], tables: Sequence[list[Table]],
           seeds: Sequence[int]) -> GridResult:
    """The :class:`GridResult` of one grid's finished ``jobs`` and their tables."""
    result = GridResult({}, {}, tuple(seeds))
    for job, job_tables in zip(jobs, tables, strict=True):
        result.run_dirs.setdefault(job.method, []).extend(job.run_dirs)
        if job.analyze:
            result.tables.setdefault(job.method, []).extend(job_tables)
    return result


def run_grid(base: training.RunConfig, methods: Mapping[str, Mapping[str, Any]],
             seeds: Sequence[int], out_dir: str | os.PathLike, *,
             settings: analysis.Settings | None = None, analyze: bool = True,
             progress: bool = True, data_dir: str | None = None, vectorise_seeds: bool = False,
             executor: Executor | None = None) -> GridResult:
    """Train (or resume) and analyse ``base`` under every method and seed.

    Args:
      base: the shared configuration; its ``seed`` and ``method`` are replaced per run.
      methods: name → ``[method]`` table (``{}`` for plain training), e.g.
        ``{"baseline": {}, "adamo": {"name": "adamo", "lam": 1e-3}}``.
      seeds: the seeds; run k of a method uses ``seed = seeds[k]`` for initialisation,
        minibatch order and reference runs. The tasks themselves are fixed by
        ``base.stream.seed``, so every run sees the same task sequence.
      out_dir: the experiment folder; runs go to ``out_dir/<name>/seed<k>``.
      settings: analysis settings (defaults of :class:`ntkplast.analysis.Settings`).
      analyze: analyse each run (otherwise ``tables`` is empty).
      progress: progress bars.  data_dir: dataset folder for the analysis probe.
      vectorise_seeds: train a method's seeds together in one vectorised program
        (:func:`ntkplast.training.train_seeds`; the same runs to float rounding).
      executor: where the jobs run (:mod:`~ntkplast.experiments.executors`; by default one after
        another in this process). One job per run, or per method with ``vectorise_seeds``.

    Raises:
      NtkplastError: an empty grid, a bad method name or table, or a run folder holding a run of
        another configuration.
    """
    jobs = grid_jobs(base, methods, seeds, out_dir, vectorise_seeds=vectorise_seeds,
                     settings=settings, analyze=analyze, progress=progress, data_dir=data_dir)
    return gather(jobs, run_jobs(jobs, executor), seeds)

