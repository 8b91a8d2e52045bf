"""Your own task streams: the protocol :func:`ntkplast.training.train_run` needs, arrays → stream,
and streams generated on demand.

Any object with these members trains, checkpoints and analyses like a built-in stream:

==========================  ====================================================================
member                      meaning
==========================  ====================================================================
``len(stream)``             number of tasks
``stream[t]``               task t: a :class:`ntkplast.data.tasks.Task` (``x_train``,
                            ``y_train``, ``x_test``, ``y_test``, ``index``, ``classes``); a
                            task without a test set has zero test rows
``stream.test_set(t)``      ``(x_test, y_test)`` of task t (for the accuracy matrix)
``stream.input_shape``      per-example input shape, the same for every task
``stream.num_classes``      size of the shared output head: classes, or regression outputs
==========================  ====================================================================

Classification tasks have integer labels ``y`` (shape ``N``) and train with ``train.loss =
"cross_entropy"``; regression tasks have float targets (``N`` or ``N × K``) and train with
``train.loss = "mse"``, reporting mean squared errors where a classification run reports accuracies
(:data:`ntkplast.training.OBJECTIVES`). :class:`ArrayStream` builds a stream from arrays you already
have; :class:`LazyStream` calls your function for task t only when the training loop reaches it, so
a stream of millions of examples never sits in memory whole. A run trained on a custom stream
records ``"stream": {"custom": name}`` in its manifest; ``ntkplast analyze`` then needs ``--probe
FILE.npz`` (it cannot rebuild the tasks). ``analyses/custom_stream_regression.py`` is a runnable
example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ntkplast.base import Stream
from ntkplast.data.regression import SlowlyChangingRegression
from ntkplast.data.streams import StreamSpec, TaskStream
from ntkplast.data.tasks import LazyTasks, Task, check_task_arrays
from ntkplast.errors import NtkplastError

__all__ = ["ArrayStream", "LazyStream", "Stream", "check_stream"]


def _task_arrays(i: int, task: Sequence[np.ndarray | None]) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)`` of ``tasks[i]``; a task given as
    ``(x_train, y_train)`` (or with ``None`` test arrays) gets an empty test set."""
    if len(task) == 2 or (len(task) == 4 and task[2] is None and task[3] is None):
        xtr, ytr = np.asarray(task[0]), np.asarray(task[1])
        xte, yte = np.zeros((0, *xtr.shape[1:]), np.float32), np.zeros((0, *ytr.shape[1:]),
                                                                          ytr.dtype)
    elif len(task) == 4:
        xtr, ytr, xte, yte = (np.asarray(a) for a in task)
    else:
        raise NtkplastError(f"tasks[{i}]: expected (x_train, y_train) or (x_train, y_train, "
                            f"x_test, y_test), got {len(task)} item(s)")
    check_task_arrays(f"tasks[{i}]", (xtr, ytr, xte, yte))
    return xtr, ytr, xte, yte


def _to_task(i: int, arrays: Sequence[np.ndarray], regression: bool) -> Task:
    """Task ``i`` from checked ``(x_train, y_train, x_test, y_test)``: float32 inputs; float32
    targets (regression) or int32 labels (classification)."""
    xtr, ytr, xte, yte = arrays
    kinds = {bool(np.issubdtype(y.dtype, np.floating)) for y in (ytr, yte)}
    if kinds != {regression}:
        want = "floats" if regression else "integer labels"
        raise NtkplastError(f"tasks[{i}]: targets must all be integer labels (classification) or "
                            f"all floats (regression); this stream's are {want}")
    if regression:
        if ytr.ndim > 2 or ytr.shape[1:] != yte.shape[1:] or not (
                np.all(np.isfinite(ytr)) and np.all(np.isfinite(yte))):
            raise NtkplastError(f"tasks[{i}]: regression targets must be finite, N or N × K, "
                                f"the same K for train and test")
        return Task(i, xtr.astype(np.float32), ytr.astype(np.float32),
                    xte.astype(np.float32), yte.astype(np.float32), ())
    if (not np.issubdtype(ytr.dtype, np.integer) or ytr.ndim != 1 or yte.ndim != 1
            or ytr.min() < 0 or (len(yte) and yte.min() < 0)):
        raise NtkplastError(f"tasks[{i}]: labels must be non-negative integers, shape N")
    classes = tuple(int(c) for c in np.unique(np.concatenate([ytr, yte])))
    return Task(i, xtr.astype(np.float32), ytr.astype(np.int32), xte.astype(np.float32),
                yte.astype(np.int32), classes)


