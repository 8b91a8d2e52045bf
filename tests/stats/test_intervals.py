"""Intervals over runs (stats.intervals): against scipy's Student-t and a hand-built jackknife,
and their coverage by simulation at the run counts studies here use (R = 3, 5, 8)."""

import numpy as np
import pytest
from scipy import stats as sps

from ntkplast.errors import NtkplastError
from ntkplast.stats import intervals


def test_t_interval_matches_scipy_student_t():
    v = np.array([0.31, 0.12, 0.25, 0.40, 0.18])
    mean, lo, hi = intervals.t_interval(v, level=0.9)
    want = sps.t.interval(0.9, len(v) - 1, loc=v.mean(), scale=sps.sem(v))
    assert mean == pytest.approx(v.mean())
    assert (lo, hi) == pytest.approx(want, rel=1e-12)
    with pytest.raises(NtkplastError, match="at least 2"):
        intervals.t_interval([1.0, np.nan])
    with pytest.raises(NtkplastError, match="level"):
        intervals.t_interval(v, level=95)


def test_jackknife_of_a_mean_is_the_t_interval_and_its_p_the_t_test():
    v = np.random.default_rng(0).normal(size=6)
    loo = np.array([np.delete(v, i).mean() for i in range(6)])
    assert intervals.jackknife_interval(v.mean(), loo) == pytest.approx(
        intervals.t_interval(v)[1:], rel=1e-12)
    assert intervals.jackknife_p(v.mean(), loo) == pytest.approx(sps.ttest_1samp(v, 0).pvalue)
    assert intervals.jackknife_p(1.0, np.ones(4)) == 0.0
    assert np.isnan(intervals.jackknife_interval(np.nan, loo)[0])
    with pytest.raises(NtkplastError, match="at least 2"):
        intervals.jackknife_p(0.0, [1.0])
    with pytest.raises(NtkplastError, match="both"):
        intervals.jackknife_interval(0.0, loo, scale=np.arctanh)


def test_correlation_interval_is_the_jackknife_on_fishers_z():
    r, loo = 0.6, np.array([0.5, 0.7, 0.62, 0.55])
    z = np.arctanh(loo)
    half = sps.t.ppf(0.975, 3) * np.sqrt(3 / 4 * np.sum((z - z.mean()) ** 2))
    assert intervals.correlation_interval(r, loo) == pytest.approx(
        (np.tanh(np.arctanh(r) - half), np.tanh(np.arctanh(r) + half)))
    lo, hi = intervals.correlation_interval(0.999, np.array([0.99, 0.9999, 0.995]))
    assert -1 < lo < 0.999 < hi < 1


def test_mean_interval_is_the_t_interval_per_column_and_nan_under_two_seeds():
    v = np.random.default_rng(1).normal(size=(5, 3))
    v[0, 2] = np.nan
    mean, low, high = intervals.mean_interval(v, level=0.9)
    for j in range(3):
        m, lo, hi = intervals.t_interval(v[:, j], level=0.9)
        assert (mean[j], low[j], high[j]) == pytest.approx((m, lo, hi), rel=1e-12)
    one_mean, one_low, one_high = intervals.mean_interval(v[:1, :2])
    np.testing.assert_array_equal(one_mean, v[0, :2])
    assert np.isnan(one_low).all() and np.isnan(one_high).all()
    with pytest.raises(NtkplastError, match="seeds × points"):
        intervals.mean_interval(np.ones(3))


def _percentile_bootstrap_of_mean(v, rng, n_boot=400, level=0.95):
    """The interval the library used before: run means resampled, 2.5/97.5 percentiles."""
    boot = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    return np.percentile(boot, [50 * (1 - level), 100 - 50 * (1 - level)])


TRIALS = 2000
TOL = 0.02   # 4 binomial standard deviations of a coverage estimate over 2,000 trials


@pytest.mark.parametrize("runs", [3, 5, 8])
def test_coverage_of_the_run_mean_interval_at_few_runs(runs):
    """Run values: normal and, harder, skewed (gamma shape 4, as a positive loss); the
    Student-t interval covers the true mean within TOL of 95%, where the percentile bootstrap
    it replaced falls short at R = 3 (the test would catch a return to it)."""
    rng = np.random.default_rng(runs)
    for draw, true in ((lambda: rng.normal(0.3, 0.1, runs), 0.3),
                       (lambda: rng.gamma(4.0, 0.05, runs), 0.2)):
        hits = boot_hits = 0
        for _ in range(TRIALS):
            v = draw()
            _, lo, hi = intervals.t_interval(v)
            hits += lo <= true <= hi
            blo, bhi = _percentile_bootstrap_of_mean(v, rng)
            boot_hits += blo <= true <= bhi
        assert abs(hits / TRIALS - 0.95) < TOL, (runs, hits / TRIALS)
        if runs == 3:
            assert boot_hits / TRIALS < 0.85


@pytest.mark.parametrize("runs", [3, 5, 8])
def test_coverage_of_the_pooled_correlation_jackknife_over_runs(runs):
    """Clustered data: R runs of 20 points, a run-level offset and a random slope per run;
    the pooled Spearman ρ's delete-one-run jackknife on Fisher's z covers the population
    pooled ρ within 0.03 of 95% (600 trials; binomial sd 0.009)."""
    rng = np.random.default_rng(10 + runs)

    def draw(r):
        slope, off = 0.6 + 0.4 * rng.normal(size=(r, 1)), rng.normal(size=(r, 1))
        x = rng.normal(size=(r, 20)) + 0.5 * off
        return x, slope * x + rng.normal(size=(r, 20)) + off

    def pooled(x, y):
        return sps.spearmanr(x.ravel(), y.ravel()).correlation

    true = np.mean([pooled(*draw(2000)) for _ in range(3)])
    hits, trials = 0, 600
    for _ in range(trials):
        x, y = draw(runs)
        loo = [pooled(np.delete(x, i, 0), np.delete(y, i, 0)) for i in range(runs)]
        lo, hi = intervals.correlation_interval(pooled(x, y), loo)
        hits += lo <= true <= hi
    assert abs(hits / trials - 0.95) < 0.03, (runs, hits / trials)
