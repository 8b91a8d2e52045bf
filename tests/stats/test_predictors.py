"""Head-to-head predictor comparison (stats.compare_predictors) against scipy references
and a hand-written delete-one-run jackknife; the forest and lead-lag figures draw."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

from ntkplast import stats as hy
from ntkplast.errors import NtkplastError
from ntkplast.figures.predictors import lead_lag_plot, predictor_comparison
from ntkplast.stats._ranks import weighted_spearman
from ntkplast.table import Table

P = {"cond": "ntk_condition", "trace": ("ntk_trace", "all"),
     "iso": ("jac_mean_log_sigma_sq", "mean")}


def make_run(values, *, junk_seed=0):
    """``values``: {(metric, layer): (T,) values at task ends (NaN: no row)}. Task t ends at
    checkpoint 2t+1 (it carries test_accuracy); checkpoint 2t holds junk rows that must be
    ignored because it is not a task end."""
    junk = np.random.default_rng(junk_seed)
    rows = []
    for (metric, layer), v in values.items():
        for t, x in enumerate(v):
            rows.append((2 * t, 20 * t, t, layer, metric, float(junk.normal() * 1e3)))
            if np.isfinite(x):
                rows.append((2 * t + 1, 20 * t + 10, t, layer, metric, float(x)))
    n_tasks = max(len(v) for v in values.values())
    rows += [(2 * t + 1, 20 * t + 10, t, "all", "test_accuracy", 0.5) for t in range(n_tasks)]
    return Table.from_rows(rows)


def random_values(rng, n_tasks, nan_frac=0.0):
    def v(scale=1.0):
        x = rng.normal(size=n_tasks) * scale
        x[rng.random(n_tasks) < nan_frac] = np.nan
        return x
    return {("ntk_condition", "all"): np.exp(v(2)), ("ntk_trace", "all"): v(),
            ("jac_mean_log_sigma_sq", "layer0"): v(), ("jac_mean_log_sigma_sq", "layer1"): v(),
            ("online_accuracy", "all"): np.round(v(), 1)}   # ties in the target


def hand_pairs(values, lag):
    """(x (n, 3), y (n,)) complete-case pairs of predictor at task t and target at t + lag."""
    x = np.column_stack([values[("ntk_condition", "all")], values[("ntk_trace", "all")],
                         # the strict layer mean: NaN where either layer has no value
                         np.mean(np.column_stack([values[("jac_mean_log_sigma_sq", "layer0")],
                                                  values[("jac_mean_log_sigma_sq", "layer1")]]),
                                 axis=1)])
    y = values[("online_accuracy", "all")]
    t = len(y)
    x, y = (x[:t - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[:t + lag])
    keep = np.isfinite(y) & np.isfinite(x).all(1)
    return x[keep], y[keep]


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("lag", [1, 0, 2, -1])
def test_pooled_and_within_match_scipy_on_hand_assembled_pairs(lag):
    rng = np.random.default_rng(10 + lag)
    runs = {m: [random_values(rng, 9, nan_frac=0.1) for _ in range(3)] for m in ("sgd", "l2")}
    tables = {m: [make_run(v, junk_seed=i) for i, v in enumerate(vs)] for m, vs in runs.items()}
    res = hy.compare_predictors(tables, P, lag=lag, trend="none")
    pairs = [hand_pairs(v, lag) for vs in runs.values() for v in vs]
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    for j, s in enumerate(res.pooled.stats):
        ref = stats.spearmanr(x[:, j], y)
        assert s.rho == pytest.approx(ref.correlation, abs=1e-12)
        assert s.p_value == pytest.approx(ref.pvalue, rel=1e-8)
        assert (s.n_points, s.n_runs) == (len(y), 6)
        per_run = [stats.spearmanr(px[:, j], py).correlation for px, py in pairs
                   if len(py) >= 3]                 # a run's ρ_r needs 3 points
        assert res.within.stats[j].rho == pytest.approx(np.mean(per_run), abs=1e-12)
        assert res.within.stats[j].p_value == pytest.approx(
            stats.ttest_1samp(per_run, 0.0).pvalue, rel=1e-8)
    best = int(np.argmax([abs(s.rho) for s in res.pooled.stats]))
    assert res.pooled.best == list(P)[best]
    assert res.runs == tuple((m, s) for m in ("sgd", "l2") for s in range(3))


def test_weighted_spearman_is_spearmanr_of_the_expanded_sample():
    rng = np.random.default_rng(0)
    x, y = np.round(rng.normal(size=30), 1), np.round(rng.normal(size=30), 1)
    w = rng.integers(0, 4, (20, 30)).astype(float)
    got = weighted_spearman(x, y, w)
    ref = [stats.spearmanr(np.repeat(x, k.astype(int)), np.repeat(y, k.astype(int))).correlation
           for k in w]
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_jackknife_leaves_whole_runs_out():
    """Reference: drop one run, concatenate the rest, scipy spearmanr; se_J; t_{R−1}; the
    pooled interval on Fisher's z scale, the within-run one the Student-t of the run ρ_r."""
    rng = np.random.default_rng(3)
    vals = [random_values(rng, 7) for _ in range(5)]
    res = hy.compare_predictors([make_run(v) for v in vals], P, trend="none")
    pairs = [hand_pairs(v, 1) for v in vals]
    q = stats.t.ppf(0.975, 4)
    for j, (s, w) in enumerate(zip(res.pooled.stats, res.within.stats)):
        def pooled(keep, j=j):
            return stats.spearmanr(np.concatenate([pairs[r][0][:, j] for r in keep]),
                                   np.concatenate([pairs[r][1] for r in keep])).correlation
        loo = np.arctanh([pooled([r for r in range(5) if r != d]) for d in range(5)])
        se = np.sqrt(4 / 5 * np.sum((loo - loo.mean()) ** 2))
        z = np.arctanh(pooled(range(5)))
        assert s.rho == pytest.approx(np.tanh(z))
        assert (s.ci_low, s.ci_high) == pytest.approx((np.tanh(z - q * se), np.tanh(z + q * se)))
        rho_r = np.array([stats.spearmanr(px[:, j], py).correlation for px, py in pairs])
        want = stats.t.interval(0.95, 4, loc=rho_r.mean(), scale=stats.sem(rho_r))
        assert (w.ci_low, w.ci_high) == pytest.approx(want)
        assert w.p_value == pytest.approx(stats.ttest_1samp(rho_r, 0).pvalue)
        assert w.p_jackknife == pytest.approx(w.p_value)
    assert res.ci_over == "runs" and "R = 5" in str(res)

