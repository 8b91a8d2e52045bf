"""Trend-robust association by default, paired method contrasts, controls and layer means.

The simulation tests are the issue's acceptance criteria: on synthetic runs where x and y share
only a monotone trend plus independent noise (R = 5 runs × 30 tasks, 200 trials), the default
95% intervals of ``spearman`` and ``compare_predictors`` cover 0 in at least 90% of trials; with
an effect planted beyond the trend they exclude 0 in at least 80%.
"""

import numpy as np
import pytest
from scipy import stats

from ntkplast import stats as hy
from ntkplast.errors import NtkplastError
from ntkplast.table import Table

R, T, TRIALS = 5, 30, 200
SHAPES = {"linear": lambda t: t / T, "saturating": lambda t: 1 - np.exp(-t / 8),
          "sigmoid": lambda t: 1 / (1 + np.exp(-(t - T / 2) / 3))}


def ar1(rng, n, phi):
    e = rng.normal(size=n)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + np.sqrt(1 - phi * phi) * e[i]
    return e


def table(columns):
    """One run: {metric: (T,) values at task ends t = 0 … T − 1}; each task end carries
    test_accuracy so it counts as one."""
    rows = [(t, 100 * t, t, "all", m, float(v[t])) for m, v in columns.items() for t in range(T)]
    rows += [(t, 100 * t, t, "all", "test_accuracy", 0.5) for t in range(T)]
    return Table.from_rows(rows)


def trial_runs(rng, effect, lag):
    """R runs: x = a·f(t) + e_x, y = −a·f(t) + e_y + effect · e_x(t − lag), f one monotone
    shape per trial, a ~ U(2, 4) per run, e AR(1) with φ drawn from {0, 0.5}."""
    f = SHAPES[rng.choice(list(SHAPES))](np.arange(T))
    phi = rng.choice([0.0, 0.5])
    runs = []
    for _ in range(R):
        a = rng.uniform(2, 4)
        ex, ey = ar1(rng, T, phi), ar1(rng, T, phi)
        y = -a * f + ey
        y[lag:] += effect * ex[:T - lag]
        runs.append(table({"x": a * f + ex, "y": y}))
    return runs


def rates(effect, test):
    rng = np.random.default_rng(2026 if effect else 1926)
    outcomes = []
    for _ in range(TRIALS):
        runs = trial_runs(rng, effect, lag=0 if test == "spearman" else 1)
        if test == "spearman":
            intervals = [hy.spearman(runs, "x", "y")]
        else:
            res = hy.compare_predictors(runs, {"x": "x"}, "y")
            intervals = [res.pooled.stats[0], res.within.stats[0]]
        outcomes.append([r.ci_low <= 0 <= r.ci_high for r in intervals])
    return np.mean(outcomes, axis=0)


@pytest.mark.parametrize("test", ["spearman", "compare_predictors"])
def test_shared_trend_alone_is_not_an_association(test):
    covered = rates(0.0, test)
    assert np.all(covered >= 0.90), covered


@pytest.mark.parametrize("test", ["spearman", "compare_predictors"])
def test_an_effect_beyond_the_trend_is_found(test):
    excluded = 1 - rates(0.6, test)
    assert np.all(excluded >= 0.80), excluded


def test_without_trend_control_the_shared_trend_reads_as_a_strong_correlation():
    """The failure the default prevents: the raw correlation of two trend-sharing series."""
    rng = np.random.default_rng(0)
    trend = 8 * np.arange(T) / T       # eight noise standard deviations over the run
    runs = [table({"x": trend + rng.normal(size=T), "y": -trend + rng.normal(size=T)})
            for _ in range(R)]
    raw = hy.spearman(runs, "x", "y", trend="none")
    assert raw.ci_high < -0.5
    controlled = hy.spearman(runs, "x", "y")
    assert controlled.ci_low <= 0 <= controlled.ci_high
    assert "first differences" in str(controlled) and "raw" in str(raw)


