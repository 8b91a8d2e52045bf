"""Your own task streams: the protocol :func:`ntkplast.train.train_run` needs, and arrays → stream.

Any object with these members trains, checkpoints and analyses like a built-in stream:

==========================  ====================================================================
member                      meaning
==========================  ====================================================================
``len(stream)``             number of tasks
``stream[t]``               task t: a :class:`ntkplast.streams.Task` (``x_train``, ``y_train``,
                            ``x_test``, ``y_test``, ``index``, ``classes``)
``stream.test_set(t)``      ``(x_test, y_test)`` of task t (for the accuracy matrix)
``stream.input_shape``      per-example input shape, the same for every task
``stream.num_classes``      size of the shared output head: classes, or regression outputs
==========================  ====================================================================

Classification tasks have integer labels ``y`` (shape ``N``) and train with
``train.loss = "cross_entropy"``; regression tasks have float targets (``N`` or ``N × K``) and
train with ``train.loss = "mse"``, reporting mean squared errors where a classification run
reports accuracies (:data:`ntkplast.train.OBJECTIVES`). :class:`ArrayStream` builds a stream from
arrays you already have. A run trained on a custom stream records ``"stream": {"custom": name}``
in its manifest; ``ntkplast analyze`` then needs ``--probe FILE.npz`` (it cannot rebuild the
tasks). ``analyses/custom_stream_regression.py`` is a runnable example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ntkplast.data.streams import StreamSpec, Task, TaskStream
from ntkplast.errors import NtkplastError

__all__ = ["ArrayStream", "Stream", "check_stream"]


@runtime_checkable
class Stream(Protocol):
    """What training needs of a task stream (module docstring)."""

    input_shape: tuple[int, ...]
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, t: int) -> Task: ...

    def test_set(self, t: int) -> tuple[np.ndarray, np.ndarray]: ...


def _task_arrays(i: int, task: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    if len(task) != 4:
        raise NtkplastError(f"tasks[{i}]: expected (x_train, y_train, x_test, y_test), got "
                            f"{len(task)} item(s)")
    xtr, ytr, xte, yte = (np.asarray(a) for a in task)
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
            raise NtkplastError(f"tasks[{i}]: x_{name} {x.shape} and y_{name} {y.shape} must be "
                                f"non-empty with one row per example")
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise NtkplastError(f"tasks[{i}]: x_{name} must hold finite numbers")
    return xtr, ytr, xte, yte


class ArrayStream(Sequence[Task]):
    """A stream of tasks given as arrays ``[(x_train, y_train, x_test, y_test), …]``.

    Integer targets make a classification stream (``num_classes`` = largest label + 1, or the
    value given); float targets a regression stream (``num_classes`` = outputs K). Inputs are
    stored as float32; every task must share the input shape and the kind of target.

    Attributes:
      regression: whether the targets are real-valued.
      name: recorded in the manifest of runs trained on it.
    """

    def __init__(self, tasks: Sequence[Sequence[np.ndarray]], *, num_classes: int | None = None,
                 name: str = "custom"):
        if len(tasks) == 0:
            raise NtkplastError("ArrayStream: expected at least one task")
        arrays = [_task_arrays(i, t) for i, t in enumerate(tasks)]
        self.input_shape: tuple[int, ...] = tuple(arrays[0][0].shape[1:])
        self.regression = bool(np.issubdtype(arrays[0][1].dtype, np.floating))
        self.name = name
        self._tasks = []
        for i, (xtr, ytr, xte, yte) in enumerate(arrays):
            for x in (xtr, xte):
                if tuple(x.shape[1:]) != self.input_shape:
                    raise NtkplastError(f"tasks[{i}]: inputs of shape {x.shape[1:]}, but task 0 "
                                        f"has {self.input_shape}; every task shares one shape")
            self._tasks.append(self._task(i, xtr, ytr, xte, yte))
        if self.regression:
            outputs = {1 if t.y_train.ndim == 1 else t.y_train.shape[1] for t in self._tasks}
            if len(outputs) != 1:
                raise NtkplastError(f"ArrayStream: tasks have {sorted(outputs)} regression outputs;"
                                    f" every task needs the same number")
            self.num_classes: int = outputs.pop()
        else:
            top = 1 + max(max(t.classes) for t in self._tasks)
            if num_classes is not None and num_classes < top:
                raise NtkplastError(f"ArrayStream: num_classes={num_classes}, but label "
                                    f"{top - 1} occurs")
            self.num_classes = num_classes if num_classes is not None else top

    def _task(self, i: int, xtr, ytr, xte, yte) -> Task:
        kinds = {bool(np.issubdtype(y.dtype, np.floating)) for y in (ytr, yte)}
        if kinds != {self.regression}:
            raise NtkplastError(f"tasks[{i}]: targets must all be integer labels "
                                f"(classification) or all floats (regression), as in task 0")
        if self.regression:
            if ytr.ndim > 2 or ytr.shape[1:] != yte.shape[1:] or not (
                    np.all(np.isfinite(ytr)) and np.all(np.isfinite(yte))):
                raise NtkplastError(f"tasks[{i}]: regression targets must be finite, N or N × K, "
                                    f"the same K for train and test")
            return Task(i, xtr.astype(np.float32), ytr.astype(np.float32),
                        xte.astype(np.float32), yte.astype(np.float32), ())
        if not np.issubdtype(ytr.dtype, np.integer) or ytr.ndim != 1 or yte.ndim != 1 or min(
                ytr.min(), yte.min()) < 0:
            raise NtkplastError(f"tasks[{i}]: labels must be non-negative integers, shape N")
        classes = tuple(int(c) for c in np.unique(np.concatenate([ytr, yte])))
        return Task(i, xtr.astype(np.float32), ytr.astype(np.int32), xte.astype(np.float32),
                    yte.astype(np.int32), classes)

    def __len__(self) -> int:
        return len(self._tasks)

    def __getitem__(self, t):  # type: ignore[override]
        return self._tasks[t]

    def test_set(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x_test, y_test)`` of task ``t``."""
        task = self._tasks[t]
        return task.x_test, task.y_test

    def __repr__(self) -> str:
        kind = "regression" if self.regression else "classification"
        return (f"ArrayStream({self.name!r}, {len(self)} {kind} tasks, input_shape="
                f"{self.input_shape}, outputs={self.num_classes})")


def check_stream(stream: object, spec: StreamSpec, num_outputs: int, loss: str) -> bool:
    """Check that ``stream`` can train a model with ``num_outputs`` outputs under ``loss``.

    Returns whether it is *custom*: anything but the built-in stream that ``spec`` describes.
    """
    missing = [m for m in ("__len__", "__getitem__", "test_set", "input_shape", "num_classes")
               if not hasattr(stream, m)]
    if missing:
        raise NtkplastError(f"stream: {type(stream).__name__} lacks {missing}; a stream needs "
                            f"len(), [t] → Task, test_set(t), input_shape and num_classes "
                            f"(ntkplast.custom_streams)")
    regression = bool(getattr(stream, "regression", False))
    if regression != (loss == "mse"):
        want = "mse" if regression else "cross_entropy"
        raise NtkplastError(f"train.loss = {loss!r} does not fit this "
                            f"{'regression' if regression else 'classification'} stream; "
                            f"set train.loss = {want!r}")
    if stream.num_classes > num_outputs or (regression and stream.num_classes != num_outputs):
        raise NtkplastError(f"model.num_outputs = {num_outputs}, but the stream needs "
                            f"{stream.num_classes} outputs; set model.num_outputs = "
                            f"{stream.num_classes}")
    return not (isinstance(stream, TaskStream) and stream.spec == spec)
