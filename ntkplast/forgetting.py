r"""Forgetting and transfer from a continual run's accuracy matrix.

A[t, j] is the test accuracy on task j after training on tasks 0 … t (j ≤ t; T tasks, so A is
T × T, its upper triangle unused, NaN where not evaluated). At the end of task t:

* **average accuracy** ACC_t = (1/(t+1)) Σ_{j≤t} A[t, j];
* **backward transfer** BWT_t = (1/t) Σ_{j<t} (A[t, j] − A[j, j]), negative when training on
  later tasks lowered the accuracy on earlier ones (Lopez-Paz & Ranzato 2017, "Gradient
  episodic memory for continual learning", NeurIPS: ACC and BWT, at t = T − 1);
* **forgetting** F_t = (1/t) Σ_{j<t} max_{j≤s<t} (A[s, j] − A[t, j]), the mean drop from each
  earlier task's best accuracy (Chaudhry, Dokania, Ajanthan & Torr 2018, "Riemannian walk for
  incremental learning: understanding forgetting and intransigence", ECCV, at t = T − 1).

The paper's values are those at t = T − 1 (:func:`average_accuracy`,
:func:`backward_transfer`, :func:`forgetting`); :func:`curves` gives every t.

**Missing entries** (NaN: a task without a test set, a row left out by ``eval_previous_every``,
an entry left out by ``eval_previous_max``). Each quantity is the mean of the terms whose
entries are all finite, and NaN when no term is: ACC_t's term j needs A[t, j]; BWT_t's needs
A[t, j] and A[j, j]; F_t's needs A[t, j] and at least one finite A[s, j], j ≤ s < t, the max
running over the finite ones (so a missing row can only lower F). BWT_0 and F_0 are NaN (no
earlier task). For t ≥ 1, a row with no finite entry left of its diagonal was not evaluated:
its ACC_t is NaN too (its diagonal alone is the task's own accuracy, not an average over the
tasks seen). Entries above the diagonal are ignored.

:func:`accuracy_matrix` reads A from a run's manifest: row t is task t's record
``accuracy_on_tasks`` (:func:`ntkplast.training.train_run`, ``train.eval_previous``), and
A[t, t] is its ``test_accuracy`` where that row is absent (the same test set after the same
training), so BWT keeps its reference A[j, j] when ``eval_previous_every`` skips rows.
:func:`summary` (what training writes to the manifest as ``forgetting``) and
:func:`task_end_rows` (the analysis table's rows at a task end) read the manifest.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ntkplast.errors import NtkplastError

__all__ = ["NAMES", "Transfer", "accuracy_matrix", "average_accuracy", "backward_transfer",
           "curves", "forgetting", "summary", "task_end_rows"]

NAMES = ("average_accuracy", "backward_transfer", "forgetting")
"""The quantities' names: the fields of :class:`Transfer`, the manifest's and the table's."""
_ROW_KEY = "accuracy_on_tasks"


class Transfer(NamedTuple):
    """ACC, BWT and F (module docstring): ``(T,)`` numpy curves from :func:`curves`, or the
    floats at one task."""

    average_accuracy: Any
    backward_transfer: Any
    forgetting: Any


