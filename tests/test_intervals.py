"""The percentile bootstrap (stats.intervals) against hand-built resamples and numpy percentiles."""

import numpy as np
import pytest

from ntkplast.errors import NtkplastError
from ntkplast.stats import intervals


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95])
def test_percentile_interval_is_numpy_percentile_ignoring_nan(level):
    boot = np.random.default_rng(0).normal(size=(400, 3))
    boot[::7, 1] = np.nan
    boot[:, 2] = np.nan
    lo, hi = intervals.percentile_interval(boot, level, axis=0)
    a = (1 - level) / 2
    for j in range(2):
        col = boot[:, j][np.isfinite(boot[:, j])]
        assert (lo[j], hi[j]) == pytest.approx(tuple(np.percentile(col, [100 * a, 100 * (1 - a)])))
    assert np.isnan(lo[2]) and np.isnan(hi[2])
    scalar = intervals.percentile_interval(boot[:, 0], level)
    assert tuple(map(float, scalar)) == pytest.approx((lo[0], hi[0]))
    with pytest.raises(NtkplastError, match="level"):
        intervals.percentile_interval(boot, 95)


@pytest.mark.parametrize("seeds,n_boot,seed", [(2, 50, 0), (5, 1000, 3), (11, 300, 7)])
def test_mean_interval_is_the_hand_built_seed_bootstrap(seeds, n_boot, seed):
    values = np.random.default_rng(seeds).normal(size=(seeds, 4)) + np.arange(4)
    mean, low, high = intervals.mean_interval(values, level=0.9, n_boot=n_boot, seed=seed)
    draws = np.random.default_rng(seed).integers(0, seeds, (n_boot, seeds))
    boot = np.array([[values[d, j].mean() for j in range(4)] for d in draws])
    np.testing.assert_allclose(mean, values.mean(0), rtol=1e-14)
    np.testing.assert_allclose(low, np.percentile(boot, 5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(high, np.percentile(boot, 95, axis=0), rtol=1e-12)


def test_resample_counts_count_the_same_draw_as_the_indices():
    idx = intervals.resample_indices(6, 40, np.random.default_rng(1))
    counts = intervals.resample_counts(6, 40, np.random.default_rng(1))
    np.testing.assert_array_equal(counts, [np.bincount(row, minlength=6) for row in idx])
    assert np.all(counts.sum(1) == 6)


def test_bootstrap_p_two_sided_with_plus_one():
    assert intervals.bootstrap_p(np.ones(99)) == pytest.approx(2 / 100)
    b = np.r_[-np.ones(10), np.ones(89), np.nan]
    assert intervals.bootstrap_p(b) == pytest.approx(2 * 11 / 100)
    assert intervals.bootstrap_p(np.r_[-np.ones(50), np.ones(50)]) == 1.0
    assert np.isnan(intervals.bootstrap_p(np.full(5, np.nan)))


def test_t_interval_matches_scipy_student_t():
    from scipy import stats as sps

    from ntkplast.stats import t_interval

    v = np.array([0.31, 0.12, 0.25, 0.40, 0.18])
    mean, lo, hi = t_interval(v, level=0.9)
    want = sps.t.interval(0.9, len(v) - 1, loc=v.mean(), scale=sps.sem(v))
    assert mean == pytest.approx(v.mean())
    assert (lo, hi) == pytest.approx(want, rel=1e-12)
    with pytest.raises(NtkplastError, match="at least 2"):
        t_interval([1.0, np.nan])