def test_difference_default_equals_partial_spearman_of_differences_on_position():
    """Reference: numpy differences, then scipy's partial-rank correlation from the inverse
    Spearman matrix with the position as control, averaged over runs."""
    rng = np.random.default_rng(5)
    runs, expect = [], []
    for _ in range(3):
        x, y = np.cumsum(rng.normal(size=T)), np.cumsum(rng.normal(size=T))
        runs.append(table({"x": x, "y": y}))
        m = np.column_stack([np.diff(x), np.diff(y), np.arange(T - 1)])
        p = np.linalg.inv(stats.spearmanr(m).correlation)
        expect.append(-p[0, 1] / np.sqrt(p[0, 0] * p[1, 1]))
    res = hy.spearman(runs, "x", "y")
    assert res.rho == pytest.approx(np.mean(expect), abs=1e-12)
    assert res.trend == "difference" and res.n_points == 3 * (T - 1)
    lagged = hy.partial_spearman(runs, "x", "y", [], lag=2)
    assert lagged.lag == 2 and lagged.n_points == 3 * (T - 3) and "lag +2" in lagged.label


def test_task_step_controls_and_layer_mean():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=T), rng.normal(size=T)
    layers = rng.normal(size=(2, T))
    rows = [(t, 100 * t, t, "all", m, float(v[t])) for m, v in (("x", x), ("y", y))
            for t in range(T)]
    rows += [(t, 100 * t, t, f"layer{i}", "z", float(layers[i, t])) for i in range(2)
             for t in range(T)]
    run = Table.from_rows(rows)
    # task index as a control = the "task" trend control, partialled explicitly
    by_task = hy.partial_spearman(run, "x", "y", ["task"], trend="none")
    assert by_task.rho == pytest.approx(hy.spearman(run, "x", "y", trend="task").rho, abs=1e-12)
    by_step = hy.partial_spearman(run, "x", "y", ["step"], trend="none")
    assert by_step.rho == pytest.approx(by_task.rho, abs=1e-12)
    mean = hy.spearman(run, "x", ("z", "mean"), trend="none")
    assert mean.rho == pytest.approx(stats.spearmanr(x, layers.mean(0)).correlation, abs=1e-12)


def test_layer_mean_is_nan_where_a_layer_is_undefined():
    """A fully dead layer (NaN under a non-zero-σ measure) must not drop out of the mean."""
    from ntkplast.table import layer_mean, task_end_values

    rows = [(t, t, t, f"layer{i}", "m", v) for t, vals in enumerate([(1.0, 3.0), (2.0, np.nan)])
            for i, v in enumerate(vals)]
    rows += [(t, t, t, "all", "test_accuracy", 0.5) for t in range(2)]
    run = Table.from_rows(rows)
    assert np.array_equal(layer_mean(run, "m")[2], [2.0, np.nan], equal_nan=True)
    assert np.array_equal(task_end_values(run, "m", "mean"), [2.0, np.nan], equal_nan=True)


@pytest.mark.parametrize("seed", range(4))
def test_paired_contrast_equals_scipy_paired_t(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.3, 0.2, size=5 + seed)
    b = a - 0.1 + rng.normal(0, 0.1, size=a.size)
    res = hy.paired_contrast(a, b, label="a − b")
    ref = stats.ttest_rel(a, b)
    lo, hi = ref.confidence_interval(0.95)
    assert res.diff == pytest.approx(np.mean(a - b), abs=1e-14)
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi), rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.n_pairs == a.size and f"R = {a.size}" in str(res)


def test_method_contrast_pairs_seeds_over_the_last_tasks():
    rng = np.random.default_rng(7)
    loss = {m: rng.normal(size=(4, T)) for m in ("adam", "adamo")}
    tables = {m: [table({"plasticity_loss_baseline": v}) for v in values]
              for m, values in loss.items()}
    res = hy.method_contrast(tables, "adam", "adamo", last=10)
    ref = stats.ttest_rel(loss["adam"][:, -10:].mean(1), loss["adamo"][:, -10:].mean(1))
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10) and res.n_pairs == 4
    with pytest.raises(NtkplastError, match="same seeds"):
        hy.method_contrast({**tables, "adamo": tables["adamo"][:3]}, "adam", "adamo")
    with pytest.raises(NtkplastError, match="no method 'sgd'"):
        hy.method_contrast(tables, "adam", "sgd")
    with pytest.raises(NtkplastError, match="at least 2 pairs"):
        hy.paired_contrast([1.0, np.nan], [0.0, 1.0])


