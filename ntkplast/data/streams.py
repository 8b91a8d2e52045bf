"""Continual-learning task streams over a :class:`~ntkplast.data.Dataset`.

A stream is a sequence of tasks that share one input shape and one output head over all classes of
the dataset (no task identity is given to the network). Tasks are built lazily and
deterministically: task ``t`` depends only on ``(spec.seed, t)`` (for ``"split"``: on the seed and
the cycle that ``t`` falls in), so ``stream[t]`` returns the same arrays every time, in any order.

Kinds (``StreamSpec.kind``):

``"permuted"``
    Task ``t`` applies a fixed random permutation to the flattened pixels (``H·W·C`` values) of
    every train and test image, then reshapes back to ``H×W×C``. Every task is permuted, task 0
    included, as in Dohare et al. (2024). Permuted MNIST: Goodfellow et al. (2013), "An empirical
    investigation of catastrophic forgetting"; Dohare et al. (2024), "Loss of plasticity in deep
    continual learning", Nature.
``"split"``
    Task ``t`` holds the examples of ``classes_per_task`` classes, with their original labels.
    Tasks go through the classes in cycles of ``num_classes / classes_per_task`` tasks; each cycle
    uses a fresh seeded permutation of the classes, so every class occurs once per cycle and any
    ``num_tasks`` works (split digits: 5 tasks of 2 classes per cycle; Split CIFAR-100: 20 tasks
    of 5). ``classes_per_task`` must divide the number of classes. Zenke, Poole & Ganguli (2017),
    "Continual learning through synaptic intelligence".
``"shuffled_labels"``
    Task ``t`` relabels every example (train and test alike) through a seeded random permutation
    of the classes; the inputs stay the same. Every task is shuffled, task 0 included. Lyle et al.
    (2023), "Understanding plasticity in neural networks"; Kumar, Marklund & Van Roy (2023),
    "Maintaining plasticity in continual learning via regenerative regularization".
``"random_labels"``
    Task ``t`` gives each training example an independent uniformly random label (a memorisation
    task: Lyle et al. 2023; Kumar et al. 2023). Test labels are drawn at random too, so test
    accuracy sits at chance; the plasticity signal is the training accuracy reached.

``train_size`` caps each task's training set at that many examples, a seeded random subset drawn
per task (tasks with fewer examples keep all of them); the test sets are never subsampled.

Random streams are drawn from ``np.random.default_rng([seed, t, purpose])`` with a fixed purpose
code per use (0 the task's transform, 1 the train subset, 2 the random test labels, 3 the split
cycle's class order, indexed by cycle instead of ``t``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np

from ntkplast.data import datasets as data_lib
from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain

KINDS: tuple[str, ...] = ("permuted", "split", "shuffled_labels", "random_labels")

_TRANSFORM, _SUBSET, _TEST_LABELS, _CYCLE = 0, 1, 2, 3


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """Plain-data description of a task stream (the ``[stream]`` table of a run config).

    Attributes:
      kind: ``"permuted"``, ``"split"``, ``"shuffled_labels"`` or ``"random_labels"``.
      dataset: one of :data:`ntkplast.data.DATASETS`.
      num_tasks: number of tasks, at least 1.
      classes_per_task: classes per task for ``"split"`` (must divide the dataset's class count;
        ignored by the other kinds).
      train_size: at most this many training examples per task (a seeded subset), or ``None``
        for all.
      seed: non-negative integer from which every task is drawn.
      data_dir: where the dataset files are (see :func:`ntkplast.data.resolve_data_dir`).
    """

    kind: str = "permuted"
    dataset: str = "digits"
    num_tasks: int = 20
    classes_per_task: int = 2
    train_size: int | None = None
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self) -> None:
        w = "stream"
        if self.kind not in KINDS:
            raise NtkplastError(f"{w}.kind: unknown stream kind {self.kind!r}; choose one of "
                                f"{list(KINDS)}")
        if self.dataset not in data_lib.DATASETS:
            raise NtkplastError(f"{w}.dataset: unknown dataset {self.dataset!r}; choose one of "
                                f"{list(data_lib.DATASETS)}")
        if not _is_int(self.num_tasks) or self.num_tasks < 1:
            raise NtkplastError(f"{w}.num_tasks: expected an integer >= 1, got "
                                f"{self.num_tasks!r}")
        if not _is_int(self.classes_per_task) or self.classes_per_task < 1:
            raise NtkplastError(f"{w}.classes_per_task: expected an integer >= 1, got "
                                f"{self.classes_per_task!r}")
        if self.kind == "split":
            _check_split(self.classes_per_task, data_lib.NUM_CLASSES[self.dataset],
                         f"dataset {self.dataset!r}")
        if self.train_size is not None and (not _is_int(self.train_size) or self.train_size < 1):
            raise NtkplastError(f"{w}.train_size: expected an integer >= 1 or null (all "
                                f"examples), got {self.train_size!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise NtkplastError(f"{w}.seed: expected a non-negative integer, got {self.seed!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise NtkplastError(f"{w}.data_dir: expected a path string or null, got "
                                f"{self.data_dir!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready dict; ``StreamSpec.from_dict(spec.to_dict()) == spec``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "stream") -> StreamSpec:
        """Build a spec from plain data; unknown keys and wrong types name ``where.key``."""
        return from_plain(cls, d, where)


def _check_split(classes_per_task: int, num_classes: int, where: str) -> None:
    if classes_per_task > num_classes or num_classes % classes_per_task:
        divisors = [k for k in range(1, num_classes + 1) if num_classes % k == 0]
        raise NtkplastError(f"stream.classes_per_task: {classes_per_task} does not divide the "
                            f"{num_classes} classes of {where}; choose one of {divisors}")


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One task of a stream.

    Attributes:
      index: the task's position ``t`` in the stream.
      x_train: ``float32[N, H, W, C]``; y_train: ``int32[N]``.
      x_test: ``float32[M, H, W, C]``; y_test: ``int32[M]``.
      classes: the sorted labels that occur in this task (train or test).

    Arrays a task leaves unchanged (e.g. the inputs of a label-shuffling task) are read-only views
    of the dataset's arrays; copy them before modifying in place.
    """

    index: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, ...]


