"""Probe sets: the fixed inputs on which every checkpoint of a run is measured.

A probe set is drawn once per analysis (seeded) and used at every checkpoint, so kernels and
spectra of different checkpoints are comparable. Sources:

* ``"seen"``: equal shares from the test sets of every task the run's checkpoints have reached
  (task 0 … the largest task index in the manifest; for a finished run, every task; the
  default), with every input at most once — tasks that share their images (shuffled or random
  labels) contribute different ones, so the probe may be smaller than asked when there are too
  few distinct images; a task without a test set (an online stream such as the slowly-changing
  regression) contributes inputs of its training set instead, and regression probes carry no
  labels (``y = -1``);
* ``"task:<k>"``: the test set of task k alone (its training inputs if it has none);
* a path to a probe file: an ``.npz`` with an array ``x`` (``N × input_shape``) and optionally
  labels ``y`` (``len(y) == N``, each in −1 … C − 1, −1: unknown) — for runs written by other
  programs, whose manifest has no stream. It is read and checked by
  :func:`ntkplast.runs.output_check.read_probe_file` (the reader of ``import --probe`` too, so
  a file holding the network's ``outputs`` and ``step`` serves both), with C the manifest's
  ``num_classes``, else the model's number of outputs, else
  :data:`~ntkplast.runs.output_check.LABEL_BOUND`; a flaw is refused naming the array. More than
  ``size`` rows: ``size`` of them are drawn (seeded), each row's label with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.runs.checkpoints import Run
from ntkplast.runs.output_check import LABEL_BOUND, read_probe_file

__all__ = ["Probe", "build_probe"]


@dataclasses.dataclass(frozen=True, eq=False)
class Probe:
    """Probe inputs ``x`` (``N × input_shape``), labels ``y`` (−1 where unknown), provenance."""

    x: np.ndarray
    y: np.ndarray
    source: str
    seed: int

    def fingerprint(self) -> str:
        """A short hash of the probe's bytes (part of the analysis cache key)."""
        h = hashlib.sha256(np.ascontiguousarray(self.x, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.y, np.int64).tobytes())
        return h.hexdigest()[:16]


def _stream_of(run: Run, data_dir: str | None) -> streams.TaskStream:
    custom = run.manifest.get("stream", {})
    if isinstance(custom, dict) and "custom" in custom:
        raise NtkplastError(f"{run.path} was trained on a custom stream "
                            f"({custom['custom']!r}) that cannot be rebuilt from the manifest; "
                            f"pass --probe PATH.npz with an array x of inputs")
    spec = run.manifest.get("config", {}).get("stream")
    if spec is None:
        raise NtkplastError(f"{run.path}: the manifest has no stream configuration, so the probe "
                            f"set cannot be drawn from its tasks; pass --probe PATH.npz with an "
                            f"array x of inputs")
    spec = dict(spec)
    if data_dir is not None:
        spec["data_dir"] = data_dir
    return streams.make_stream(spec)


def _distinct_draw(rng: np.random.Generator, x: np.ndarray, n: int,
                   taken: set[bytes]) -> np.ndarray:
    """Sorted indices of up to ``n`` rows of ``x`` whose inputs are not in ``taken`` (updated).

    Tasks that share their inputs (``shuffled_labels``, ``random_labels``) would otherwise put the
    same image in the probe several times, making every kernel on it exactly singular. The first
    draw is ``rng.choice`` as for distinct inputs; only rows already taken are replaced, from
    the rest of the task in a seeded order.
    """
    first = [int(i) for i in rng.choice(len(x), size=n, replace=False)]

    def candidates():
        yield from first
        drawn = set(first)  # the seeded replacements are drawn only when some row repeats
        yield from (int(i) for i in rng.permutation(len(x)) if int(i) not in drawn)

    keep: list[int] = []
    pool = candidates()
    while len(keep) < n and (i := next(pool, None)) is not None:
        row = x[i].tobytes()
        if row not in taken:
            taken.add(row)
            keep.append(i)
    return np.sort(np.asarray(keep, dtype=np.int64))


def build_probe(run: Run, source: str = "seen", size: int = 256, seed: int = 0,
                data_dir: str | None = None) -> Probe:
    """Draw the probe set for ``run`` (module docstring for ``source``)."""
    if size < 1:
        raise NtkplastError(f"probe size must be >= 1, got {size}")
    rng = np.random.default_rng([seed, 7])
    if source == "seen" or source.startswith("task:"):
        stream = _stream_of(run, data_dir)
        if source == "seen":
            last = max((c.task for c in run.checkpoints), default=0)
            tasks = list(range(min(last, len(stream) - 1) + 1))
        else:
            k = source[5:]
            if not k.isdigit() or int(k) >= len(stream):
                raise NtkplastError(f"probe {source!r}: expected task:<k> with 0 <= k < "
                                    f"{len(stream)}")
            tasks = [int(k)]
        shares = [len(s) for s in np.array_split(np.arange(size), len(tasks))]
        xs, ys = [], []
        taken: set[bytes] = set()
        for t, n in zip(tasks, shares):
            if n == 0:
                continue
            x, y = stream.test_set(t)
            if len(y) == 0:  # an online task without a test set: probe its training inputs
                task = stream[t]
                x, y = task.x_train, task.y_train
            if getattr(stream, "regression", False):
                y = np.full(len(y), -1)  # no class labels to align the kernel with
            pick = _distinct_draw(rng, x, min(n, len(y)), taken)
            xs.append(x[pick])
            ys.append(y[pick])
        return Probe(np.concatenate(xs), np.concatenate(ys).astype(np.int64), source, seed)
    if not os.path.isfile(source):
        raise NtkplastError(f"probe {source!r}: not 'seen', 'task:<k>' or an existing "
                            f".npz file")
    probe = read_probe_file(source, run.input_shape, num_classes=_classes(run))
    x = probe.x
    y = np.full(len(x), -1, np.int64) if probe.y is None else probe.y
    if len(x) > size:
        keep = np.sort(rng.choice(len(x), size=size, replace=False))
        x, y = x[keep], y[keep]
    return Probe(x, y, source, seed)


def _classes(run: Run) -> int:
    """The bound on a probe file's labels: the manifest's ``num_classes``, else the model's
    number of outputs, else :data:`~ntkplast.runs.output_check.LABEL_BOUND`."""
    for k in (run.manifest.get("num_classes"), getattr(run.spec, "num_outputs", None)):
        if isinstance(k, int) and not isinstance(k, bool) and k >= 1:
            return k
    return LABEL_BOUND
