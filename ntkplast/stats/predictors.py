r"""The predictor test: which task-end metric best predicts plasticity on a later task?

Across methods, seeds and tasks, :func:`compare_predictors` rank-correlates each candidate
(NTK conditioning, scale and spectral shape, isometry deviation, dead units, the weight norm:
:data:`PREDICTORS`) at the end of task t with the plasticity target (by default the online
accuracy) on task t + lag: pooled Spearman ρ over all points and the within-run mean ρ̄,
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
from typing import Literal, NamedTuple

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import MetricRef, check_level, ignore_bootstrap
from ntkplast.stats._inputs import name as _name
from ntkplast.stats._inputs import ref as _ref
from ntkplast.stats._inputs import tables as _tables
from ntkplast.stats._ranks import correlation_p, weighted_spearman
from ntkplast.stats.intervals import correlation_interval, jackknife_interval, jackknife_p
from ntkplast.table import TASK_END_METRICS, Table, task_end_checkpoints, task_end_values

__all__ = ["PREDICTORS", "Contrast", "PredictorComparison", "PredictorLeadLag",
           "PredictorRanking", "PredictorSpec", "PredictorStat", "compare_predictors",
           "predictor_lead_lag"]

Runs = Mapping[str, Sequence[Table]] | Sequence[Table] | Table
"""Method name → one Table per seed; a list of Tables (or one Table) is one method."""
RunPoints = list[tuple[tuple[str, int], np.ndarray, np.ndarray]]
"""Per run: ``(method, seed index)``, predictors x (n, P) at task t, target y (n,) at t + lag."""

PredictorSpec = MetricRef
"""``"metric"`` (layer ``"all"``) or ``("metric", layer)`` with layer ``"all"``, ``"layer<l>"``
or ``"mean"`` (the mean over a metric's per-layer rows at each checkpoint)."""

PREDICTORS: dict[str, PredictorSpec] = {
    "NTK condition number (log)": ("ntk_condition", "all"),
    "NTK effective rank": ("ntk_effective_rank", "all"),
    "NTK trace": ("ntk_trace", "all"),
    "NTK λ_max": ("ntk_lambda_max", "all"),
    "NTK decay exponent": ("ntk_decay_exponent", "all"),
    "isometry deviation (layer mean)": ("jac_mean_log_sigma_sq", "mean"),
    "dead fraction (layer mean)": ("dormant_fraction_tau0", "mean"),
    "weight norm": ("weight_norm", "all"),
}
"""The candidates of the head-to-head test: is plasticity governed by the conditioning of the
empirical NTK Θ = J Jᵀ on the probe set (Jacot, Gabriel & Hongler 2018), with eigenvalues
λ_1 ≥ … ≥ λ_N, rather than by its scale?

* conditioning and shape: condition number κ = λ_max / max(λ_min, ε λ_max); effective rank
  exp(−Σ p_i log p_i), p_i = λ_i / Σ λ (Roy & Vetterli 2007); decay exponent α of λ_i ∝ i^(−α);
* scale: trace Σ λ_i and λ_max;
* isometry deviation: per weight layer, the mean (log σ)² of the layer Jacobian's nonzero
  singular values σ (0 at dynamical isometry, Pennington, Schoenholz & Ganguli 2017), averaged
  over layers;
* dead units: per hidden layer, the fraction of units whose ReDo score
  s_i = E_x|a_i(x)| / ((1/d) Σ_j E_x|a_j(x)|) is 0 (τ = 0; Sokar et al. 2023), averaged over
  layers;
* weight norm (Σ_l ‖m_W W_l‖_F²)^½ over the effective weight matrices, biases excluded
  (``weight_norm``, layer ``"all"``, written by the analysis' isometry family); weight growth
  accompanies the loss of plasticity in Dohare et al. (2024).

Spearman's ρ is invariant under any increasing transform, so "log" in a name only says how the
metric is usually read."""


class PredictorStat(NamedTuple):
    """One predictor's rank correlation with the target in one scope (pooled or within-run).

    Attributes:
      name: display name.  metric, layer: what was read.
      rho: the coefficient (pooled ρ, or the mean of per-run ρ_r).
      ci_low, ci_high: jackknife-t interval at the comparison's ``level`` (pooled: Fisher z
        scale; within-run: the Student-t interval of the mean ρ_r).
      p_value: analytic two-sided p (pooled: Spearman's t-test treating points as independent,
        optimistic under clustering; within-run: one-sample t-test of ρ_r over runs, NaN with
        fewer than 2 runs).
      p_jackknife: two-sided jackknife-t p of ρ = 0, 2 P(T_{U−1} > |ρ| / se_J) over the U
        units (runs).
      n_points: (predictor, target) pairs used.  n_runs: runs contributing (within-run: runs
        whose ρ_r is defined).
    """

    name: str
    metric: str
    layer: str
    rho: float
    ci_low: float
    ci_high: float
    p_value: float
    p_jackknife: float
    n_points: int
    n_runs: int


class Contrast(NamedTuple):
    """Paired jackknife contrast Δ = |ρ_best| − |ρ_other| (the same unit left out of both)."""

    best: str
    other: str
    diff: float
    ci_low: float
    ci_high: float
    p_jackknife: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 on the positive side: best beats other at the level."""
        return bool(self.ci_low > 0)


class PredictorRanking(NamedTuple):
    """All predictors in one scope, the one with the largest |ρ|, and its contrasts."""

    scope: str
    stats: tuple[PredictorStat, ...]
    best: str
    contrasts: tuple[Contrast, ...]
    level: float

    @property
    def beats(self) -> tuple[str, ...]:
        """Predictors the best one beats with the contrast interval above 0."""
        return tuple(c.other for c in self.contrasts if c.significant)

    def summary(self) -> str:
        pct = f"{100 * self.level:g}%"
        width = max(len("predictor"), *(len(s.name) for s in self.stats))
        diffs = {c.other: c for c in self.contrasts}
        lines = [f"{self.scope}:",
                 f"  {'predictor':<{width}}  {'rho':<6}  {pct + ' CI':<16}  {'p':<8} "
                 f"{'p_jack':<8} {'n_pts':<6} {'runs':<5} |rho_best|-|rho| [{pct} CI]"]
        for s in self.stats:
            c = diffs.get(s.name)
            tail = ("best" if s.name == self.best else
                    f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                    + (" *" if c.significant else "") if c is not None else "")
            lines.append(f"  {s.name:<{width}}  {s.rho:+.3f}  [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"
                         f"  {s.p_value:<8.2g} {s.p_jackknife:<8.2g} {s.n_points:<6d} "
                         f"{s.n_runs:<5d} {tail}")
        beats = self.beats
        lines.append(f"  best: {self.best} (largest |rho|); interval of the difference above 0 "
                     f"against {len(beats)}/{len(self.contrasts)} others"
                     + (f": {', '.join(beats)}" if beats else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class PredictorComparison(NamedTuple):
    """Result of :func:`compare_predictors`; ``print(result)`` shows both tables.

    Attributes:
      target: ``(metric, layer)`` predicted.  lag: target task = predictor task + lag.
      pooled, within: the two :class:`PredictorRanking` (pooled points; mean of per-run ρ).
      runs: ``(method, seed index)`` of every run.  ci_over: ``"runs"`` (runs left out one at
      a time) or ``"tasks"`` (one run: its tasks left out instead).  complete_cases: whether
      every predictor used the same points.  level: interval coverage.
    """

    target: tuple[str, str]
    lag: int
    pooled: PredictorRanking
    within: PredictorRanking
    runs: tuple[tuple[str, int], ...]
    ci_over: str
    complete_cases: bool
    level: float

    def summary(self) -> str:
        methods = sorted({m for m, _ in self.runs})
        head = (f"which task-end metric predicts {_name(self.target)} {self.lag:+d} task(s) "
                f"later? Spearman rho; {100 * self.level:g}% jackknife-t interval over "
                f"{self.ci_over}"
                + (" (one run: tasks are autocorrelated, optimistic)"
                   if self.ci_over == "tasks" else "")
                + f"; R = {len(self.runs)} run(s) of "
                f"{len(methods)} method(s)"
                + (f" ({', '.join(methods)}); " if any(methods) else "; ")
                + ("same points for every predictor" if self.complete_cases else
                   "each predictor on its own finite points"))
        return "\n".join([head, self.pooled.summary(), self.within.summary()])

    def __str__(self) -> str:
        return self.summary()


class PredictorLeadLag(NamedTuple):
    """:func:`compare_predictors` at each lag; lag > 0: the predictor leads the target."""

    lags: np.ndarray
    results: tuple[PredictorComparison, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.results[0].pooled.stats)

    def table(self, scope: Literal["pooled", "within"] = "pooled") -> np.ndarray:
        """``(lags, predictors, 3)``: ρ, ci_low, ci_high."""
        return np.array([[(s.rho, s.ci_low, s.ci_high) for s in getattr(r, scope).stats]
                         for r in self.results])

    def __str__(self) -> str:
        lines = [f"lead-lag of predictors with {_name(self.results[0].target)} over tasks "
                 "(lag > 0: predictor leads); rho pooled / within-run:"]
        width = max(len(n) for n in self.names)
        lines.append(f"  {'lag':>4}  " + "  ".join(f"{n[:width]:>{width}}" for n in self.names))
        for lag, r in zip(self.lags.tolist(), self.results):
            cells = [f"{p.rho:+.2f}/{w.rho:+.2f}" for p, w in zip(r.pooled.stats, r.within.stats)]
            lines.append(f"  {lag:+4d}  " + "  ".join(f"{c:>{width}}" for c in cells))
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ input


def _task_values(table: Table, ends: np.ndarray, ref: tuple[str, str], what: str) -> np.ndarray:
    """:func:`ntkplast.table.task_end_values` (T,) of one predictor or the target, with an error
    that says where the metric is when the table has no row of it on that layer."""
    metric, layer = ref
    c = table.columns
    sel = c["metric"] == metric
    sel &= (c["layer"] != "all") if layer == "mean" else (c["layer"] == layer)
    if not sel.any():
        layers = sorted(set(c["layer"][c["metric"] == metric].tolist()))
        if layers:
            hint = f"'{metric}' exists on layer(s) {layers}" + (
                "; per-layer rows are needed for layer 'mean'" if layer == "mean" else "")
        else:
            hint = (f"the table has no '{metric}' rows at all; analyse the runs with the family "
                    "that writes it, or drop it")
        if metric == "weight_norm":
            hint += ("; the analysis writes it with its isometry family (layer 'all'), so "
                     "re-analyse with that family (tables analysed before it was added lack it) "
                     "or use ('weight_chi', 'mean'), the layer mean of ‖W_l‖_F² / "
                     "min(fan_in, fan_out), a scale metric of the same family")
        raise NtkplastError(f"{what}: no rows of '{metric}' on layer '{layer}'; {hint}")
    try:
        return task_end_values(table, metric, layer, ends=ends)
    except NtkplastError as e:
        raise NtkplastError(f"{what}: {e}") from None


def _predictor_points(tables: Runs, refs: Sequence[tuple[str, str]], names: Sequence[str],
                      target: tuple[str, str], lag: int) -> RunPoints:
    """Per run: (method, seed), x (n, P) predictor at task t, y (n,) target at task t + lag."""
    if isinstance(tables, Table) or (isinstance(tables, Sequence)
                                     and not isinstance(tables, str)):
        tables = {"": _tables(tables, "compare_predictors")}
    if not isinstance(tables, Mapping) or not tables:
        raise NtkplastError("compare_predictors: expected tables as method name → a list of "
                            f"Tables (one per seed), e.g. run_grid(...).tables; got {tables!r}")
    out = []
    for method, runs in tables.items():
        runs = [runs] if isinstance(runs, Table) else list(runs)
        if not runs:
            raise NtkplastError(f"compare_predictors: method {method!r} has no tables")
        for s, table in enumerate(_tables(runs, f"compare_predictors[{method!r}]")):
            where = f"method {method!r}, seed {s}" if method else f"run {s}"
            ends = task_end_checkpoints(table)
            if len(ends) == 0:
                raise NtkplastError(f"compare_predictors: {where} has no task ends (no "
                                    f"{list(TASK_END_METRICS)} rows); analyse with the "
                                    "plasticity family")
            xs = np.stack([_task_values(table, ends, r, f"predictor {n!r} ({where})")
                           for r, n in zip(refs, names)], axis=1)
            y = _task_values(table, ends, target, f"target ({where})")
            n = len(ends) - abs(lag)
            if lag >= 0:
                xs, y = xs[:max(n, 0)], y[lag:]
            else:
                xs, y = xs[-lag:], y[:max(n, 0)]
            out.append(((str(method), s), xs, y))
    return out


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
"""Per predictor: x, y, and the run and the task of each point."""


def _pooled_points(runs: RunPoints, names: Sequence[str], refs: Sequence[tuple[str, str]],
                   target: tuple[str, str], lag: int,
                   complete_cases: bool) -> tuple[Pooled, np.ndarray]:
    """Each predictor's pooled points, and the per-run ρ_{p,r} (R, P) (NaN under 3 points or
    for a constant series)."""
    keep_all = [np.isfinite(y) & np.isfinite(xs).all(1) for _, xs, y in runs]
    pooled, per_run = [], np.full((len(runs), len(names)), np.nan)
    for p, name in enumerate(names):
        xs, ys, cl, task = [], [], [], []
        for r, (_, x, y) in enumerate(runs):
            keep = keep_all[r] if complete_cases else np.isfinite(y) & np.isfinite(x[:, p])
            xs.append(x[keep, p])
            ys.append(y[keep])
            cl.append(np.full(int(keep.sum()), r))
            task.append(np.flatnonzero(keep))
            if keep.sum() >= 3:
                per_run[r, p] = weighted_spearman(x[keep, p], y[keep])[0]
        x, y = np.concatenate(xs), np.concatenate(ys)
        _check_points(x, y, name, refs[p], target, lag, len(runs), complete_cases)
        pooled.append((x, y, np.concatenate(cl), np.concatenate(task)))
    return pooled, per_run


def _jackknife(pooled: Pooled, per_run: np.ndarray
               ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """``(ci_over, ρ_p (P,), pooled replicates ρ_(u),p (U, P), within-run replicates (U, P))``.

    Unit u (a run; with one run, a task) is left out of every predictor at once (paired): the
    pooled ρ is recomputed with weight 0 on its points
    (:func:`~ntkplast.stats._ranks.weighted_spearman`), and the within-run replicate is the mean
    of the other runs' defined ρ_{p,r}.
    """
    n_runs, n_pred = per_run.shape
    ci_over = "runs" if n_runs >= 2 else "tasks"
    unit = [cl if ci_over == "runs" else task for _, _, cl, task in pooled]
    n_units = n_runs if ci_over == "runs" else 1 + max(int(u.max()) for u in unit)
    loo_pooled = np.empty((n_units, n_pred))
    rho_pooled = np.empty(n_pred)
    for p, (x, y, _, _) in enumerate(pooled):
        rho_pooled[p] = weighted_spearman(x, y)[0]
        w = (unit[p][None, :] != np.arange(n_units)[:, None]).astype(float)
        loo_pooled[:, p] = weighted_spearman(x, y, w)
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
                       complete_cases: bool = True, level: float = 0.95,
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

    * Pooled: ρ_p = Spearman's ρ (Pearson correlation of average ranks; Spearman 1904) over all
      N pooled points of all methods, seeds and tasks — between-method and between-seed
      differences count, as in "across methods, tasks and seeds". p: t = ρ √((N−2)/(1−ρ²)),
      Student-t with N − 2 df (scipy's ``spearmanr`` p), which treats points as independent.
    * Within-run: ρ̄_p = (1/R') Σ_r ρ_{p,r} over the R' runs where the per-run ρ is defined
      (≥ 3 points, neither series constant) — only the task-to-task co-variation inside a run
      counts. p: one-sample t-test of the ρ_{p,r} over runs.
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
      complete_cases: use the same points for every predictor (see above).
      level: interval coverage.
      n_boot, seed: deprecated, ignored with a warning (the intervals no longer resample).

    Returns:
      :class:`PredictorComparison`; ``print`` it for both tables.

    Raises:
      NtkplastError: no tables, a missing predictor or target metric in any run, fewer than 4
        pooled points, a predictor or target constant over the pooled points, bad settings.
    """
    predictors = PREDICTORS if predictors is None else predictors
    if not isinstance(predictors, Mapping) or not predictors:
        raise NtkplastError("predictors: expected a mapping display name → metric or (metric, "
                            f"layer), e.g. hypotheses.PREDICTORS; got {predictors!r}")
    names = [str(n) for n in predictors]
    refs = [_ref(r, f"predictors[{n!r}]") for n, r in predictors.items()]
    tref = _ref(target, "target")
    if not isinstance(lag, int | np.integer):
        raise NtkplastError(f"lag: expected an integer number of tasks, got {lag!r}")
    ignore_bootstrap("compare_predictors", n_boot, seed)
    check_level(level)
    runs = _predictor_points(tables, refs, names, tref, int(lag))
    pooled, per_run = _pooled_points(runs, names, refs, tref, int(lag), complete_cases)
    ci_over, rho_pooled, loo_pooled, loo_within = _jackknife(pooled, per_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # no run with a defined ρ_r: NaN
        rho_within = np.nanmean(per_run, axis=0)
    n_pts = [len(x) for x, _, _, _ in pooled]
    pooled_rank = _ranking("pooled over methods, seeds and tasks", names, refs, rho_pooled,
                           loo_pooled, [correlation_p(float(r), n - 2)
                                        for r, n in zip(rho_pooled, n_pts)],
                           n_pts, [len(np.unique(cl)) for _, _, cl, _ in pooled], level, True)
    within_rank = _ranking("within-run (mean of per-run rho)", names, refs, rho_within,
                           loo_within, [_p(float(r), loo_within[:, p]) if ci_over == "runs"
                                        else float("nan") for p, r in enumerate(rho_within)],
                           n_pts,
                           [int(n) for n in np.isfinite(per_run).sum(0)], level,
                           ci_over == "tasks")
    return PredictorComparison(tref, int(lag), pooled_rank, within_rank,
                               tuple(r[0] for r in runs), ci_over, bool(complete_cases),
                               float(level))


def predictor_lead_lag(tables: Runs,
                       predictors: Mapping[str, PredictorSpec] | None = None,
                       target: MetricRef = "online_accuracy", *, max_lag: int = 3,
                       complete_cases: bool = True, level: float = 0.95,
                       n_boot: int | None = None, seed: int | None = None) -> PredictorLeadLag:
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
        compare_predictors(tables, predictors, target, lag=int(lag),
                           complete_cases=complete_cases, level=level)
        for lag in lags))
