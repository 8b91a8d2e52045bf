"""Rank, partial and lagged correlations and onsets against independent numpy/scipy references."""

import numpy as np
import pytest
from scipy import stats

from ntkplast import stats as hy
from ntkplast.errors import NtkplastError
from ntkplast.table import Table


def make_table(series, *, task_end_every=None):
    """``series``: {metric or (metric, layer): values over checkpoints 0..n-1 (NaN: no row)}."""
    rows = []
    n = max(len(v) for v in series.values())
    for ref, values in series.items():
        metric, layer = (ref, "all") if isinstance(ref, str) else ref
        for c, v in enumerate(values):
            if not np.isnan(v):
                rows.append((c, 10 * c, c // 5, layer, metric, float(v)))
    if task_end_every:
        rows += [(c, 10 * c, c // 5, "all", "test_accuracy", 0.9)
                 for c in range(task_end_every - 1, n, task_end_every)]
    return Table.from_rows(rows)


def brute_partial(x, y, z):
    """Partial rank correlation from the inverse Spearman matrix: −P_xy / √(P_xx P_yy)."""
    c = np.atleast_2d(stats.spearmanr(np.column_stack([x, y, z])).correlation)
    p = np.linalg.inv(c)
    return -p[0, 1] / np.sqrt(p[0, 0] * p[1, 1])


@pytest.mark.parametrize("transform,expected", [(np.exp, 1.0), (lambda v: -v ** 3, -1.0),
                                                (lambda v: np.arctan(5 * v), 1.0)])
def test_monotone_transform_gives_plus_minus_one(transform, expected):
    x = np.random.default_rng(0).normal(size=40)
    res = hy.spearman(make_table({"a": x, ("b", "layer1"): transform(x)}), "a", ("b", "layer1"),
                      trend="none")
    assert res.rho == pytest.approx(expected)
    assert res.ci_low == pytest.approx(expected) and res.ci_high == pytest.approx(expected)
    assert (res.n_runs, res.n_points, res.ci_over) == (1, 40, "blocks")


@pytest.mark.parametrize("n", [5, 30, 200])
def test_single_run_matches_scipy_spearmanr_with_ties(n):
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=n), 1)
    y = np.round(0.5 * x + rng.normal(size=n), 1)
    res = hy.spearman(make_table({"x": x, "y": y}), "x", "y", trend="none")
    ref = stats.spearmanr(x, y)
    assert res.rho == pytest.approx(ref.correlation, abs=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_several_runs_mean_of_per_run_rho_and_fixed_effects_p_value():
    rng = np.random.default_rng(1)
    runs, xs, ys = [], [], []
    for r in range(4):
        x = rng.normal(size=25) + 3 * r            # run-level shifts must not matter
        y = 0.4 * x + rng.normal(size=25) - 5 * r
        runs.append(make_table({"x": x, "y": y}))
        xs.append(x)
        ys.append(y)
    res = hy.spearman(runs, "x", "y", trend="none")
    per_run = [stats.spearmanr(a, b).correlation for a, b in zip(xs, ys)]
    assert res.rho == pytest.approx(np.mean(per_run), abs=1e-12)
    assert res.per_run == pytest.approx(per_run)
    assert (res.n_runs, res.n_points, res.n_per_run, res.ci_over) == (4, 100, (25,) * 4, "runs")
    want = stats.t.interval(0.95, 3, loc=np.mean(per_run), scale=stats.sem(per_run))
    assert (res.ci_low, res.ci_high) == pytest.approx(want, rel=1e-12)   # Student-t over runs
    assert "Student-t over runs, R = 4" in str(res)
    # Reference p: t-test of the slope of rank y on rank x with one intercept per run (OLS).
    rx = np.concatenate([stats.rankdata(a) for a in xs])
    ry = np.concatenate([stats.rankdata(b) for b in ys])
    design = np.column_stack([rx, np.kron(np.eye(4), np.ones((25, 1)))])
    beta, rss, *_ = np.linalg.lstsq(design, ry, rcond=None)
    df = 100 - 5
    se = np.sqrt(rss[0] / df * np.linalg.inv(design.T @ design)[0, 0])
    assert res.p_value == pytest.approx(2 * stats.t.sf(abs(beta[0] / se), df), rel=1e-8)


def test_independent_noise_rho_near_zero_and_ci_covers_zero():
    rng = np.random.default_rng(2)
    one = hy.spearman(make_table({"x": rng.normal(size=2000), "y": rng.normal(size=2000)}),
                      "x", "y", trend="none")
    assert abs(one.rho) < 0.05 and one.ci_low < 0 < one.ci_high and one.p_value > 0.05
    runs = [make_table({"x": rng.normal(size=100), "y": rng.normal(size=100)})
            for _ in range(10)]
    many = hy.spearman(runs, "x", "y", trend="none")
    assert abs(many.rho) < 0.1 and many.ci_low < 0 < many.ci_high


def test_one_run_interval_is_a_moving_block_bootstrap_that_covers_under_dependence():
    """One run: the interval resamples blocks of consecutive checkpoints. Reference: coverage of
    ρ = 0 for two independent AR(1) series (φ = 0.7, n = 40), where a resampling of single
    checkpoints is too narrow; and the interval holds the estimate and is reproducible."""
    rng = np.random.default_rng(3)

    def ar1(n, phi):
        e = rng.normal(size=n)
        for i in range(1, n):
            e[i] = phi * e[i - 1] + np.sqrt(1 - phi * phi) * e[i]
        return e

    covered = []
    for _ in range(60):
        t = make_table({"x": ar1(40, 0.7), "y": ar1(40, 0.7)})
        res = hy.spearman(t, "x", "y", trend="none")
        assert res.ci_low <= res.rho <= res.ci_high and res.ci_over == "blocks"
        covered.append(res.ci_low <= 0 <= res.ci_high)
    assert np.mean(covered) >= 0.8
    assert hy.spearman(t, "x", "y") == hy.spearman(t, "x", "y")
    assert "moving-block bootstrap" in str(res) and "R = 1" in str(res)


def test_bootstrap_arguments_are_deprecated_and_ignored():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    t = make_table({"x": x, "y": x + rng.normal(size=30)})
    with pytest.warns(DeprecationWarning, match="n_boot and seed no longer"):
        old = hy.spearman(t, "x", "y", n_boot=500, seed=7, trend="none")
    assert old == hy.spearman(t, "x", "y", trend="none")

def test_partial_removes_common_driver_and_matches_inverse_matrix():
    rng = np.random.default_rng(4)
    z = rng.normal(size=400)     # monotone transforms of (driver + noise): ~linear in ranks
    x = np.exp(z + rng.normal(scale=0.5, size=400))
    y = (z + rng.normal(scale=0.5, size=400)) ** 3
    w = rng.normal(size=400)
    t = make_table({"x": x, "y": y, ("z", "layer2"): z, "w": w})
    raw = hy.spearman(t, "x", "y", trend="none")
    part = hy.partial_spearman(t, "x", "y", [("z", "layer2")], trend="none")
    assert raw.rho > 0.6
    assert abs(part.rho) < 0.15 and part.ci_low < 0 < part.ci_high
    assert part.rho == pytest.approx(brute_partial(x, y, z), abs=1e-10)
    two = hy.partial_spearman(t, "x", "y", [("z", "layer2"), "w"], trend="none")
    assert two.rho == pytest.approx(brute_partial(x, y, np.column_stack([z, w])), abs=1e-10)
    assert hy.partial_spearman(t, "x", "y", [], trend="none").rho == pytest.approx(raw.rho)


def test_partial_several_runs_is_mean_of_brute_force():
    rng = np.random.default_rng(5)
    runs, expect = [], []
    for _ in range(3):
        z = rng.normal(size=40)
        x, y = z + rng.normal(size=40), z + 0.3 * rng.normal(size=40) + 0.5 * rng.normal(size=40)
        runs.append(make_table({"x": x, "y": y, "z": z}))
        expect.append(brute_partial(x, y, z))
    res = hy.partial_spearman(runs, "x", "y", ["z"], trend="none")
    assert res.rho == pytest.approx(np.mean(expect), abs=1e-10)
    assert "n_runs = 3" in str(res) and "n_points = 120" in str(res)


@pytest.mark.parametrize("shift", [3, -2])
def test_lead_lag_finds_shift(shift):
    rng = np.random.default_rng(6)
    x = rng.normal(size=60)
    y = rng.normal(size=60)
    if shift > 0:      # y follows x: y_t = x_{t-shift}, so x leads
        y[shift:] = x[:-shift]
    else:
        y[:shift] = x[-shift:]
    res = hy.lead_lag(make_table({"x": x, "y": y}), "x", "y", max_lag=5, trend="none")
    assert res.best_lag == shift
    assert res.best.rho == pytest.approx(1.0)
    assert list(res.lags) == list(range(-5, 6))
    assert res.best.n_points == 60 - abs(shift)
    assert np.all(np.abs(np.delete(res.rho, res.lags.tolist().index(shift))) < 0.5)
    assert "lag > 0: x leads y" in str(res)


def test_lead_lag_differencing_on_random_walks_and_several_runs():
    rng = np.random.default_rng(7)
    runs = []
    for _ in range(3):
        x = np.cumsum(rng.normal(size=80))
        y = np.cumsum(rng.normal(size=80))
        y[4:] = x[:-4] + 0.01 * rng.normal(size=76)
        runs.append(make_table({"x": x, "y": y}))
    res = hy.lead_lag(runs, "x", "y", max_lag=6)   # default: first differences
    assert res.best_lag == 4 and res.best.rho > 0.95 and res.best.ci_over == "runs"
    assert "first differences" in str(res)
    with pytest.warns(DeprecationWarning, match="difference= is deprecated"):
        old = hy.lead_lag(runs, "x", "y", max_lag=6, difference=True)
    assert old.best_lag == res.best_lag and np.array_equal(old.rho, res.rho)
    raw = hy.lead_lag(runs, "x", "y", max_lag=6, trend="none")   # random walks: every lag
    assert np.all(np.abs(raw.rho) > 0.5) or raw.best_lag != 4 or raw.best.rho < res.best.rho
    lagged = hy.spearman(runs, "x", "y", lag=4, trend="none")
    assert lagged.n_points == 3 * 76
    assert hy.spearman(runs, "x", "y", lag=4).n_points == 3 * 75


def test_alignment_and_task_ends():
    x = np.arange(20.0)
    y = -np.arange(20.0)
    x[3] = np.nan
    y[7] = np.inf
    t = make_table({"x": x, "y": y}, task_end_every=5)
    ck, vals = hy.aligned(t, ["x", "y"])
    assert 3 not in ck and 7 not in ck and len(ck) == 18
    assert np.array_equal(vals[:, 0], -vals[:, 1])
    ck_end, v_end = hy.metric_series(t, "x", at="task_end")
    assert list(ck_end) == [4, 9, 14, 19] and list(v_end) == [4, 9, 14, 19]
    res = hy.spearman(t, "x", "y", at="task_end", trend="none")
    assert res.rho == pytest.approx(-1.0) and res.n_points == 4 and "task ends" in str(res)


def test_onset_and_order():
    n = 30
    drop_a = np.where(np.arange(n) < 5, 1.0, 0.2)        # falls at checkpoint 5
    drop_b = np.where(np.arange(n) < 12, 4.0, 1.0)       # falls at 12
    rise_c = np.where(np.arange(n) < 20, 0.0, 0.3)       # rises at 20 (starts at 0)
    spiky = drop_b.copy()
    spiky[2] = 0.0                                       # one noisy checkpoint
    t = make_table({("a", "layer1"): drop_a, "b": drop_b, "c": rise_c, "s": spiky})
    a = hy.onset(t, "a", "layer1")
    assert (a.checkpoint, a.step, a.direction) == (5, 50, "down")
    assert hy.onset(t, "s").checkpoint == 2
    assert hy.onset(t, "s", persist=3).checkpoint == 12
    assert hy.onset(t, "b", by="relative", level=0.5).checkpoint == 12
    assert hy.onset(t, "c", by="absolute", level=0.25).checkpoint == 20
    assert hy.onset(t, "c", by="absolute", level=0.5).step is None
    early_b = np.where(np.arange(n) < 3, 4.0, 1.0)      # in run 2, b falls before a
    runs = [t, make_table({("a", "layer1"): drop_a, "b": early_b, "c": rise_c})]
    order = hy.onset_order(runs, ["c", "b", ("a", "layer1")])
    assert order.order == (2, 1, 0)
    assert order.steps[0].tolist() == [200, 120, 50] and order.steps[1].tolist() == [200, 30, 50]
    assert order.precedes[2, 1] == 1 and order.precedes[1, 2] == 1 and order.precedes[2, 0] == 2
    text = str(order)
    assert "n_runs = 2" in text and "a[layer1] before b[all] in 1/2 runs" in text


def test_errors_name_the_problem():
    rng = np.random.default_rng(8)
    t = make_table({"x": rng.normal(size=10), ("y", "layer1"): rng.normal(size=10),
                    "flat": np.ones(10)})
    with pytest.raises(NtkplastError, match="no tables"):
        hy.spearman([], "x", "x")
    with pytest.raises(NtkplastError, match="table 0 is empty"):
        hy.spearman(Table.from_rows([]), "x", "x")
    with pytest.raises(NtkplastError, match=r"metrics on layer 'all': \['flat', 'x'\]"):
        hy.spearman(t, "x", "nope")
    with pytest.raises(NtkplastError, match=r"'y' exists on layer\(s\) \['layer1'\]"):
        hy.spearman(t, "x", "y")
    with pytest.raises(NtkplastError, match="at least 3 are needed"):
        hy.spearman(make_table({"x": [1.0, 2.0], "y": [2.0, 1.0]}), "x", "y", trend="none")
    with pytest.raises(NtkplastError, match=r"1 usable .* after differencing; at least 4 are "
                                            r"needed \(0 control\(s\) \+ the position"):
        hy.spearman(make_table({"x": [1.0, 2.0], "y": [2.0, 1.0]}), "x", "y")
    with pytest.raises(NtkplastError, match="at least 4 are needed"):
        hy.partial_spearman(make_table({"x": [1.0, 2, 3], "y": [2.0, 1, 3], "z": [1.0, 0, 1]}),
                            "x", "y", ["z"], trend="none")
    with pytest.raises(NtkplastError, match="trend: expected one of"):
        hy.spearman(t, "x", "x", trend="detrend")
    with pytest.raises(NtkplastError, match="constant"):
        hy.spearman(t, "x", "flat")
    with pytest.raises(NtkplastError, match="one Table per run"):
        hy.spearman(Table.concat([t, t]), "x", ("y", "layer1"))
    with pytest.raises(NtkplastError, match="metric name or a"):
        hy.spearman(t, "x", ("y",))
    with pytest.raises(NtkplastError, match="wrap it"):
        hy.partial_spearman(t, "x", ("y", "layer1"), "flat")
    with pytest.raises(NtkplastError, match="test_accuracy"):
        hy.spearman(t, "x", ("y", "layer1"), at="task_end")
    with pytest.raises(NtkplastError, match="smaller lag"):
        hy.lead_lag(t, "x", ("y", "layer1"), max_lag=8)
    with pytest.raises(NtkplastError, match="starts at 0"):
        hy.onset(make_table({"c": [0.0, 1.0, 2.0]}), "c", by="relative")
    with pytest.raises(NtkplastError, match="at least 2 metrics"):
        hy.onset_order(t, ["x"])
