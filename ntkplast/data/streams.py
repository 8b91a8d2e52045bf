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
    accuracy sits at chance; the plasticity signal is the training accuracy reached. With
    ``train_size = n`` and ``fixed_subset = true`` every task uses the same n images and only
    their labels are re-drawn — the protocol of Lyle et al. (2023) and Kumar et al. (2023).
``"warm_start"``
    Warm-starting (Ash & Adams 2020, "On warm-starting neural network training"): task 0 trains
    on a seeded ``warm_fraction`` of the training set, every later task on all of it; the test
    set is the dataset's. The plasticity signal is the gap in test accuracy to a fresh network
    trained on all of the data (the reset reference).
``"drifting_permuted"``
    A task-free stream: the pixel permutation drifts gradually and the learner is never told of a
    change. Window 0 applies a seeded random permutation π₀ (as ``"permuted"``'s task 0); window
    t composes π_{t−1} with ``P = round(drift·D/2)`` disjoint transpositions τ_t drawn from
    ``default_rng([seed, t, 5])``: π_t = π_{t−1} ∘ τ_t, i.e. x'_t[j] = x[π_t[j]], so 2P of the
    D = H·W·C input positions change their source pixel between consecutive windows and the
    others keep it. A window is a measurement unit, not a task: with the online protocol
    (``[train] online = true``) its ``train_size`` fresh examples are each seen once, and the
    online accuracy over the window is plasticity measured on a sliding window of the stream.
    Methods that act at task ends are refused (:data:`TASK_FREE_KINDS`). The drifting input
    distribution follows the gradual-shift protocols of the task-free continual-learning
    literature (Aljundi, Kelchtermans & Tuytelaars 2019, "Task-free continual learning").
``"slowly_changing_regression"``
    Dohare et al. (2024)'s slowly-changing regression ("bit-flipping"): inputs of ``bits``
    binary values, the first ``slow_bits`` held fixed for a task of ``train_size`` examples
    (default 10,000) and the rest random per example; targets from a fixed random network of
    linear threshold units (:mod:`ntkplast.data.regression`). ``dataset`` is not used.

Two more streams of the plasticity literature are these kinds trained with the online protocol
(``[train] online = true``: one pass in stream order, batch size 1 allowed):

* **input-permuted, online**: ``kind = "permuted"`` (Dohare et al. 2024's online permuted MNIST);
* **label-permuted, online** (Elsayed & Mahmood 2024, "Addressing loss of plasticity and
  catastrophic forgetting in continual learning"): ``kind = "shuffled_labels"`` with
  ``train_size = k`` — every k examples (one task: k fresh examples drawn from the training set)
  the label map is re-drawn.

``train_size`` caps each task's training set at that many examples, a seeded random subset drawn
per task (or once for the whole stream with ``fixed_subset = true``); tasks with fewer examples
keep all of them; the test sets are never subsampled.

Random streams are drawn from ``np.random.default_rng([seed, t, purpose])`` with a fixed purpose
code per use (0 the task's transform, 1 the train subset, 2 the random test labels, 3 the split
cycle's class order, indexed by cycle instead of ``t``, 5 a drifting window's transpositions);
the fixed subset from ``default_rng([seed, 1])`` and the warm-start order from
``default_rng([seed, 4])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ntkplast.data import datasets as data_lib
from ntkplast.data.regression import SlowlyChangingRegression
from ntkplast.data.spec import FLIPS, IMAGE_KINDS, KINDS, TASK_FREE_KINDS, StreamSpec, check_split
from ntkplast.data.tasks import LazyTasks, Task
from ntkplast.errors import NtkplastError

__all__ = ["FLIPS", "IMAGE_KINDS", "KINDS", "TASK_FREE_KINDS", "StreamSpec", "Task", "TaskStream",
           "make_stream"]

_TRANSFORM, _SUBSET, _TEST_LABELS, _CYCLE, _WARM, _DRIFT = 0, 1, 2, 3, 4, 5


class TaskStream(LazyTasks):
    """The built-in stream of a :class:`StreamSpec` over a dataset: task ``t`` built on demand,
    deterministically (:class:`~ntkplast.data.tasks.LazyTasks`).

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
            check_split(spec.classes_per_task, dataset.num_classes, f"dataset {dataset.name!r}")
        super().__init__(spec.num_tasks, dataset.input_shape, dataset.num_classes)
        self.spec = spec
        self.dataset = dataset
        self._drifted: dict[int, np.ndarray] = {}  # window → π_t, filled in order when asked

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

    def drift_permutation(self, t: int) -> np.ndarray:
        """π_t of a ``"drifting_permuted"`` stream (module docstring), composed from the last
        window computed before t (each window's π is kept: D int64 values per window)."""
        d = int(np.prod(self.input_shape))
        pairs = round(self.spec.drift * d / 2)
        if not self._drifted:
            self._drifted[0] = self._rng(0, _TRANSFORM).permutation(d)
        start = max(k for k in self._drifted if k <= t)
        perm = self._drifted[start]
        for k in range(start + 1, t + 1):
            swap = self._rng(k, _DRIFT).choice(d, 2 * pairs, replace=False).reshape(2, pairs)
            perm = perm.copy()
            perm[swap[0]], perm[swap[1]] = perm[swap[1]], perm[swap[0]]  # fancy: copies
            self._drifted[k] = perm
        return perm

    def _train_subset(self, t: int, n: int) -> np.ndarray | None:
        """Indices of task ``t``'s training examples among the ``n`` it could use (None: all)."""
        size = self.spec.train_size
        keep = None
        if size is not None and size < n:
            rng = (np.random.default_rng([self.spec.seed, _SUBSET]) if self.spec.fixed_subset
                   else self._rng(t, _SUBSET))
            keep = np.sort(rng.choice(n, size, replace=False))
        if self.spec.kind == "warm_start" and t == 0:
            m = len(keep) if keep is not None else n
            first = np.random.default_rng([self.spec.seed, _WARM]).permutation(m)
            first = np.sort(first[:max(1, int(self.spec.warm_fraction * m))])
            keep = keep[first] if keep is not None else first
        return keep

    def _build(self, t: int, include_train: bool = True) -> Task:
        ds, kind = self.dataset, self.spec.kind
        xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
        if not include_train:
            xtr, ytr = xtr[:0], ytr[:0]
        if kind == "split":
            chosen = np.asarray(self.split_classes(t))
            tr, te = np.isin(ytr, chosen), np.isin(yte, chosen)
            xtr, ytr, xte, yte = xtr[tr], ytr[tr], xte[te], yte[te]
        keep = self._train_subset(t, len(ytr)) if include_train else None
        if keep is not None:
            xtr, ytr = xtr[keep], ytr[keep]
        rng = self._rng(t, _TRANSFORM)
        if kind == "permuted":
            perm = rng.permutation(int(np.prod(self.input_shape)))
            xtr, xte = _permute_pixels(xtr, perm), _permute_pixels(xte, perm)
        elif kind == "drifting_permuted":
            perm = self.drift_permutation(t)
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
                dataset: data_lib.Dataset | None = None) -> LazyTasks:
    """Build the task stream that ``spec`` describes.

    Args:
      spec: a :class:`StreamSpec` or its plain-data form (a mapping, checked by
        :meth:`StreamSpec.from_dict`).
      dataset: a dataset to use instead of loading ``spec.dataset`` from ``spec.data_dir``
        (e.g. a subsample for a quick test); ``spec.dataset`` is then only a label.

    Returns:
      a :class:`TaskStream` of ``spec.num_tasks`` tasks (for ``"slowly_changing_regression"``
      a :class:`~ntkplast.data.regression.SlowlyChangingRegression`).
    """
    if not isinstance(spec, StreamSpec):
        if not isinstance(spec, Mapping):
            raise NtkplastError(f"stream: expected a StreamSpec or a table of settings, got "
                                f"{type(spec).__name__}")
        spec = StreamSpec.from_dict(spec)
    if spec.kind == "slowly_changing_regression":
        return SlowlyChangingRegression(spec)
    if dataset is None:
        dataset = data_lib.load_dataset(spec.dataset, spec.data_dir)
    elif not isinstance(dataset, data_lib.Dataset):
        raise NtkplastError(f"make_stream: dataset must be an ntkplast.data.Dataset, got "
                            f"{type(dataset).__name__}")
    return TaskStream(spec, dataset)
