"""Tasks and per-task scores for a run folder that ntkplast did not train (an imported run).

A run trained elsewhere has checkpoints but no task structure: which checkpoint ends which task,
and how well the network learned each task. A per-task score table supplies both:

* columns ``step`` and ``task`` (required, integers ≥ 0): the checkpoint at global step ``step``
  ends task ``task``; steps are distinct and tasks increase with the step;
* every other numeric column (e.g. ``train_accuracy``, ``test_loss``) is a per-task score,
  recorded on that task-end checkpoint's entry and in the manifest's ``tasks`` records exactly as
  training records its own (an empty cell or ``nan`` is a missing score, stored as null);
  non-numeric columns are left out and named in ``manifest["task_scores"]``.

One score column is the **plasticity measure** (default: the first score column), the per-task
signal whose decline is plasticity loss. It is recorded as ``plasticity_measure`` (its column
name) and ``plasticity_score``, which is oriented so that higher is better, as in a native run:

    plasticity_score_t = s_t            (a score: accuracy, return; ``higher_is_better=True``)
    plasticity_score_t = −s_t           (a loss or an error; ``higher_is_better=False``)

Checkpoints are then labelled like a native run's (Dohare et al. 2024's protocol: the network is
measured at the end of each task): a listed checkpoint is ``kind="task_end"`` with its task; the
first checkpoint, when it precedes every task end and sits at step 0, is ``kind="init"`` of the
first task (so the initial network and the end of task 0 are told apart by ``kind``, as in
training); any other checkpoint keeps ``kind="imported"`` and belongs to the task in progress
(the task of the next task end; after the last, that task + 1). With that, analysis marks task
ends (``plasticity_score`` is a task-end metric of :data:`ntkplast.table.TASK_END_METRICS`), and
predictor tests, figures and reports treat the run as they treat a native one.

:func:`read_task_scores` reads and checks the table (a CSV file, a pandas DataFrame or a mapping
of columns), :func:`label_tasks` applies it to a manifest (pure), and :func:`attach_task_scores`
applies it to a run folder after the fact, atomically and under the folder's writer lock. The
importers take the same table (``tasks=``) and label the run before it is moved into place.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read
from ntkplast.io.lock import folder_lock
from ntkplast.runs import checkpoints

__all__ = ["TaskScores", "attach_task_scores", "label_tasks", "read_task_scores"]

_REQUIRED = ("step", "task")


@dataclasses.dataclass(frozen=True)
class TaskScores:
    """A checked per-task score table (module docstring).

    Attributes:
      steps: the global step of each task-end checkpoint, increasing.
      tasks: the task each of them ends, increasing.
      scores: ``{column: values}``, one float (``nan``: missing) per row, in column order.
      skipped: the non-numeric columns that were left out.
      source: where the table came from (a file path, ``"DataFrame"`` or ``"mapping"``).
    """

    steps: tuple[int, ...]
    tasks: tuple[int, ...]
    scores: dict[str, tuple[float, ...]]
    skipped: tuple[str, ...] = ()
    source: str = "mapping"


def _columns_of(source: Any) -> tuple[dict[str, list[Any]], str]:
    """``({column: cells}, where)`` of a CSV path, a DataFrame or a mapping of sequences."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            text = safe_read.read_bytes(path, limit=safe_read.CONFIG_BYTES).decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise NtkplastError(f"task table {path} is not readable ({e}); give a CSV file "
                                f"with columns step, task and one per score") from None
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or not rows[0]:
            raise NtkplastError(f"task table {path} is empty; expected a header line with "
                                f"columns step, task and one per score")
        header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip()
                                                                                  for c in r)]
        for i, r in enumerate(body):
            if len(r) != len(header):
                raise NtkplastError(f"task table {path}: line {i + 2} has {len(r)} cells, the "
                                    f"header {len(header)}")
        if len(set(header)) != len(header):
            raise NtkplastError(f"task table {path}: repeated column names in {header}")
        return {h: [r[j].strip() for r in body] for j, h in enumerate(header)}, str(path)
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return {str(k): list(v) for k, v in source.to_dict("list").items()}, "DataFrame"
    if isinstance(source, Mapping):
        out = {}
        for k, v in source.items():
            if isinstance(v, str | bytes) or not hasattr(v, "__len__"):
                raise NtkplastError(f"task table: column {k!r} must be a sequence of values")
            out[str(k)] = list(v)
        return out, "mapping"
    raise NtkplastError(f"task table: expected a CSV path, a pandas DataFrame or a mapping of "
                        f"columns, got {type(source).__name__}")