class ArrayStream(Sequence[Task]):
    """A stream of tasks given as arrays ``[(x_train, y_train, x_test, y_test), …]`` (or
    ``(x_train, y_train)`` for a task without a test set).

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
            self._tasks.append(_to_task(i, (xtr, ytr, xte, yte), self.regression))
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


class LazyStream(LazyTasks):
    """A stream whose task ``t`` is ``make_task(t)``, called only when it is needed.

    ``make_task(t)`` returns ``(x_train, y_train)`` or ``(x_train, y_train, x_test, y_test)``
    (arrays, checked as :class:`ArrayStream` checks them). Only the last task built is kept, so
    the training loop holds one task at a time however long the stream; building a task again
    (e.g. ``test_set`` for ``train.eval_previous``) calls ``make_task`` again, so it must be a
    deterministic function of ``t``.

    Args:
      make_task: task index → arrays.
      num_tasks: the stream's length.
      input_shape: every task's per-example input shape.
      num_classes: size of the output head (classes, or regression outputs K).
      regression: whether targets are floats (train with ``train.loss = "mse"``).
      name: recorded in the manifest of runs trained on it.
    """

    def __init__(self, make_task: Callable[[int], Sequence[np.ndarray]], num_tasks: int, *,
                 input_shape: Sequence[int], num_classes: int, regression: bool = False,
                 name: str = "lazy"):
        if num_tasks < 1 or num_classes < 1:
            raise NtkplastError(f"LazyStream: num_tasks and num_classes must be >= 1, got "
                                f"{num_tasks} and {num_classes}")
        super().__init__(num_tasks, tuple(input_shape), num_classes)
        self.make_task, self.regression, self.name = make_task, bool(regression), name

    def _build(self, t: int, include_train: bool = True) -> Task:
        xtr, ytr, xte, yte = _task_arrays(t, self.make_task(t))
        for x in (xtr, xte):
            if tuple(x.shape[1:]) != self.input_shape:
                raise NtkplastError(f"LazyStream {self.name!r}: task {t} has inputs of shape "
                                    f"{x.shape[1:]}, declared input_shape {self.input_shape}")
        if not include_train:
            xtr, ytr = xtr[:0], ytr[:0]
        return _to_task(t, (xtr, ytr, xte, yte), self.regression)

    def __repr__(self) -> str:
        return (f"LazyStream({self.name!r}, {len(self)} tasks, input_shape={self.input_shape}, "
                f"outputs={self.num_classes})")


def check_stream(stream: object, spec: StreamSpec, num_outputs: int, loss: str) -> bool:
    """Check that ``stream`` can train a model with ``num_outputs`` outputs under ``loss``.

    Returns whether it is *custom*: anything but the built-in stream that ``spec`` describes.
    """
    missing = [m for m in ("__len__", "__getitem__", "test_set", "input_shape", "num_classes")
               if not hasattr(stream, m)]
    if missing:
        raise NtkplastError(f"stream: {type(stream).__name__} lacks {missing}; a stream needs "
                            f"len(), [t] → Task, test_set(t), input_shape and num_classes "
                            f"(ntkplast.data.custom)")
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
    return not (isinstance(stream, TaskStream | SlowlyChangingRegression) and stream.spec == spec)