def test_sensitivity_shows_a_verdict_that_rides_the_trend():
    """x shares only the trend with y: the raw setting reads a strong predictor, the
    trend-controlled ones do not — exactly what the sensitivity table must expose."""
    rng = np.random.default_rng(11)
    trend = 8 * np.arange(T) / T
    runs = [table({"x": trend + rng.normal(size=T), "y": -trend + rng.normal(size=T),
                   "noise": rng.normal(size=T)}) for _ in range(R)]
    sens = hy.sensitivity(runs, {"x": "x", "noise": "noise"}, "y", lags=(1,))
    by = {(r.trend, r.scope, r.predictor): r for r in sens.rows}
    assert by[("none", "within", "x")].ci_high < 0
    controlled = by[("difference", "within", "x")]
    assert controlled.ci_low <= 0 <= controlled.ci_high
    direct = hy.compare_predictors(runs, {"x": "x", "noise": "noise"}, "y", trend="task")
    assert by[("task", "pooled", "x")].rho == pytest.approx(direct.pooled.stats[0].rho)
    assert len(sens.rows) == 3 * 2 * 2
    assert "x: interval excludes 0 in" in sens.verdicts("x") and "raw" in str(sens)


def test_differences_span_the_analysed_task_ends_when_the_analysis_skips_tasks():
    """Predictors analysed every second task (``--analyse-every 2``): Δx between consecutive
    analysed task ends, Δy of the target over the same span one task later. Reference: numpy
    differences and scipy's partial rank correlation with the position as control."""
    rng = np.random.default_rng(12)
    runs, expect = [], []
    for _ in range(3):
        x, y = rng.normal(size=T), rng.normal(size=T)
        x[1::2] = np.nan                       # analysed at even tasks only
        rows = [(t, 100 * t, t, "all", "x", float(x[t])) for t in range(0, T, 2)]
        rows += [(t, 100 * t, t, "all", m, float(v)) for t in range(T)
                 for m, v in (("y", y[t]), ("test_accuracy", 0.5))]
        runs.append(Table.from_rows(rows))
        a = np.arange(0, T, 2)
        ya = np.where(a + 1 < T, y[np.minimum(a + 1, T - 1)], np.nan)
        dx, dy, own = np.diff(x[a]), np.diff(ya), np.diff(y[a])   # own: y over x's span
        keep = np.isfinite(dy)
        m = np.column_stack([dx[keep], dy[keep], np.flatnonzero(keep), own[keep]])
        p = np.linalg.inv(stats.spearmanr(m).correlation)
        expect.append(-p[0, 1] / np.sqrt(p[0, 0] * p[1, 1]))
    res = hy.compare_predictors(runs, {"x": "x"}, "y")
    assert res.within.stats[0].rho == pytest.approx(np.mean(expect), abs=1e-12)
    assert res.within.stats[0].n_points == 3 * (T // 2 - 1)


def test_a_same_task_association_does_not_read_as_a_lagged_one():
    """y moves with x in the same task only (y_t = 2 x_t + noise, plus a shared trend). In
    first differences Δy_{t+1} shares −e_t with Δy_t, so without the target's own change as a
    control Δx_t would 'predict' the next change with the opposite sign (ρ ≈ −0.4); with it
    (the default) the lag-1 interval covers 0 while the lag-0 association is found."""
    rng = np.random.default_rng(13)
    trend = 3 * (1 - np.exp(-np.arange(T) / 8))
    runs = []
    for _ in range(R):
        u = rng.normal(size=T)
        runs.append(table({"x": trend + u, "y": -trend + 2 * u + rng.normal(size=T)}))
    lagged = hy.compare_predictors(runs, {"x": "x"}, "y", lag=1).within.stats[0]
    assert lagged.ci_low <= 0 <= lagged.ci_high
    same = hy.compare_predictors(runs, {"x": "x"}, "y", lag=0).within.stats[0]
    assert same.ci_low > 0.5
    spear = hy.spearman(runs, "x", "y", lag=1)
    assert spear.ci_low <= 0 <= spear.ci_high