def _checked(a: Any) -> np.ndarray:
    """``a`` as a float64 T × T host array with its upper triangle NaN."""
    a = np.array(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not a.size:
        raise NtkplastError(f"accuracy matrix: expected a non-empty T × T array, got shape "
                            f"{a.shape}")
    a[np.triu_indices(len(a), 1)] = np.nan
    return a


def _mean(terms: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row, the mean of ``terms`` where ``valid`` (NaN where no term is valid)."""
    count = valid.sum(axis=1)
    total = np.where(valid, terms, 0.0).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def curves(a: Any) -> Transfer:
    """ACC_t, BWT_t and F_t at every t (module docstring, its NaN rule included).

    ``a``: the accuracy matrix, ``T × T`` (NaN where not evaluated). Returns a
    :class:`Transfer` of three ``(T,)`` numpy float64 arrays.

    Examples:
      >>> from ntkplast import forgetting
      >>> nan = float("nan")
      >>> c = forgetting.curves([[0.9, nan], [0.6, 0.8]])
      >>> print([f"{v:.2f}" for v in c.average_accuracy], f"{c.backward_transfer[1]:.2f}",
      ...       f"{c.forgetting[1]:.2f}")
      ['0.90', '0.70'] -0.30 0.30
    """
    a = _checked(a)
    finite = np.isfinite(a)
    below = np.tri(len(a), k=-1, dtype=bool)  # j < t
    earlier = finite & below
    evaluated = earlier.any(axis=1)
    evaluated[0] = True
    acc = np.where(evaluated, _mean(a, finite), np.nan)
    diag = np.diag(a)
    bwt = _mean(a - diag[None, :], earlier & np.isfinite(diag)[None, :])
    best = np.fmax.accumulate(a, axis=0)  # best[s, j] = max of the finite A[0 … s, j]
    best = np.vstack([np.full((1, len(a)), np.nan), best[:-1]])  # over s < t
    f = _mean(best - a, earlier & np.isfinite(best))
    return Transfer(acc, bwt, f)


def average_accuracy(a: Any) -> float:
    """ACC = (1/T) Σ_j A[T−1, j] (Lopez-Paz & Ranzato 2017; NaN rule: module docstring).

    ``a``: the accuracy matrix, ``T × T``. Returns a float.

    Examples:
      >>> from ntkplast import forgetting
      >>> nan = float("nan")
      >>> print(f"{forgetting.average_accuracy([[0.9, nan], [0.6, 0.8]]):.2f}")
      0.70
    """
    return float(curves(a).average_accuracy[-1])


def backward_transfer(a: Any) -> float:
    """BWT = (1/(T−1)) Σ_{j<T−1} (A[T−1, j] − A[j, j]) (Lopez-Paz & Ranzato 2017; NaN rule:
    module docstring).

    ``a``: the accuracy matrix, ``T × T``. Returns a float (NaN for T = 1).

    Examples:
      >>> from ntkplast import forgetting
      >>> nan = float("nan")
      >>> print(f"{forgetting.backward_transfer([[0.9, nan], [0.6, 0.8]]):.2f}")
      -0.30
    """
    return float(curves(a).backward_transfer[-1])


def forgetting(a: Any) -> float:
    """F = (1/(T−1)) Σ_{j<T−1} max_{j≤s<T−1} (A[s, j] − A[T−1, j]) (Chaudhry et al. 2018; NaN
    rule: module docstring).

    ``a``: the accuracy matrix, ``T × T``. Returns a float (NaN for T = 1).

    Examples:
      Task 0 peaks at 0.95 after task 1 and ends at 0.5; task 1 drops from 0.8 to 0.7:

      >>> from ntkplast import forgetting
      >>> nan = float("nan")
      >>> a = [[0.9, nan, nan], [0.95, 0.8, nan], [0.5, 0.7, 0.85]]
      >>> print(f"{forgetting.forgetting(a):.3f}")    # ((0.95 − 0.5) + (0.8 − 0.7)) / 2
      0.275
    """
    return float(curves(a).forgetting[-1])


def _row(record: Mapping[str, Any], t: int) -> np.ndarray:
    """Task ``t``'s row of A from its record (``accuracy_on_tasks``, else the diagonal from
    ``test_accuracy``; NaN elsewhere), ``(t + 1,)``."""
    row = np.full(t + 1, np.nan)
    values = record.get(_ROW_KEY)
    if values is not None:
        try:
            got = np.array(values, dtype=np.float64)  # None → NaN
        except (TypeError, ValueError):
            got = None
        if got is None or got.ndim != 1 or len(got) > t + 1:
            raise NtkplastError(f"tasks[{t}].{_ROW_KEY}: expected a list of at most {t + 1} "
                                f"numbers and nulls, got {values!r:.60}")
        row[:len(got)] = got
    test = record.get("test_accuracy")
    if not np.isfinite(row[t]) and isinstance(test, int | float) and not isinstance(test, bool):
        row[t] = test
    return row


def _records(manifest: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    tasks = manifest.get("tasks") or []
    return {int(r["task"]): r for r in tasks if isinstance(r, Mapping) and "task" in r}


def _matrix(manifest: Mapping[str, Any], upto: int | None) -> np.ndarray | None:
    """:func:`accuracy_matrix`, or None when no task record kept carries a row."""
    records = _records(manifest)
    if upto is not None:
        records = {t: r for t, r in records.items() if t <= upto}
    if not any(_ROW_KEY in r for r in records.values()):
        return None
    size = max(records) + 1
    a = np.full((size, size), np.nan)
    for t, record in records.items():
        a[t, :t + 1] = _row(record, t)
    return a


def accuracy_matrix(manifest: Mapping[str, Any], *, upto: int | None = None) -> np.ndarray:
    """The accuracy matrix A of a run from its manifest's task records (module docstring).

    Args:
      manifest: a run's manifest (:func:`ntkplast.runs.checkpoints.read_manifest`).
      upto: keep the rows and columns of tasks 0 … ``upto`` (default: every recorded task).

    Returns:
      ``T × T`` numpy float64, T = 1 + the last task kept; NaN where not evaluated.

    Raises:
      NtkplastError: no task record carries ``accuracy_on_tasks`` (a regression run, or one
        trained with ``train.eval_previous = false``, or an imported one).

    Examples:
      >>> from ntkplast import forgetting
      >>> manifest = {"tasks": [{"task": 0, "test_accuracy": 0.9, "accuracy_on_tasks": [0.9]},
      ...                       {"task": 1, "test_accuracy": 0.8},      # row not evaluated
      ...                       {"task": 2, "accuracy_on_tasks": [0.5, None, 0.85]}]}
      >>> forgetting.accuracy_matrix(manifest).round(2).tolist()
      [[0.9, nan, nan], [nan, 0.8, nan], [0.5, nan, 0.85]]
    """
    a = _matrix(manifest, upto)
    if a is None:
        raise NtkplastError(f"the run records no accuracy matrix ({_ROW_KEY} in its task "
                            f"records); train with train.eval_previous = true and a test set")
    return a


def _at(manifest: Mapping[str, Any], task: int | None) -> Transfer | None:
    """ACC, BWT and F at ``task`` (default: the last recorded), or None without a matrix or
    without the task's own record."""
    a = _matrix(manifest, task)
    if a is None or (task is not None and task >= len(a)):
        return None
    i = len(a) - 1 if task is None else task
    return Transfer(*(float(v[i]) for v in curves(a)))


def summary(manifest: Mapping[str, Any]) -> dict[str, float | None] | None:
    """``{"average_accuracy", "backward_transfer", "forgetting"}`` at the last recorded task
    (NaN written as None, for JSON), or None when the run records no accuracy matrix. What
    training stores as the manifest's ``forgetting`` once the run is complete.

    Examples:
      >>> from ntkplast import forgetting
      >>> s = forgetting.summary({"tasks": [{"task": 0, "accuracy_on_tasks": [0.9]},
      ...                                   {"task": 1, "accuracy_on_tasks": [0.6, 0.8]}]})
      >>> print({k: round(v, 2) for k, v in s.items()})
      {'average_accuracy': 0.7, 'backward_transfer': -0.3, 'forgetting': 0.3}
      >>> print(forgetting.summary({"tasks": [{"task": 0, "test_mse": 0.1}]}))
      None
    """
    values = _at(manifest, None)
    if values is None:
        return None
    return {k: (v if math.isfinite(v) else None) for k, v in values._asdict().items()}


def task_end_rows(manifest: Mapping[str, Any], task: int) -> list[tuple[str, str, float]]:
    """The analysis table's rows ``("all", name, value)`` for the end of task ``task``: ACC,
    BWT and F from the matrix of tasks 0 … ``task`` (:data:`NAMES`); the non-finite ones and,
    without a matrix, all of them left out.

    Examples:
      >>> from ntkplast import forgetting
      >>> manifest = {"tasks": [{"task": 0, "accuracy_on_tasks": [0.9]},
      ...                       {"task": 1, "accuracy_on_tasks": [0.6, 0.8]}]}
      >>> [(m, round(v, 2)) for _, m, v in forgetting.task_end_rows(manifest, 0)]
      [('average_accuracy', 0.9)]
      >>> [(m, round(v, 2)) for _, m, v in forgetting.task_end_rows(manifest, 1)]
      [('average_accuracy', 0.7), ('backward_transfer', -0.3), ('forgetting', 0.3)]
    """
    values = _at(manifest, task)
    if values is None:
        return []
    return [("all", k, v) for k, v in values._asdict().items() if math.isfinite(v)]