def test_identical_runs_collapse_every_interval():
    vals = random_values(np.random.default_rng(4), 10)
    res = hy.compare_predictors({"a": [make_run(vals)] * 3, "b": [make_run(vals)] * 2}, P)
    for rank in (res.pooled, res.within):
        for s in rank.stats:
            assert s.ci_low == pytest.approx(s.rho, abs=1e-12)
            assert s.ci_high == pytest.approx(s.rho, abs=1e-12)
        for c in rank.contrasts:
            assert c.ci_low == pytest.approx(c.diff, abs=1e-12)
            assert c.ci_high == pytest.approx(c.diff, abs=1e-12)
    assert res.pooled.stats[0].rho == pytest.approx(res.within.stats[0].rho, abs=1e-12)


def test_one_run_leaves_tasks_out_and_has_no_between_run_test():
    vals = random_values(np.random.default_rng(5), 12)
    res = hy.compare_predictors(make_run(vals), P)
    assert res.ci_over == "tasks" and len(res.runs) == 1
    for p, w in zip(res.pooled.stats, res.within.stats):
        assert w.rho == pytest.approx(p.rho) and np.isnan(w.p_value)
        assert p.ci_low < p.rho < p.ci_high            # tasks left out: a real interval


def synthetic_winner(seed=0, n_tasks=12):
    """Target on task t+1 = a decreasing function of log condition at task t plus noise."""
    rng = np.random.default_rng(seed)
    tables = {}
    for m, shift in (("sgd", 0.0), ("l2", 1.0), ("shrink", -1.0)):
        tables[m] = []
        for s in range(4):
            logc = rng.normal(size=n_tasks) + shift
            noise = 0.03 * rng.normal(size=n_tasks - 1)
            acc = np.r_[np.nan, 0.9 - 0.1 * np.tanh(logc[:-1]) + noise]
            tables[m].append(make_run({
                ("ntk_condition", "all"): np.exp(logc),
                ("ntk_trace", "all"): rng.normal(size=n_tasks),
                ("jac_mean_log_sigma_sq", "layer0"): rng.normal(size=n_tasks),
                ("jac_mean_log_sigma_sq", "layer1"): rng.normal(size=n_tasks),
                ("online_accuracy", "all"): acc}, junk_seed=s))
    return tables


