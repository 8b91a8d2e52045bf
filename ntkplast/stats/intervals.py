r"""Intervals over runs that keep their coverage at a handful of runs: Student-t and the
delete-one jackknife with Student-t critical values.

A study here has R = 3–8 runs (seeds), and the run is the independent unit. The percentile
bootstrap over runs undercovers badly at that size (nominal 95% covers about 74% of the time at
R = 3 and 90% at R = 10: the bootstrap's spread is a standard deviation with divisor R, not
R − 1, and it has no t tail). Every interval ntkplast reports is therefore one of:

* :func:`t_interval` — for a mean of one value per run, v̄ ± t_{(1+level)/2, R−1} · s/√R with s
  the sample standard deviation (divisor R − 1); exact when the run values are normal (Student
  1908), and close for moderately skewed ones at R ≥ 3.
* :func:`jackknife_interval` — for any other statistic θ of R units (a correlation pooled over
  runs, a difference of two correlations): the delete-one jackknife (Quenouille 1956; Tukey 1958;
  Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 11). With θ_(i) the
  statistic recomputed without unit i and θ_(·) their mean,

      se_J = √((R − 1)/R · Σ_i (θ_(i) − θ_(·))²),   interval θ̂ ± t_{(1+level)/2, R−1} · se_J,

  optionally on a variance-stabilising scale g (Fisher's z = atanh for correlations: the
  interval is g⁻¹(g(θ̂) ± t · se_J(g(θ)))). For θ = a mean, se_J = s/√R and the interval is
  exactly :func:`t_interval`. With t_{R−1} critical values this is the small-cluster
  jackknife of Cameron, Gelbach & Miller (2008); its coverage is checked by simulation in the
  test suite at R = 3, 5, 8 (``tests/stats/test_intervals.py``).
* :func:`jackknife_p` — the matching two-sided test of θ = 0: p = 2 P(T_{R−1} > |θ̂| / se_J).

:func:`mean_interval` applies :func:`t_interval` to every column of a ``seeds × points`` array
(a curve over tasks), :func:`final_tasks_interval` to each seed's mean over its last tasks.
Fewer than two finite run values give NaN bounds: one run has no between-run spread, and no
interval is claimed. All of these are deterministic (no resampling), so an interval is the same
on every machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import check_level

__all__ = ["correlation_interval", "final_tasks_interval", "jackknife_interval", "jackknife_p",
           "log_positive", "mean_interval", "t_interval"]

def _t_quantile(level: float, df: ArrayLike) -> np.ndarray:
    """t_{(1+level)/2, df}, elementwise over ``df``."""
    from scipy import stats

    return stats.t.ppf(0.5 + level / 2, df)


def t_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)`` of one value per run: v̄ ± t_{(1+level)/2, R−1} · s/√R (module
    docstring); non-finite values are dropped. Needs R ≥ 2 finite values.

    Examples:
      >>> from ntkplast.stats import intervals
      >>> mean, low, high = intervals.t_interval([1.0, 2.0, 3.0])   # 2 ± t_{0.975, 2} · 1/√3
      >>> print(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
      2.000 [-0.484, 4.484]
    """
    check_level(level)
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    if len(v) < 2:
        raise NtkplastError(f"t_interval: needs at least 2 finite run values, got {len(v)}")
    half = float(_t_quantile(level, len(v) - 1)) * float(v.std(ddof=1)) / np.sqrt(len(v))
    return float(v.mean()), float(v.mean()) - half, float(v.mean()) + half


def _jackknife_se(loo: np.ndarray) -> float:
    r = len(loo)
    return float(np.sqrt((r - 1) / r * np.sum((loo - loo.mean()) ** 2)))


def _checked_replicates(loo: ArrayLike, fn: str) -> np.ndarray:
    loo = np.asarray(loo, float).ravel()
    if len(loo) < 2:
        raise NtkplastError(f"{fn}: needs at least 2 leave-one-out replicates, got {len(loo)}")
    return loo


def jackknife_interval(estimate: float, loo: ArrayLike, level: float = 0.95, *,
                       scale: Callable[[np.ndarray], np.ndarray] | None = None,
                       inverse: Callable[[np.ndarray], np.ndarray] | None = None,
                       ) -> tuple[float, float]:
    """``(low, high)``: θ̂ ± t_{(1+level)/2, R−1} · se_J from the R leave-one-out replicates
    ``loo`` (module docstring), computed on the scale ``scale`` and mapped back by ``inverse``
    (both or neither; e.g. ``np.arctanh`` / ``np.tanh`` for a correlation). NaN when θ̂ or any
    replicate is not finite.

    Examples:
      For a mean the jackknife interval is exactly :func:`t_interval`'s:

      >>> from ntkplast.stats import intervals
      >>> loo = [2.5, 2.0, 1.5]          # the mean of (1, 2, 3) without each value in turn
      >>> low, high = intervals.jackknife_interval(2.0, loo)
      >>> print(f"[{low:.3f}, {high:.3f}]")
      [-0.484, 4.484]
    """
    check_level(level)
    loo = _checked_replicates(loo, "jackknife_interval")
    if (scale is None) != (inverse is None):
        raise NtkplastError("jackknife_interval: give both scale and inverse, or neither")
    if not (np.isfinite(estimate) and np.isfinite(loo).all()):
        return float("nan"), float("nan")
    g, ginv = (scale, inverse) if scale is not None else (lambda v: v, lambda v: v)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre, reps = g(np.asarray(float(estimate))), g(loo)
    half = float(_t_quantile(level, len(loo) - 1)) * _jackknife_se(reps)
    low, high = ginv(centre - half), ginv(centre + half)
    return float(low), float(high)