def _number(cell: Any) -> float | None:
    """``cell`` as a float (an empty cell is nan), or ``None`` when it is not a number."""
    if isinstance(cell, bool):
        return None
    if cell is None or (isinstance(cell, str) and cell.strip().lower() in ("", "nan", "na")):
        return math.nan
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def read_task_scores(source: str | os.PathLike | Mapping[str, Sequence[Any]] | Any
                     ) -> TaskScores:
    """Read and check a per-task score table (module docstring).

    Args:
      source: a CSV file (header line, one row per task end), a pandas DataFrame, or a mapping
        ``{column: values}``; columns ``step`` and ``task`` are required.

    Returns:
      The :class:`TaskScores`, rows sorted by step.

    Raises:
      NtkplastError: a missing or unreadable table, no ``step``/``task`` column, a step or task
        that is not an integer ≥ 0, a repeated step, tasks that do not increase with the step,
        or no score column; the message names the table and the cell.

    Examples:
      >>> from ntkplast.runs.task_scores import read_task_scores
      >>> t = read_task_scores({"step": [200, 100], "task": [1, 0], "acc": [0.8, 0.9],
      ...                       "note": ["b", "a"]})
      >>> t.steps, t.tasks, t.scores, t.skipped
      ((100, 200), (0, 1), {'acc': (0.9, 0.8)}, ('note',))
    """
    columns, where = _columns_of(source)
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise NtkplastError(f"task table {where}: no column {missing} (found {list(columns)}); "
                            f"it needs step (the checkpoint's global step), task (the task that "
                            f"checkpoint ends) and one column per score")
    n = len(columns["step"])
    if n == 0:
        raise NtkplastError(f"task table {where}: no rows")
    ints = {}
    for c in _REQUIRED:
        vals = []
        for i, cell in enumerate(columns[c]):
            v = _number(cell)
            if v is None or not math.isfinite(v) or v < 0 or v != int(v) or v >= 2 ** 63:
                raise NtkplastError(f"task table {where}: {c} in row {i + 1} is {cell!r}, not an "
                                    f"integer ≥ 0")
            vals.append(int(v))
        ints[c] = vals
    scores: dict[str, list[float]] = {}
    skipped = []
    for c, cells in columns.items():
        if c in _REQUIRED:
            continue
        vals = [_number(cell) for cell in cells]
        if any(v is None for v in vals):
            skipped.append(c)
        else:
            scores[c] = [float(v) for v in vals]  # type: ignore[arg-type]
    if not scores:
        raise NtkplastError(f"task table {where}: no numeric score column besides step and task "
                            f"(non-numeric: {skipped}); add one per-task score, e.g. accuracy")
    order = sorted(range(n), key=lambda i: ints["step"][i])
    steps = [ints["step"][i] for i in order]
    tasks = [ints["task"][i] for i in order]
    for a, b, ta, tb in zip(steps, steps[1:], tasks, tasks[1:]):
        if a == b:
            raise NtkplastError(f"task table {where}: step {a} is listed twice; one row per task "
                                f"end")
        if tb <= ta:
            raise NtkplastError(f"task table {where}: task {tb} at step {b} does not follow "
                                f"task {ta} at step {a}; tasks must increase with the step")
    return TaskScores(tuple(steps), tuple(tasks),
                      {c: tuple(v[i] for i in order) for c, v in scores.items()},
                      tuple(skipped), where)


def _json_number(v: float) -> float | None:
    return v if math.isfinite(v) else None