class TaskStream(Sequence[Task]):
    """A sequence of :class:`Task` built lazily and deterministically from a spec and a dataset.

    ``len(stream)`` is ``spec.num_tasks``; ``stream[t]`` builds task ``t`` (the last one built is
    kept, so repeated access is cheap); iteration builds one task at a time.

    Attributes:
      spec: the :class:`StreamSpec`.
      dataset: the underlying :class:`~ntkplast.data.Dataset`.
      num_classes: size of the shared output head (all classes of the dataset).
      input_shape: ``(H, W, C)`` of every task's inputs.
    """

    def __init__(self, spec: StreamSpec, dataset: data_lib.Dataset):
        if spec.kind == "split":
            _check_split(spec.classes_per_task, dataset.num_classes, f"dataset {dataset.name!r}")
        self.spec = spec
        self.dataset = dataset
        self.num_classes: int = int(dataset.num_classes)
        self.input_shape: tuple[int, ...] = dataset.input_shape
        self._last: Task | None = None

    def __len__(self) -> int:
        return self.spec.num_tasks

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

    def __repr__(self) -> str:
        s = self.spec
        return (f"TaskStream(kind={s.kind!r}, dataset={self.dataset.name!r}, "
                f"num_tasks={s.num_tasks}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")

    def _rng(self, t: int, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.spec.seed, t, purpose])

    def split_classes(self, t: int) -> tuple[int, ...]:
        """The sorted classes of task ``t`` of a ``"split"`` stream (no arrays are built)."""
        cpt = self.spec.classes_per_task
        per_cycle = self.num_classes // cpt
        cycle, pos = divmod(t, per_cycle)
        order = self._rng(cycle, _CYCLE).permutation(self.num_classes)
        return tuple(sorted(int(c) for c in order[pos * cpt:(pos + 1) * cpt]))

    def test_set(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x_test, y_test)`` of task ``t``, without building its training arrays."""
        if self._last is not None and self._last.index == t:
            return self._last.x_test, self._last.y_test
        task = self._build(t, include_train=False)
        return task.x_test, task.y_test

    def _build(self, t: int, include_train: bool = True) -> Task:
        ds, kind = self.dataset, self.spec.kind
        xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
        if not include_train:
            xtr, ytr = xtr[:0], ytr[:0]
        if kind == "split":
            chosen = np.asarray(self.split_classes(t))
            tr, te = np.isin(ytr, chosen), np.isin(yte, chosen)
            xtr, ytr, xte, yte = xtr[tr], ytr[tr], xte[te], yte[te]
        if self.spec.train_size is not None and self.spec.train_size < len(ytr):
            keep = np.sort(self._rng(t, _SUBSET).choice(len(ytr), self.spec.train_size,
                                                        replace=False))
            xtr, ytr = xtr[keep], ytr[keep]
        rng = self._rng(t, _TRANSFORM)
        if kind == "permuted":
            perm = rng.permutation(int(np.prod(self.input_shape)))
            xtr, xte = _permute_pixels(xtr, perm), _permute_pixels(xte, perm)
        elif kind == "shuffled_labels":
            mapping = rng.permutation(self.num_classes).astype(np.int32)
            ytr, yte = mapping[ytr], mapping[yte]
        elif kind == "random_labels":
            ytr = rng.integers(0, self.num_classes, size=len(ytr)).astype(np.int32)
            yte = self._rng(t, _TEST_LABELS).integers(0, self.num_classes,
                                                      size=len(yte)).astype(np.int32)
        classes = tuple(int(c) for c in np.unique(np.concatenate([ytr, yte])))
        return Task(t, np.asarray(xtr, np.float32), np.asarray(ytr, np.int32),
                    np.asarray(xte, np.float32), np.asarray(yte, np.int32), classes)


def _permute_pixels(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Apply one permutation of the flattened ``H·W·C`` values to every image of ``x``."""
    return x.reshape(len(x), len(perm))[:, perm].reshape(x.shape)


def make_stream(spec: StreamSpec | Mapping[str, Any],
                dataset: data_lib.Dataset | None = None) -> TaskStream:
    """Build the task stream that ``spec`` describes.

    Args:
      spec: a :class:`StreamSpec` or its plain-data form (a mapping, checked by
        :meth:`StreamSpec.from_dict`).
      dataset: a dataset to use instead of loading ``spec.dataset`` from ``spec.data_dir``
        (e.g. a subsample for a quick test); ``spec.dataset`` is then only a label.

    Returns:
      a :class:`TaskStream` of ``spec.num_tasks`` tasks.
    """
    if not isinstance(spec, StreamSpec):
        if not isinstance(spec, Mapping):
            raise NtkplastError(f"stream: expected a StreamSpec or a table of settings, got "
                                f"{type(spec).__name__}")
        spec = StreamSpec.from_dict(spec)
    if dataset is None:
        dataset = data_lib.load_dataset(spec.dataset, spec.data_dir)
    elif not isinstance(dataset, data_lib.Dataset):
        raise NtkplastError(f"make_stream: dataset must be an ntkplast.data.Dataset, got "
                            f"{type(dataset).__name__}")
    return TaskStream(spec, dataset)
