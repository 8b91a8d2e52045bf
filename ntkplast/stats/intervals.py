r"""Intervals over runs: the percentile bootstrap, and Student-t for a few run means.

One statistic θ is recomputed on B resamples, each drawing the n units (runs, seeds or points)
with replacement; θ*_1 … θ*_B are its bootstrap replicates. Efron & Tibshirani (1993), *An
Introduction to the Bootstrap*, ch. 13 (percentile interval) and ch. 16 (tests):

* :func:`resample_indices` / :func:`resample_counts`: the draws, as indices (B, n) or as how many
  times each unit appears in each resample (a weight per unit, for statistics of weighted data);
* :func:`percentile_interval`: [θ*_(α/2), θ*_(1−α/2)], the α/2 and 1 − α/2 percentiles of the
  replicates (α = 1 − level; linear interpolation, NaN replicates ignored);
* :func:`bootstrap_p`: two-sided p = min(1, 2 (min(#{θ* ≤ 0}, #{θ* ≥ 0}) + 1) / (B + 1));
* :func:`mean_interval`: the mean over seeds (rows) of a ``seeds × points`` array and its
  percentile interval, seeds resampled; :func:`final_tasks_interval` the same for the mean of
  each seed's last tasks.

With few runs (R = 3–8) the percentile bootstrap of a mean undercovers (its interval is that of
a sample standard deviation with divisor R, not R − 1, and ignores the t tail);
:func:`t_interval` is the classical mean ± t_{(1+level)/2, R−1} · s/√R (Student 1908; s the sample
standard deviation, divisor R − 1), exact for normally distributed run means.

Every draw takes an explicit ``numpy.random.Generator`` or seed, so an interval is reproducible.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import check_level

__all__ = ["bootstrap_p", "final_tasks_interval", "mean_interval", "percentile_interval",
           "resample_counts", "resample_indices", "t_interval"]


def resample_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` indices: row b draws n of the units 0 … n − 1 with replacement."""
    return rng.integers(0, n, (n_boot, n))


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` float counts: how often each of n units appears in each resample of
    :func:`resample_indices` (the same draw from ``rng``); each row sums to n."""
    draws = resample_indices(n, n_boot, rng)
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts


def percentile_interval(boot: ArrayLike, level: float = 0.95, *,
                        axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval ``(low, high)`` = the 50(1 − level) and 100 − 50(1 − level)
    percentiles of the bootstrap replicates ``boot`` (over ``axis``; all of them for None).

    NaN replicates are ignored; where all are NaN the bounds are NaN.
    """
    check_level(level)
    tail = 50 * (1 - level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=axis)
    return low, high


def bootstrap_p(boot: ArrayLike) -> float:
    """Two-sided bootstrap p of θ = 0: min(1, 2 (min(#{θ* ≤ 0}, #{θ* ≥ 0}) + 1) / (B + 1)) over
    the B finite replicates (NaN when there are none)."""
    b = np.asarray(boot)
    b = b[np.isfinite(b)]
    if not len(b):
        return float("nan")
    return float(min(1.0, 2 * (min((b <= 0).sum(), (b >= 0).sum()) + 1) / (len(b) + 1)))


def mean_interval(values: ArrayLike, *, level: float = 0.95, n_boot: int = 2000,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and its percentile-bootstrap interval, per column.

    ``values`` is ``seeds × points``; the S seeds are resampled with replacement
    (:func:`resample_indices`), x̄*_b = mean of the drawn rows, NaNs ignored, and the interval is
    :func:`percentile_interval` of the x̄*_b. With a single seed the interval collapses to the
    mean. Returns ``(mean, low, high)``, each ``(points,)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise NtkplastError(f"mean_interval: expected a seeds × points array, got shape "
                            f"{values.shape}")
    check_level(level)
    idx = resample_indices(len(values), n_boot, np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        mean = np.nanmean(values, axis=0)
        boot = np.nanmean(values[idx], axis=1)
    low, high = percentile_interval(boot, level, axis=0)
    return mean, low, high


def final_tasks_interval(values: ArrayLike, last: int) -> tuple[float, float, float]:
    """Per seed the mean over the ``last`` tasks of a ``seeds × tasks`` array (NaNs ignored),
    then :func:`mean_interval` over seeds: ``(mean, low, high)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an absent metric stays NaN
        per_seed = np.nanmean(np.asarray(values, np.float64)[:, -last:], axis=1)
    mean, low, high = mean_interval(per_seed[:, None])
    return float(mean[0]), float(low[0]), float(high[0])


def t_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of one value per run: mean ± t_{(1+level)/2, R−1} · s/√R (module
    docstring). Needs R ≥ 2 finite values."""
    from scipy import stats

    check_level(level)
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        raise NtkplastError(f"t_interval: needs at least 2 finite run values, got {len(v)}")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return float(v.mean()), float(v.mean()) - half, float(v.mean()) + half