def label_tasks(manifest: Mapping[str, Any], scores: TaskScores, *,
                plasticity_measure: str | None = None,
                higher_is_better: bool = True) -> dict[str, Any]:
    """A copy of ``manifest`` with its checkpoints labelled by ``scores`` (module docstring).

    Every checkpoint's ``task``, ``kind`` and ``metrics`` are set afresh (labels from an earlier
    table are replaced); ``tasks`` gets one record per row (``task``, ``end_step``, the scores,
    ``plasticity_measure``, ``plasticity_score``), ``num_tasks`` the number of rows and
    ``task_scores`` what was applied (source, columns, measure, direction, skipped columns).

    Args:
      manifest: a run folder's manifest (:func:`ntkplast.runs.checkpoints.read_manifest`).
      scores: the table (:func:`read_task_scores`).
      plasticity_measure: the score column that is the plasticity signal (default: the first).
      higher_is_better: whether a higher value of that column is better (an accuracy) or worse
        (a loss: ``plasticity_score`` is then its negative).

    Raises:
      NtkplastError: an unknown measure, or a step of the table that no checkpoint has (the
        message lists the run's steps).
    """
    if not isinstance(higher_is_better, bool):
        raise NtkplastError(f"higher_is_better: expected True or False, got {higher_is_better!r}")
    measure = next(iter(scores.scores)) if plasticity_measure is None else plasticity_measure
    if measure not in scores.scores:
        raise NtkplastError(f"plasticity measure {measure!r} is not a score column of the task "
                            f"table {scores.source} (score columns: {list(scores.scores)})")
    out = dict(manifest)
    entries = sorted((dict(e) for e in manifest["checkpoints"]), key=lambda e: e["step"])
    have = {e["step"] for e in entries}
    absent = [s for s in scores.steps if s not in have]
    if absent:
        listed = sorted(have)
        more = " …" if len(listed) > 12 else ""
        raise NtkplastError(f"task table {scores.source}: step(s) {absent[:8]} have no checkpoint "
                            f"in the run (its steps: {listed[:12]}{more}); each row's step must "
                            f"be a checkpoint's step")
    sign = 1.0 if higher_is_better else -1.0
    records, by_step = [], {}
    for i, (step, task) in enumerate(zip(scores.steps, scores.tasks)):
        values = {c: _json_number(v[i]) for c, v in scores.scores.items()}
        raw = scores.scores[measure][i]
        record = {"task": task, "end_step": step, **values, "plasticity_measure": measure,
                  "plasticity_score": _json_number(sign * raw)}
        records.append(record)
        by_step[step] = record
    first_end = scores.steps[0]
    for j, e in enumerate(entries):
        if e["step"] in by_step:
            record = by_step[e["step"]]
            e.update(task=record["task"], kind="task_end",
                     metrics={k: v for k, v in record.items() if k != "task"})
            continue
        later = [t for s, t in zip(scores.steps, scores.tasks) if s > e["step"]]
        e["task"] = later[0] if later else scores.tasks[-1] + 1
        e["kind"] = "init" if j == 0 and e["step"] == 0 < first_end else "imported"
        e["metrics"] = {}
    out["checkpoints"] = entries
    out["tasks"] = records
    out["num_tasks"] = len(records)
    out["task_scores"] = {"source": scores.source, "columns": list(scores.scores),
                          "plasticity_measure": measure, "higher_is_better": higher_is_better,
                          "skipped_columns": list(scores.skipped)}
    return out


def attach_task_scores(run_dir: str | os.PathLike, scores: TaskScores | Any, *,
                       plasticity_measure: str | None = None,
                       higher_is_better: bool = True) -> checkpoints.Run:
    """Label an imported run folder's checkpoints with a per-task score table, after the fact.

    The manifest is rewritten atomically under the folder's writer lock
    (:func:`ntkplast.io.lock.folder_lock`); checkpoint files are not touched. A run that ntkplast
    trained records its own tasks and is refused. Analyse the run again afterwards: the
    plasticity rows of its table come from the manifest.

    Args:
      run_dir: the run folder.
      scores: a :class:`TaskScores`, or anything :func:`read_task_scores` reads.
      plasticity_measure: as in :func:`label_tasks`.
      higher_is_better: as in :func:`label_tasks`.

    Returns:
      The run, opened again.
    """
    table = scores if isinstance(scores, TaskScores) else read_task_scores(scores)
    run = Path(run_dir)
    checkpoints.read_manifest(run)  # a clear error for a missing folder, before the lock makes it
    with folder_lock(run, "tasks"):
        manifest = checkpoints.read_manifest(run)
        if manifest.get("config") is not None and "imported_from" not in manifest:
            raise NtkplastError(f"{run} was trained by ntkplast and records its own tasks; task "
                                f"tables are for runs imported from other code")
        checkpoints.write_manifest(run, label_tasks(manifest, table,
                                                    plasticity_measure=plasticity_measure,
                                                    higher_is_better=higher_is_better))
    return checkpoints.open_run(run)
