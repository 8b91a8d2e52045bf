r"""The predictor test: which task-end metric best predicts plasticity on a later task?

Across methods, seeds and tasks, :func:`compare_predictors` rank-correlates each candidate
(NTK conditioning, scale and spectral shape, isometry deviation, dead units, the weight norm:
:data:`PREDICTORS`) at the end of task t with the plasticity target (by default the online
accuracy) on task t + lag, after a trend control (by default first differences over tasks with
the task position partialled out of their ranks, so a trend shared with the task index cannot
make a predictor): a pooled coefficient over all points and the within-run mean ρ̄,
delete-one-run jackknife intervals with Student-t critical values (Cameron, Gelbach & Miller
2008), and a paired jackknife contrast |ρ_best| − |ρ_other| for "best predicts better".
:func:`predictor_lead_lag` repeats it over lags: a metric that drives plasticity should peak at a
positive lag. Each run is one
:class:`~ntkplast.table.Table`; the methods are a mapping name → one Table per seed, as
:func:`ntkplast.experiments.grid.run_grid` returns in ``.tables``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import (
    MetricRef,
    Trend,
    check_level,
    check_trend,
    ignore_bootstrap,
)
from ntkplast.stats._inputs import name as _name
from ntkplast.stats._inputs import ref as _ref
from ntkplast.stats._predictor_inputs import RunPoints, Runs, _predictor_points
from ntkplast.stats._predictor_types import (
    Contrast,
    PredictorComparison,
    PredictorLeadLag,
    PredictorRanking,
    PredictorStat,
)
from ntkplast.stats._ranks import correlation_p, pearson, residual_ranks, weighted_spearman
from ntkplast.stats.intervals import correlation_interval, jackknife_interval, jackknife_p

__all__ = ["PREDICTORS", "Contrast", "PredictorComparison", "PredictorLeadLag",
           "PredictorRanking", "PredictorSpec", "PredictorStat", "compare_predictors",
           "predictor_lead_lag"]

PredictorSpec = MetricRef
"""``"metric"`` (layer ``"all"``) or ``("metric", layer)`` with layer ``"all"``, ``"layer<l>"``
or ``"mean"`` (the mean over a metric's per-layer rows at each checkpoint)."""

PREDICTORS: dict[str, PredictorSpec] = {
    "NTK condition number (log)": ("ntk_condition", "all"),
    "NTK effective rank": ("ntk_effective_rank", "all"),
    "NTK trace": ("ntk_trace", "all"),
    "NTK λ_max": ("ntk_lambda_max", "all"),
    "NTK decay exponent": ("ntk_decay_exponent", "all"),
    "isometry deviation (layer mean)": ("jac_isometry_deviation", "mean"),
    "dead fraction (layer mean)": ("dormant_fraction_tau0", "mean"),
    "weight norm": ("weight_norm", "all"),
    "feature effective rank (layer mean)": ("feature_effective_rank", "mean"),
    "loss Hessian λ_max (sharpness)": ("hessian_lambda_max", "all"),
    "loss Hessian effective rank": ("hessian_effective_rank", "all"),
    "Gauss–Newton λ_max": ("ggn_lambda_max", "all"),
    "gradient norm": ("grad_norm", "all"),
    "gradient SNR": ("grad_snr", "all"),
    "optimization readiness": ("optimization_readiness", "all"),
    "output churn": ("output_churn", "all"),
    "distance from init (relative)": ("param_distance_init_rel", "all"),
}
"""The candidates of the head-to-head test: is plasticity governed by the conditioning of the
empirical NTK Θ = J Jᵀ on the probe set (Jacot, Gabriel & Hongler 2018), with eigenvalues
λ_1 ≥ … ≥ λ_N, rather than by its scale?

* conditioning and shape: condition number κ = λ_max / max(λ_min, ε λ_max); effective rank
  exp(−Σ p_i log p_i), p_i = λ_i / Σ λ (Roy & Vetterli 2007); decay exponent α of λ_i ∝ i^(−α);
* scale: trace Σ λ_i and λ_max;
* isometry deviation: per weight layer, the mean of tanh²(log σ) = ((σ² − 1)/(σ² + 1))² over
  all singular values σ of the layer Jacobian, zeros included (0 at dynamical isometry,
  Pennington, Schoenholz & Ganguli 2017; ≈ (log σ)² near σ = 1; a unit off or dead counts 1),
  averaged over layers (:attr:`ntkplast.isometry.SingularValueSummary.isometry_deviation`; the
  mean (log σ)² over non-zero σ only is blind to dead units and NaN for a dead layer, so it
  is not a default candidate);
* dead units: per hidden layer, the fraction of units whose ReDo score
  s_i = E_x|a_i(x)| / ((1/d) Σ_j E_x|a_j(x)|) is 0 (τ = 0; Sokar et al. 2023), averaged over
  layers;
* weight norm (Σ_l ‖m_W W_l‖_F²)^½ over the effective weight matrices, biases excluded
  (``weight_norm``, layer ``"all"``, written by the analysis' isometry family); weight growth
  accompanies the loss of plasticity in Dohare et al. (2024);

and the rival explanations, on the same checkpoints and with the same statistics:

* feature rank: the effective rank of the hidden features, averaged over layers (Kumar et al.
  2021, "Implicit under-parameterization inhibits data-efficient deep reinforcement learning");
* curvature: λ_max of the probe loss's Hessian (sharpness; Lyle et al. 2023, "Understanding
  plasticity in neural networks") and its top-k effective rank (the rank collapse of
  Lewandowski et al. 2024, "Directions of curvature as an explanation for loss of
  plasticity"), λ_max of the Gauss–Newton matrix (:mod:`ntkplast.curvature`);
* gradient signal: the probe loss's gradient norm, its signal-to-noise over minibatches and
  optimization readiness, strength × reliability (after Wang et al. 2026, "Predicting
  plasticity in deep continual learning: a theoretical perspective"; :mod:`ntkplast.gradients`);
* churn and drift: the output change on the probe since the previous checkpoint and the
  relative distance of the parameters from initialisation (:mod:`ntkplast.churn`).

Spearman's ρ is invariant under any increasing transform, so "log" in a name only says how the
metric is usually read. A condition number at its eigenvalue floor (``ntk_condition_at_floor``)
is the cap 1/eps, a lower bound: rank-based, such values tie at the top (a change between two
capped values reads 0), which treats them as censored rather than as exact."""


# ------------------------------------------------------------------------------------ steps


def _check_points(x: np.ndarray, y: np.ndarray, name: str, ref: tuple[str, str],
                  target: tuple[str, str], lag: int, n_runs: int, complete_cases: bool) -> None:
    """Raise unless one predictor's pooled points are ≥ 4 and neither side is constant."""
    if len(x) < 4:
        raise NtkplastError(
            f"compare_predictors: {len(x)} usable (predictor, target) point(s) for {name!r} "
            f"at lag {lag:+d} over {n_runs} run(s); at least 4 are needed. Runs need more "
            f"than {abs(lag)} task ends with finite {_name(target)}"
            + (" and every predictor finite (try complete_cases=False)"
               if complete_cases else ""))
    for series, what in ((x, f"predictor {name!r} ({_name(ref)})"),
                         (y, f"target {_name(target)}")):
        if np.all(series == series[0]):
            raise NtkplastError(f"compare_predictors: {what} is constant ({series[0]:g}) "
                                f"over all {len(x)} points, so no rank correlation exists; "
                                "drop it from predictors")


Pooled = list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
"""Per predictor: the pooled x and y (raw values; under a trend control each run's residual
ranks), and the run and the task of each point."""


def _pooled_statistic(x: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                      trend: Trend) -> np.ndarray:
    """The pooled coefficient (B,) of the samples weighted by w (None: the sample itself):
    Spearman's ρ of the raw points without a trend control; with one, Pearson's r of the pooled
    within-run residual ranks (already ranks, residualised run by run)."""
    if trend == "none":
        return weighted_spearman(x, y, w)
    return pearson(x, y, np.ones((1, len(x))) if w is None else w)


def _pooled_points(runs: RunPoints, names: Sequence[str], refs: Sequence[tuple[str, str]],
                   target: tuple[str, str], lag: int, complete_cases: bool,
                   trend: Trend) -> tuple[Pooled, np.ndarray]:
    """Each predictor's pooled points, and the per-run ρ_{p,r} (R, P) (NaN under 3 points plus
    one per control, or for a constant series). Under a trend control a run's points are
    replaced by their ranks' residuals on [1, task position, shared controls]
    (:func:`residual_ranks`; :func:`_paired` for the controls)."""
    keep_all = [np.isfinite(y) & np.isfinite(xs).all(1) & np.isfinite(own).all(1)
                for _, xs, y, own in runs]
    pooled, per_run = [], np.full((len(runs), len(names)), np.nan)
    for p, name in enumerate(names):
        raw_x, raw_y, xs, ys, cl, task = [], [], [], [], [], []
        for r, (_, x, y, own) in enumerate(runs):
            need = 3 if trend == "none" else 4 + own.shape[1]
            keep = (keep_all[r] if complete_cases else
                    np.isfinite(y) & np.isfinite(x[:, p]) & np.isfinite(own).all(1))
            where = np.flatnonzero(keep)
            xk, yk = x[keep, p], y[keep]
            raw_x.append(xk)
            raw_y.append(yk)
            if trend != "none" and len(where) >= need:
                design = np.column_stack([where.astype(np.float64), own[keep]])
                xk, yk = residual_ranks(xk, design), residual_ranks(yk, design)
            elif trend != "none":   # too few points to residualise: the run adds no point
                xk, yk, where = xk[:0], yk[:0], where[:0]
            xs.append(xk)
            ys.append(yk)
            cl.append(np.full(len(where), r))
            task.append(where)
            if len(where) >= need:
                per_run[r, p] = (weighted_spearman(xk, yk)[0] if trend == "none"
                                 else pearson(xk, yk))
        _check_points(np.concatenate(raw_x), np.concatenate(raw_y), name, refs[p], target, lag,
                      len(runs), complete_cases)
        pooled.append((np.concatenate(xs), np.concatenate(ys), np.concatenate(cl),
                       np.concatenate(task)))
    return pooled, per_run


def _jackknife(pooled: Pooled, per_run: np.ndarray, trend: Trend
               ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """``(ci_over, ρ_p (P,), pooled replicates ρ_(u),p (U, P), within-run replicates (U, P))``.

    Unit u (a run; with one run, a task) is left out of every predictor at once (paired): the
    pooled coefficient is recomputed with weight 0 on its points (:func:`_pooled_statistic`),
    and the within-run replicate is the mean of the other runs' defined ρ_{p,r}.
    """
    n_runs, n_pred = per_run.shape
    ci_over = "runs" if n_runs >= 2 else "tasks"
    unit = [cl if ci_over == "runs" else task for _, _, cl, task in pooled]
    n_units = n_runs if ci_over == "runs" else 1 + max(int(u.max(initial=0)) for u in unit)
    loo_pooled = np.empty((n_units, n_pred))
    rho_pooled = np.empty(n_pred)
    for p, (x, y, _, _) in enumerate(pooled):
        rho_pooled[p] = _pooled_statistic(x, y, None, trend)[0]
        w = (unit[p][None, :] != np.arange(n_units)[:, None]).astype(float)
        loo_pooled[:, p] = _pooled_statistic(x, y, w, trend)
    if ci_over == "tasks":
        return ci_over, rho_pooled, loo_pooled, loo_pooled.copy()
    defined = np.isfinite(per_run)
    values = np.where(defined, per_run, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo_within = (values.sum(0) - values) / (defined.sum(0) - defined)
    loo_within[~defined] = np.nan          # a run without ρ_r is not a unit of the mean
    return ci_over, rho_pooled, loo_pooled, loo_within


def _defined(loo: np.ndarray) -> np.ndarray:
    return loo[np.isfinite(loo)]


def _interval(rho: float, loo: np.ndarray, level: float, correlation: bool) -> tuple[float, float]:
    """Jackknife-t interval over the units with a finite replicate (NaN under 2); a correlation
    on Fisher's z scale, a mean of correlations or a difference on its own scale."""
    loo = _defined(loo)
    if len(loo) < 2:
        return float("nan"), float("nan")
    if correlation:
        return correlation_interval(rho, loo, level)
    return jackknife_interval(rho, loo, level)


def _p(rho: float, loo: np.ndarray) -> float:
    loo = _defined(loo)
    return jackknife_p(rho, loo) if len(loo) >= 2 else float("nan")


def _ranking(scope: str, names: Sequence[str], refs: Sequence[tuple[str, str]], rho: np.ndarray,
             loo: np.ndarray, pvals: Sequence[float], n_pts: Sequence[int],
             n_r: Sequence[int], level: float, pooled: bool) -> PredictorRanking:
    """Stats of every predictor, the best (largest |ρ|, ties to the earlier) and its paired
    contrasts Δ_q = |ρ_best| − |ρ_q| on the same leave-one-out replicates."""
    st = tuple(PredictorStat(names[p], refs[p][0], refs[p][1], float(rho[p]),
                             *_interval(float(rho[p]), loo[:, p], level, pooled), pvals[p],
                             _p(float(rho[p]), loo[:, p]), n_pts[p], n_r[p])
               for p in range(len(names)))
    size = np.where(np.isfinite(rho), np.abs(rho), -1.0)
    best = int(np.argmax(size))
    contrasts = []
    for q in range(len(names)):
        if q == best:
            continue
        d = np.abs(loo[:, best]) - np.abs(loo[:, q])
        diff = float(size[best] - abs(rho[q]))
        contrasts.append(Contrast(names[best], names[q], diff, *_interval(diff, d, level, False),
                                  _p(diff, d)))
    return PredictorRanking(scope, st, names[best], tuple(contrasts), level)


# ----------------------------------------------------------------------------------- public


def compare_predictors(tables: Runs, predictors: Mapping[str, PredictorSpec] | None = None,
                       target: MetricRef = "online_accuracy", *, lag: int = 1,
                       trend: Trend = "difference", complete_cases: bool = True,
                       level: float = 0.95,
                       n_boot: int | None = None, seed: int | None = None,
                       ) -> PredictorComparison:
    r"""Which task-end metric best predicts plasticity on a later task? Rank correlations with
    jackknife-over-runs intervals and a paired test of "better".

    Data: runs r = (method, seed) with task ends t = 0 … T_r − 1 (checkpoints with a
    ``test_accuracy`` row). For predictor p, x_{r,t} is its value at the end of task t (layer
    ``"mean"``: the mean over its per-layer rows, :func:`ntkplast.table.task_end_values`) and
    y_{r,t+lag} the target at the end of task t + lag (``online_accuracy``: accuracy while
    learning task t + lag). Points with a non-finite value are dropped; with ``complete_cases``
    a point is kept only where every predictor and the target are finite, so all predictors are
    compared on the same points.

    Trend control (``trend``, as in :mod:`~ntkplast.stats.correlation`, whose docstring gives
    the reasoning and the simulated coverage): by default ``"difference"`` — per run, x and y
    are first-differenced over tasks (Δx_t = x_{t+1} − x_t; then the lag pairs Δx_t with
    Δy_{t+lag}) and their ranks are residualised on [1, task position]
    (``residual_ranks``), so a trend both share with the task index
    cannot make a predictor. ``"task"``: the same residualisation of the levels' ranks, no
    differences. ``"none"``: the raw association (a shared trend alone reads |ρ| near 1).
    Under ``"difference"`` with lag ≠ 0 the target's own change over the predictor's task is
    one more control, so a predictor that only moves with the target in the same task does not
    read as predicting its next change through the negative autocorrelation that differencing
    puts into the target (``_paired``; Granger 1969).

    * Pooled: ``trend="none"``: ρ_p = Spearman's ρ (Pearson correlation of average ranks;
      Spearman 1904) over all N pooled points of all methods, seeds and tasks — between-method
      and between-seed differences count. p: t = ρ √((N−2)/(1−ρ²)), Student-t with N − 2 df
      (scipy's ``spearmanr`` p). Under a trend control: Pearson's r of the pooled within-run
      residual ranks (levels and trends removed run by run, so no between-run difference
      counts), df = N − (2 + c)R − 1 with c the shared controls. Both p treat points as
      independent (optimistic).
    * Within-run: ρ̄_p = (1/R') Σ_r ρ_{p,r} over the R' runs where the per-run coefficient is
      defined (≥ 3 points, 4 + c under a trend control; neither series constant) — only the
      task-to-task co-variation inside a run counts. p: one-sample t-test of the ρ_{p,r} over
      runs.
    * Intervals: the delete-one-run jackknife with Student-t critical values on R − 1 degrees
      of freedom (Tukey 1958; the small-cluster jackknife of Cameron, Gelbach & Miller 2008;
      :mod:`~ntkplast.stats.intervals`), whole runs being the unit because tasks of one run are
      dependent. ρ_(r),p is recomputed without run r's points; se_J = √((R−1)/R Σ_r (ρ_(r),p −
      ρ_(·),p)²). Pooled ρ: ρ ± t · se_J on Fisher's z scale. Within-run ρ̄: the replicate is the
      other runs' mean, so the interval is exactly the Student-t interval of the ρ_{p,r}. Its
      coverage holds from R = 3 (simulation test in the suite), where the percentile cluster
      bootstrap covers only ~74% at nominal 95%. With a single run its tasks are left out
      instead (``ci_over="tasks"``; optimistic, tasks are autocorrelated). p_jackknife =
      2 P(T_{R−1} > |ρ| / se_J).
    * Better: best = argmax_p |ρ_p| (ties to the earlier predictor). For every other q the
      paired contrast Δ_q = |ρ_best| − |ρ_q| is recomputed with the same run left out; its
      jackknife-t interval lying above 0 is the tested statement "best predicts better than q".
      Selecting the best on the same data makes Δ optimistic when predictors are close; read
      marginal contrasts with that in mind.

    Args:
      tables: method name → one Table per seed (``run_grid(...).tables``); a list of Tables is
        one method.
      predictors: display name → ``"metric"`` or ``(metric, layer)``, layer ``"all"``,
        ``"layer<l>"`` or ``"mean"``; default :data:`PREDICTORS`.
      target: the plasticity metric, ``"metric"`` or ``(metric, layer)``.
      lag: target task = predictor task + lag (1: the next task; 0: the same task; negative:
        the target leads).
      trend: ``"difference"`` (default), ``"task"`` or ``"none"`` (above).
      complete_cases: use the same points for every predictor (see above).
      level: interval coverage.
      n_boot: deprecated, ignored with a warning (the intervals no longer resample).
      seed: deprecated, ignored with a warning (the intervals no longer resample).

    Returns:
      :class:`PredictorComparison`; ``print`` it for both tables.

    Raises:
      NtkplastError: no tables, a missing predictor or target metric in any run, fewer than 4
        pooled points, a predictor or target constant over the pooled points, bad settings.
    """
    predictors = PREDICTORS if predictors is None else predictors
    if not isinstance(predictors, Mapping) or not predictors:
        raise NtkplastError("predictors: expected a mapping display name → metric or (metric, "
                            f"layer), e.g. stats.PREDICTORS; got {predictors!r}")
    names = [str(n) for n in predictors]
    refs = [_ref(r, f"predictors[{n!r}]") for n, r in predictors.items()]
    tref = _ref(target, "target")
    if not isinstance(lag, int | np.integer):
        raise NtkplastError(f"lag: expected an integer number of tasks, got {lag!r}")
    ignore_bootstrap("compare_predictors", n_boot, seed)
    check_level(level)
    trend = check_trend(trend)
    runs = _predictor_points(tables, refs, names, tref, int(lag), trend)
    pooled, per_run = _pooled_points(runs, names, refs, tref, int(lag), complete_cases, trend)
    ci_over, rho_pooled, loo_pooled, loo_within = _jackknife(pooled, per_run, trend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # no run with a defined ρ_r: NaN
        rho_within = np.nanmean(per_run, axis=0)
    n_pts = [len(x) for x, _, _, _ in pooled]
    n_units = [len(np.unique(cl)) for _, _, cl, _ in pooled]
    own = int(trend == "difference" and lag != 0)   # the target's own change (_paired)
    df = [n - 2 if trend == "none" else n - (2 + own) * r - 1 for n, r in zip(n_pts, n_units)]
    pooled_rank = _ranking("pooled over methods, seeds and tasks" if trend == "none" else
                           "pooled within-run residual ranks", names, refs, rho_pooled,
                           loo_pooled, [correlation_p(float(r), max(d, 1))
                                        for r, d in zip(rho_pooled, df)],
                           n_pts, n_units, level, True)
    within_rank = _ranking("within-run (mean of per-run rho)", names, refs, rho_within,
                           loo_within, [_p(float(r), loo_within[:, p]) if ci_over == "runs"
                                        else float("nan") for p, r in enumerate(rho_within)],
                           n_pts,
                           [int(n) for n in np.isfinite(per_run).sum(0)], level,
                           ci_over == "tasks")
    return PredictorComparison(tref, int(lag), pooled_rank, within_rank,
                               tuple(r[0] for r in runs), ci_over, bool(complete_cases),
                               float(level), trend)


def predictor_lead_lag(tables: Runs,
                       predictors: Mapping[str, PredictorSpec] | None = None,
                       target: MetricRef = "online_accuracy", *, max_lag: int = 3,
                       trend: Trend = "difference", complete_cases: bool = True,
                       level: float = 0.95, n_boot: int | None = None,
                       seed: int | None = None) -> PredictorLeadLag:
    """:func:`compare_predictors` at lag = −max_lag … max_lag (tasks): ρ(x_t, y_{t+lag}).

    Lag > 0: the predictor leads the target. A predictor that drives plasticity should peak at
    a positive lag; a peak at a negative lag says the metric follows the loss of plasticity.
    Needs more than ``max_lag`` tasks per run. ``n_boot``, ``seed``: deprecated, ignored.
    """
    ignore_bootstrap("predictor_lead_lag", n_boot, seed)
    if not isinstance(max_lag, int | np.integer) or max_lag < 0:
        raise NtkplastError(f"max_lag: expected a non-negative integer, got {max_lag!r}")
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    return PredictorLeadLag(lags, tuple(
        compare_predictors(tables, predictors, target, lag=int(lag), trend=trend,
                           complete_cases=complete_cases, level=level)
        for lag in lags))
