"""A task, and the lazy sequence of tasks that every stream is.

A stream builds task ``t`` only when it is asked for (``stream[t]``) and keeps just the last one
built, so a stream of millions of examples never sits in memory whole: the training loop holds
one task at a time. :class:`LazyTasks` is that mechanism; the built-in streams
(:class:`~ntkplast.data.streams.TaskStream`, the slowly-changing regression) and a user's
:class:`~ntkplast.data.custom.LazyStream` fill in ``LazyTasks._build``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from ntkplast.errors import NtkplastError

__all__ = ["LazyTasks", "Task", "check_task_arrays"]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One task of a stream.

    Attributes:
      index: the task's position ``t`` in the stream.
      x_train: ``float32[N, H, W, C]`` (or any per-example shape the stream declares).
      y_train: ``int32[N]`` labels, or ``float32[N]`` / ``float32[N, K]`` regression targets.
      x_test, y_test: the same for the task's test set; zero rows when the task has none (an
        online task: it reports online and training measures only).
      classes: the sorted labels that occur in this task (train or test); ``()`` for regression.

    Arrays a task leaves unchanged (e.g. the inputs of a label-shuffling task) are read-only views
    of the dataset's arrays; copy them before modifying in place.
    """

    index: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, ...]

    @property
    def has_test(self) -> bool:
        """Whether the task has a test set."""
        return len(self.y_test) > 0


class LazyTasks(Sequence[Task]):
    """A sequence of tasks built on demand by ``_build`` (the last one built is kept).

    Attributes:
      input_shape: the per-example input shape, the same for every task.
      num_classes: size of the shared output head (classes, or regression outputs K).
      regression: whether targets are real-valued (train with ``train.loss = "mse"``).
    """

    regression: bool = False

    def __init__(self, num_tasks: int, input_shape: tuple[int, ...], num_classes: int):
        self._num_tasks = int(num_tasks)
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in input_shape)
        self.num_classes: int = int(num_classes)
        self._last: Task | None = None

    def _build(self, t: int, include_train: bool = True) -> Task:
        """Task ``t`` (with zero training rows when ``include_train`` is false)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self._num_tasks

    @overload
    def __getitem__(self, t: int) -> Task: ...

    @overload
    def __getitem__(self, t: slice) -> list[Task]: ...

    def __getitem__(self, t: int | slice) -> Task | list[Task]:
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(len(self)))]
        if not isinstance(t, int | np.integer) or isinstance(t, bool):
            raise NtkplastError(f"task index must be an integer, got {t!r}")
        t = int(t)
        if t < 0:
            t += len(self)
        if not 0 <= t < len(self):
            raise IndexError(f"task index {t} out of range for a stream of {len(self)} tasks")
        if self._last is None or self._last.index != t:
            self._last = self._build(t)
        return self._last

    def __iter__(self) -> Iterator[Task]:
        for t in range(len(self)):
            yield self[t]

    def test_set(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x_test, y_test)`` of task ``t``, without building its training arrays."""
        if self._last is not None and self._last.index == t:
            return self._last.x_test, self._last.y_test
        task = self._build(t, include_train=False)
        return task.x_test, task.y_test


def check_task_arrays(where: str, task: Sequence[np.ndarray]) -> None:
    """Raise unless ``task`` holds (x_train, y_train, x_test, y_test) with one row per example,
    a non-empty training part, and finite inputs."""
    if len(task) != 4:
        raise NtkplastError(f"{where}: expected (x_train, y_train, x_test, y_test), got "
                            f"{len(task)} item(s)")
    for name, x, y in (("train", task[0], task[1]), ("test", task[2], task[3])):
        if x.ndim < 2 or len(x) != len(y) or (name == "train" and len(x) == 0):
            least = " (at least one)" if name == "train" else ""
            raise NtkplastError(f"{where}: x_{name} {x.shape} and y_{name} {y.shape} must have "
                                f"one row per example{least}")
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise NtkplastError(f"{where}: x_{name} must hold finite numbers")

