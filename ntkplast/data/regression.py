r"""Dohare et al. (2024)'s slowly-changing regression problem ("bit-flipping"), built lazily.

Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood & Sutton (2024), "Loss of plasticity in deep
continual learning", Nature 632: a regression stream on which a small network trained online
loses its ability to track a slowly moving target. Every example is an input of m binary values
x ∈ {0, 1}^m; its first f bits are *slow* (fixed for a segment of T examples, one task here), the
other m − f are drawn afresh for every example. The target is the output of a fixed random
network of F linear threshold units (LTUs), drawn once per stream:

    W ∈ {−1, +1}^{m×F}, b ∈ {−1, +1}^F, v ∈ {−1, +1}^F, c ∈ {−1, +1}   (uniform signs)
    S_i = (m − Σ_j W_ji + b_i) / 2,      τ_i = β (m + 1) − S_i
    h_i(x) = 1[(x W + b)_i > τ_i],        y(x) = h(x) · v + c

(the threshold as the authors' released data code computes it). When a task ends the slow bits
change, in one of the two variants of that code (``flip``):

* ``"all"``: every slow bit is re-drawn uniformly (their default data generator);
* ``"one"``: one slow bit, chosen uniformly, is flipped (their ``flip_one`` variant).

Their setting: m = 20, f = 15, F = 100, β = 0.7, T = 10,000, one million examples (100 tasks),
a learner with one hidden layer of 5 units trained online by SGD with batch size 1. Every random
draw comes from ``np.random.default_rng([seed, …])`` (target network ``[seed, 7]``, task t's slow
bits ``[seed, t, 5]``, the bit flipped before task t ``[seed, t, 6]``, task t's fast bits
``[seed, t, 1]``), so task t is rebuilt in O(t + T) without the earlier tasks in memory. Tasks
have no test set: the stream is learned online, and the plasticity signal is the online error.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ntkplast.data.spec import StreamSpec
from ntkplast.data.tasks import LazyTasks, Task

__all__ = ["DEFAULT_TASK_SIZE", "LTUTarget", "SlowlyChangingRegression", "ltu_target"]

DEFAULT_TASK_SIZE = 10_000
_FAST, _SLOW, _FLIP, _TARGET = 1, 5, 6, 7


class LTUTarget(NamedTuple):
    """The fixed target network: input weights ``W`` (m × F), biases ``b`` (F), thresholds
    ``tau`` (F), output weights ``v`` (F) and output bias ``c``."""

    W: np.ndarray
    b: np.ndarray
    tau: np.ndarray
    v: np.ndarray
    c: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``y(x) = 1[x W + b > τ] · v + c`` for inputs ``x`` of shape N × m."""
        h = (x @ self.W + self.b > self.tau).astype(np.float64)
        return h @ self.v + self.c


def _signs(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 2, shape).astype(np.float64) * 2 - 1


def ltu_target(rng: np.random.Generator, bits: int, features: int, beta: float) -> LTUTarget:
    """Draw the target network (module docstring): signs uniform in {−1, +1}."""
    W, b = _signs(rng, bits, features), _signs(rng, features)
    v, c = _signs(rng, features), float(_signs(rng, 1)[0])
    s = (bits - W.sum(axis=0) + b) / 2
    return LTUTarget(W, b, beta * (bits + 1) - s, v, c)


class SlowlyChangingRegression(LazyTasks):
    """The slowly-changing regression stream of a :class:`~ntkplast.data.spec.StreamSpec`
    (``kind = "slowly_changing_regression"``): ``num_tasks`` tasks of ``train_size`` examples
    (default 10,000), inputs ``float32[T, m, 1, 1]``, targets ``float32[T]``, no test set."""

    regression = True

    def __init__(self, spec: StreamSpec):
        super().__init__(spec.num_tasks, (spec.bits, 1, 1), 1)
        self.spec = spec
        self.task_size = spec.train_size or DEFAULT_TASK_SIZE
        self.target = ltu_target(np.random.default_rng([spec.seed, _TARGET]), spec.bits,
                                 spec.target_features, spec.target_beta)

    def slow_bits(self, t: int) -> np.ndarray:
        """The slow bits of task ``t`` (length f, values 0/1)."""
        s = self.spec
        if s.flip == "all" or t == 0:
            return np.random.default_rng([s.seed, t if s.flip == "all" else 0, _SLOW]).integers(
                0, 2, s.slow_bits)
        bits = self.slow_bits(0)
        for k in range(1, t + 1):
            i = np.random.default_rng([s.seed, k, _FLIP]).integers(s.slow_bits)
            bits[i] = 1 - bits[i]
        return bits

    def _build(self, t: int, include_train: bool = True) -> Task:
        s = self.spec
        n = self.task_size if include_train else 0
        fast = np.random.default_rng([s.seed, t, _FAST]).integers(0, 2, (n, s.bits - s.slow_bits))
        x = np.concatenate([np.broadcast_to(self.slow_bits(t), (n, s.slow_bits)), fast], axis=1)
        y = self.target(x.astype(np.float64))
        x = x.astype(np.float32).reshape(n, s.bits, 1, 1)
        empty = np.zeros((0, s.bits, 1, 1), np.float32)
        return Task(t, x, y.astype(np.float32), empty, np.zeros((0,), np.float32), ())

    def __repr__(self) -> str:
        s = self.spec
        return (f"SlowlyChangingRegression(num_tasks={s.num_tasks}, task_size={self.task_size}, "
                f"bits={s.bits}, slow_bits={s.slow_bits}, flip={s.flip!r})")