def _fisher_z(r: np.ndarray) -> np.ndarray:
    return np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))


def correlation_interval(estimate: float, loo: ArrayLike,
                         level: float = 0.95) -> tuple[float, float]:
    """:func:`jackknife_interval` of a correlation on Fisher's z = atanh r scale (Fisher 1915),
    mapped back by tanh, so the bounds stay inside [−1, 1].

    Examples:
      On Fisher's z scale the bounds of a correlation stay inside [−1, 1]; on the raw scale they do
      not:

      >>> from ntkplast.stats import intervals
      >>> loo = [0.85, 0.92, 0.95]
      >>> print("[{:.3f}, {:.3f}]".format(*intervals.correlation_interval(0.9, loo)))
      [0.036, 0.994]
      >>> print("[{:.3f}, {:.3f}]".format(*intervals.jackknife_interval(0.9, loo)))
      [0.645, 1.155]
    """
    return jackknife_interval(estimate, loo, level, scale=_fisher_z, inverse=np.tanh)


def jackknife_p(estimate: float, loo: ArrayLike) -> float:
    """Two-sided p of θ = 0: 2 P(T_{R−1} > |θ̂| / se_J) (module docstring); 0 or 1 when se_J = 0
    (θ̂ ≠ 0 or = 0), NaN when θ̂ or a replicate is not finite.

    Examples:
      >>> from ntkplast.stats import intervals
      >>> print(f"{intervals.jackknife_p(2.0, [2.5, 2.0, 1.5]):.3f}")   # t = 2/(1/√3), 2 df
      0.074
      >>> intervals.jackknife_p(0.0, [0.0, 0.0, 0.0])                   # se_J = 0 and θ̂ = 0
      1.0
    """
    from scipy import stats

    loo = _checked_replicates(loo, "jackknife_p")
    if not (np.isfinite(estimate) and np.isfinite(loo).all()):
        return float("nan")
    se = _jackknife_se(loo)
    if se == 0:
        return 0.0 if estimate != 0 else 1.0
    return float(2 * stats.t.sf(abs(estimate) / se, len(loo) - 1))


def mean_interval(values: ArrayLike, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Mean over seeds (axis 0) and its Student-t interval, per column.

    ``values`` is ``seeds × points``; per column, over its R finite values, the mean and
    v̄ ± t_{(1+level)/2, R−1} · s/√R (:func:`t_interval`). A column with fewer than 2 finite
    values has NaN bounds (its mean is still given where it has one value). Returns
    ``(mean, low, high)``, each ``(points,)``.

    Examples:
      Three seeds × two points; the second point has only two finite values, so its t has 1 degree
      of freedom and the interval is wide:

      >>> import numpy as np
      >>> from ntkplast.stats import intervals
      >>> values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, np.nan]])
      >>> mean, low, high = intervals.mean_interval(values)
      >>> print([f"{m:.1f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in zip(mean, low, high)])
      ['3.0 [-1.97, 7.97]', '3.0 [-9.71, 15.71]']
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise NtkplastError(f"mean_interval: expected a seeds × points array, got shape "
                            f"{values.shape}")
    check_level(level)
    n = np.isfinite(values).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN or one-value columns: NaN
        mean = np.nanmean(values, axis=0)
        sd = np.nanstd(values, axis=0, ddof=1)
    q = np.where(n >= 2, _t_quantile(level, np.maximum(n - 1, 1)), np.nan)
    half = q * sd / np.sqrt(np.maximum(n, 1))
    return mean, mean - half, mean + half


def final_tasks_interval(values: ArrayLike, last: int, *,
                         level: float = 0.95) -> tuple[float, float, float]:
    """Per seed the mean over the ``last`` tasks of a ``seeds × tasks`` array (NaNs ignored),
    then :func:`mean_interval` over seeds: ``(mean, low, high)`` (NaN bounds under 2 seeds).

    Examples:
      >>> import numpy as np
      >>> from ntkplast.stats import intervals
      >>> curves = np.array([[0.0, 1.0, 2.0], [0.0, 2.0, 3.0], [0.0, 3.0, 4.0]])   # seeds × tasks
      >>> print("{:.2f} [{:.2f}, {:.2f}]".format(*intervals.final_tasks_interval(curves, last=2)))
      2.50 [0.02, 4.98]
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an absent metric stays NaN
        per_seed = np.nanmean(np.asarray(values, np.float64)[:, -last:], axis=1)
    mean, low, high = mean_interval(per_seed[:, None], level=level)
    return float(mean[0]), float(low[0]), float(high[0])


def log_positive(values: ArrayLike) -> np.ndarray:
    """log ``values``, NaN where a value is not positive (left out of the means): the scale
    on which :func:`mean_interval` gives a geometric mean and its interval, for a positive
    quantity spread over orders of magnitude whose raw-scale t-interval can reach below 0.

    Examples:
      >>> import numpy as np
      >>> from ntkplast.stats import intervals
      >>> print(intervals.log_positive([1.0, 0.0, np.e]).round(3).tolist())
      [0.0, nan, 1.0]
    """
    values = np.asarray(values, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.where(values > 0, values, np.nan))