def test_monotone_driver_wins_with_contrast_intervals_above_zero():
    res = hy.compare_predictors(synthetic_winner(), P, trend="none")
    for rank in (res.pooled, res.within):
        assert rank.best == "cond"
        assert rank.stats[0].rho < -0.7 and rank.stats[0].ci_high < 0
        assert set(rank.beats) == {"trace", "iso"}
        assert all(c.ci_low > 0 and c.p_jackknife < 0.01 for c in rank.contrasts)
        for s in rank.stats[1:]:
            assert s.ci_low < 0 < s.ci_high                # pure noise: interval covers 0
    text = str(res)
    assert "best: cond" in text and "within-run" in text and "pooled" in text


def test_lead_lag_peaks_at_the_true_lag():
    ll = hy.predictor_lead_lag(synthetic_winner(1), P, max_lag=2)
    rho = ll.table("pooled")[:, 0, 0]
    assert ll.lags.tolist() == [-2, -1, 0, 1, 2]
    assert int(ll.lags[np.argmax(np.abs(rho))]) == 1
    assert ll.table("within").shape == (5, 3, 3)
    assert "lag > 0: predictor leads" in str(ll)


def test_complete_cases_off_lets_each_predictor_keep_its_points():
    rng = np.random.default_rng(6)
    vals = [random_values(rng, 10) for _ in range(3)]
    for v in vals:
        v[("ntk_trace", "all")][:4] = np.nan
    tables = [make_run(v) for v in vals]
    on = hy.compare_predictors(tables, P, trend="none")
    off = hy.compare_predictors(tables, P, complete_cases=False, trend="none")
    assert [s.n_points for s in on.pooled.stats] == [15] * 3
    assert [s.n_points for s in off.pooled.stats] == [27, 15, 27]


def test_errors_name_what_is_missing_or_degenerate():
    rng = np.random.default_rng(8)
    tables = [make_run(random_values(rng, 6)) for _ in range(2)]
    with pytest.raises(NtkplastError, match="no rows of 'weight_norm'.*weight_chi"):
        hy.compare_predictors(tables, {"w": "weight_norm"})
    with pytest.raises(NtkplastError, match="per-layer rows are needed"):
        hy.compare_predictors(tables, {"c": ("ntk_condition", "mean")})
    with pytest.raises(NtkplastError, match="target.*plasticity_loss"):
        hy.compare_predictors(tables, P, target="plasticity_loss")
    with pytest.raises(NtkplastError, match="at least 4"):
        hy.compare_predictors(tables, P, lag=5)
    const = random_values(rng, 6)
    const[("ntk_trace", "all")][:] = 2.0
    with pytest.raises(NtkplastError, match="'trace'.*constant"):
        hy.compare_predictors([make_run(const)] * 2, P)
    with pytest.raises(NtkplastError, match="no task ends"):
        hy.compare_predictors([Table.from_rows([(0, 0, 0, "all", "ntk_condition", 1.0)])], P)
    with pytest.raises(NtkplastError, match="method name"):
        hy.compare_predictors({}, P)
    with pytest.raises(NtkplastError, match="has no tables"):
        hy.compare_predictors({"a": []}, P)
    with pytest.warns(DeprecationWarning, match="n_boot no longer"):
        hy.compare_predictors(tables, P, n_boot=0)
    with pytest.raises(NtkplastError, match="level"):
        hy.compare_predictors(tables, P, level=95)
    with pytest.raises(NtkplastError, match="predictors"):
        hy.compare_predictors(tables, {})


def test_default_predictors_resolve_against_a_full_table():
    rng = np.random.default_rng(9)
    vals = {(m, layer) if layer == "all" else (m, f"layer{k}"): rng.normal(size=8)
            for m, layer in hy.PREDICTORS.values() for k in range(2)}
    vals[("online_accuracy", "all")] = rng.normal(size=8)
    res = hy.compare_predictors([make_run(vals)] * 2)
    assert [s.name for s in res.pooled.stats] == list(hy.PREDICTORS)


def test_figures_draw_and_mark_the_best():
    res = hy.compare_predictors(synthetic_winner(), P)
    fig = predictor_comparison(res, title="t")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["★ cond", "trace", "iso"]
    assert fig.axes[0].get_xlabel().startswith("Spearman")
    plt.close(fig)
    ll = hy.predictor_lead_lag(synthetic_winner(), P, max_lag=1)
    fig = lead_lag_plot(ll, scope="within")
    assert len(fig.axes[0].get_lines()) >= 3
    plt.close(fig)
    runs = synthetic_winner()["sgd"]
    single = {"cond": hy.lead_lag(runs, "ntk_condition", "online_accuracy", max_lag=1,
                                  at="task_end")}
    plt.close(lead_lag_plot(single))
    with pytest.raises(NtkplastError, match="compare_predictors"):
        predictor_comparison(ll)
    with pytest.raises(NtkplastError, match="lead_lag"):
        lead_lag_plot(res)
