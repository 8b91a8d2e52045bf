"""The plain-data description of a task stream: :class:`StreamSpec` (the ``[stream]`` table).

Its own module, below :mod:`ntkplast.data.streams` (which builds the image streams and
re-exports these names) and :mod:`ntkplast.data.regression` (which builds the
slowly-changing regression stream from a spec), so neither imports the other. The kinds are
described in :mod:`ntkplast.data.streams`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ntkplast.data import datasets as data_lib
from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain

__all__ = ["FLIPS", "IMAGE_KINDS", "KINDS", "TASK_FREE_KINDS", "StreamSpec", "check_split"]

IMAGE_KINDS: tuple[str, ...] = ("permuted", "split", "shuffled_labels", "random_labels",
                                "warm_start", "drifting_permuted")
"""The kinds built on a classification dataset."""
KINDS: tuple[str, ...] = IMAGE_KINDS + ("slowly_changing_regression",)
FLIPS: tuple[str, ...] = ("all", "one")

# StreamSpec fields added after format v1 shipped: left out of the manifest at their default
# value, so runs written before them still resume (their stored config compares equal).
_ADDED_FIELDS = {"fixed_subset": False, "warm_fraction": 0.5, "bits": 20, "slow_bits": 15,
                 "target_features": 100, "target_beta": 0.7, "flip": "all", "drift": 0.05}
TASK_FREE_KINDS: tuple[str, ...] = ("drifting_permuted",)
"""Kinds without task boundaries: their "tasks" are measurement windows of a gradual drift, so
no method may act at a window's end (:func:`ntkplast.training.config` refuses it)."""


def _is_int(v: Any) -> bool:
    """Whether ``v`` is an ``int`` and not a ``bool``."""
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """Plain-data description of a task stream (the ``[stream]`` table of a run config).

    Attributes:
      kind: one of :data:`KINDS` (``"permuted"``, ``"split"``, ``"shuffled_labels"``,
        ``"random_labels"``, ``"warm_start"``, ``"slowly_changing_regression"``; described in
        :mod:`ntkplast.data.streams`).
      dataset: one of :data:`ntkplast.data.datasets.DATASETS`.
      num_tasks: number of tasks, at least 1.
      classes_per_task: classes per task for ``"split"`` (must divide the dataset's class count;
        ignored by the other kinds).
      train_size: at most this many training examples per task (a seeded subset), or ``None``
        for all; for ``"slowly_changing_regression"`` the examples per task (``None``: 10,000).
      seed: non-negative integer from which every task is drawn.
      data_dir: where the dataset files are (see :func:`ntkplast.data.resolve_data_dir`).
      fixed_subset: draw the ``train_size`` subset once for the whole stream instead of per task
        (random-label memorisation on a fixed set of images).
      warm_fraction: ``"warm_start"``: the fraction of the training set that task 0 sees.
      drift: ``"drifting_permuted"``: the fraction of pixel positions whose source changes from
        one window to the next (2·round(drift·D/2) of the D = H·W·C positions: that many
        disjoint pairs swapped).
      bits, slow_bits, target_features, target_beta, flip: ``"slowly_changing_regression"``:
        input bits m, slow bits f, the target network's threshold units and their β, and whether
        a new task re-draws ``"all"`` slow bits or flips ``"one"`` of them
        (:mod:`ntkplast.data.regression`).
    """

    kind: str = "permuted"
    dataset: str = "digits"
    num_tasks: int = 20
    classes_per_task: int = 2
    train_size: int | None = None
    seed: int = 0
    data_dir: str | None = None
    fixed_subset: bool = False
    warm_fraction: float = 0.5
    bits: int = 20
    slow_bits: int = 15
    target_features: int = 100
    target_beta: float = 0.7
    flip: str = "all"
    drift: float = 0.05

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
            check_split(self.classes_per_task, data_lib.NUM_CLASSES[self.dataset],
                         f"dataset {self.dataset!r}")
        if self.train_size is not None and (not _is_int(self.train_size) or self.train_size < 1):
            raise NtkplastError(f"{w}.train_size: expected an integer >= 1 or null (all "
                                f"examples), got {self.train_size!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise NtkplastError(f"{w}.seed: expected a non-negative integer, got {self.seed!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise NtkplastError(f"{w}.data_dir: expected a path string or null, got "
                                f"{self.data_dir!r}")
        if self.fixed_subset and self.train_size is None:
            raise NtkplastError(f"{w}.fixed_subset needs {w}.train_size (how many images every "
                                f"task shares)")
        if self.fixed_subset and self.kind == "split":
            raise NtkplastError(f"{w}.fixed_subset: split tasks hold different classes, so they "
                                f"cannot share one subset of images; drop fixed_subset")
        if not 0 < self.warm_fraction < 1:
            raise NtkplastError(f"{w}.warm_fraction: expected a fraction in (0, 1), got "
                                f"{self.warm_fraction!r}")
        if (isinstance(self.drift, bool) or not isinstance(self.drift, int | float)
                or not 0 < self.drift <= 1):
            raise NtkplastError(f"{w}.drift: expected a fraction in (0, 1], got {self.drift!r}")
        if self.kind == "warm_start" and self.num_tasks < 2:
            raise NtkplastError(f"{w}.num_tasks: a warm_start stream needs at least 2 tasks "
                                f"(part of the data, then all of it)")
        if self.kind == "slowly_changing_regression":
            self._check_regression(w)

    def _check_regression(self, w: str) -> None:
        for name in ("bits", "slow_bits", "target_features"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise NtkplastError(f"{w}.{name}: expected an integer >= 1, got "
                                    f"{getattr(self, name)!r}")
        if self.slow_bits > self.bits:
            raise NtkplastError(f"{w}.slow_bits = {self.slow_bits} exceeds {w}.bits = "
                                f"{self.bits}")
        if not 0 < self.target_beta < 1:
            raise NtkplastError(f"{w}.target_beta: expected a number in (0, 1), got "
                                f"{self.target_beta!r}")
        if self.flip not in FLIPS:
            raise NtkplastError(f"{w}.flip: expected one of {list(FLIPS)}, got {self.flip!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready dict; ``StreamSpec.from_dict(spec.to_dict()) == spec``. Fields added
        after format v1 are left out at their default value (older manifests lack them)."""
        d = dataclasses.asdict(self)
        for key, default in _ADDED_FIELDS.items():
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "stream") -> StreamSpec:
        """Build a spec from plain data; unknown keys and wrong types name ``where.key``."""
        return from_plain(cls, d, where)


def check_split(classes_per_task: int, num_classes: int, where: str) -> None:
    """Raise unless ``classes_per_task`` divides ``num_classes`` (the classes of ``where``, e.g.
    ``"dataset 'digits'"``), naming the divisors to choose from."""
    if classes_per_task > num_classes or num_classes % classes_per_task:
        divisors = [k for k in range(1, num_classes + 1) if num_classes % k == 0]
        raise NtkplastError(f"stream.classes_per_task: {classes_per_task} does not divide the "
                            f"{num_classes} classes of {where}; choose one of {divisors}")
