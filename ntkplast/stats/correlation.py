r"""Relating metrics across checkpoints and runs: rank correlation, partial correlation, lead–lag.

Functions a researcher calls on one :class:`~ntkplast.table.Table` per run (seed) to test a
hypothesis such as "NTK effective rank falls as plasticity is lost" or "isometry loss precedes NTK
rank loss precedes plasticity loss". A metric is named ``"metric"`` (layer ``"all"``) or
``("metric", "layer<l>")``. Two metrics are compared on the checkpoints where both are finite
(``at="task_end"`` keeps only task-end checkpoints, those with a ``test_accuracy`` row, or
``test_mse`` for regression runs).

Statistics (every result prints its sample sizes):

* :func:`spearman`: per run, Spearman's ρ = Pearson correlation of the ranks (ties averaged);
  reported ``rho`` = mean of the per-run ρ_r (each run one replicate, so between-run level
  differences cannot create or mask a correlation). Spearman (1904).
* :func:`partial_spearman`: per run, ρ_{xy·Z}: rank-transform x, y and the controls Z, regress
  rank(x) and rank(y) on [1, rank(Z)] by least squares and correlate the residuals — the partial
  correlation of the ranks (Kendall & Stuart, *The Advanced Theory of Statistics* vol. 2, ch. 27;
  equal to −P_xy / √(P_xx P_yy) with P the inverse rank-correlation matrix).
* Confidence interval: percentile bootstrap (Efron & Tibshirani 1993, ch. 13) of the mean ρ,
  resampling runs with replacement when there are ≥ 2 runs (the seed-to-seed spread), else
  resampling checkpoints of the single run. Checkpoints of one run are autocorrelated, so the
  one-run interval is optimistic; with few runs the run interval is coarse.
* p-value: pool the within-run residualised ranks of all runs (the centred ranks when there are no
  controls), r = their Pearson correlation, t = r √(df / (1 − r²)) with df = N − R(k + 1) − 1
  (N points, R runs, k controls), two-sided Student-t. For one run without controls this is
  exactly ``scipy.stats.spearmanr``'s p; for equal-length runs without ties r equals ``rho``. It
  treats checkpoints as independent, which a time series is not: read it as a lower bound and
  prefer the interval over runs.
* :func:`lead_lag`: ρ between x at common checkpoint t and y at t + lag for lag = −max_lag …
  max_lag. **Positive lag = x leads y** (x's changes show up in y ``lag`` checkpoints later).
  Lags count positions in the sequence of common checkpoints, not steps. Monotone trends make
  every lag correlate; ``difference=True`` correlates first differences instead.
* :func:`onset` / :func:`onset_order`: the first checkpoint where a metric has moved a given
  fraction of its total change (or past a relative or absolute level), and which metric gets
  there first in how many runs.
* :func:`compare_predictors` / :func:`predictor_lead_lag`: across methods, seeds and tasks, which
  task-end metric (NTK conditioning, scale, isometry, dormancy: :data:`PREDICTORS`) rank-correlates
  best with plasticity on a later task — pooled and within-run ρ, cluster-bootstrap intervals over
  runs, and a paired bootstrap contrast |ρ_best| − |ρ_other|.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
from scipy import stats

from ntkplast.errors import NtkplastError
from ntkplast.table import TASK_END_METRICS, Table, task_end_checkpoints

__all__ = ["MetricRef", "CorrelationResult", "LeadLagResult", "Onset", "OnsetOrder",
           "metric_series", "aligned", "spearman", "partial_spearman", "lead_lag", "onset",
           "onset_order", "PREDICTORS", "PredictorStat", "Contrast", "PredictorRanking",
           "PredictorComparison", "PredictorLeadLag", "compare_predictors", "predictor_lead_lag"]

MetricRef = str | tuple[str, str]
"""``"metric"`` (layer ``"all"``) or ``("metric", "layer")``."""
At = Literal["all", "task_end"]


def _name(ref: tuple[str, str]) -> str:
    return f"{ref[0]}[{ref[1]}]"


class CorrelationResult(NamedTuple):
    """A rank correlation with its interval and sample sizes (module docstring for the method).

    Attributes:
      rho: mean over runs of the per-run coefficient.
      ci_low, ci_high: percentile bootstrap interval at ``level``.
      p_value: two-sided p of the pooled within-run test.
      n_runs: runs R.  n_points: points N summed over runs.  n_per_run: points in each run.
      per_run: the per-run coefficients.
      ci_over: ``"runs"`` or ``"checkpoints"`` (what the bootstrap resampled).
      n_boot: resamples.  level: interval coverage.  label: what was correlated.
    """

    rho: float
    ci_low: float
    ci_high: float
    p_value: float
    n_runs: int
    n_points: int
    n_per_run: tuple[int, ...]
    per_run: tuple[float, ...]
    ci_over: str
    n_boot: int
    level: float
    label: str

    def __str__(self) -> str:
        per = "/".join(map(str, self.n_per_run))
        return (f"{self.label}: rho = {self.rho:+.3f}, {100 * self.level:g}% CI "
                f"[{self.ci_low:+.3f}, {self.ci_high:+.3f}] (bootstrap over {self.ci_over}, "
                f"{self.n_boot} resamples), p = {self.p_value:.3g} (pooled within-run); "
                f"n_runs = {self.n_runs}, n_points = {self.n_points} ({per} per run)")


class LeadLagResult(NamedTuple):
    """Per-lag rank correlations; ``lags[i]`` > 0 means x leads y by that many checkpoints."""

    lags: np.ndarray
    results: tuple[CorrelationResult, ...]
    best_lag: int
    label: str

    @property
    def rho(self) -> np.ndarray:
        """ρ at each lag."""
        return np.array([r.rho for r in self.results])

    @property
    def best(self) -> CorrelationResult:
        """The result at :attr:`best_lag` (largest |ρ|; ties go to the smaller |lag|)."""
        return self.results[int(np.flatnonzero(self.lags == self.best_lag)[0])]

    def __str__(self) -> str:
        r0 = self.results[0]
        lines = [f"{self.label} (lag > 0: x leads y; {100 * r0.level:g}% CI over {r0.ci_over}, "
                 f"{r0.n_runs} run(s)):", "    lag  rho     CI                p        n_points"]
        for lag, r in zip(self.lags.tolist(), self.results):
            mark = " *" if lag == self.best_lag else ""
            lines.append(f"  {lag:+5d}  {r.rho:+.3f}  [{r.ci_low:+.3f}, {r.ci_high:+.3f}]  "
                         f"{r.p_value:<8.2g} {r.n_points}{mark}")
        lines.append(f"best lag {self.best_lag:+d} (largest |rho|)")
        return "\n".join(lines)


class Onset(NamedTuple):
    """Where one metric first crosses its criterion (``checkpoint``/``step`` None if never)."""

    metric: str
    layer: str
    checkpoint: int | None
    step: int | None
    direction: str
    baseline: float
    crossing: float
    n_points: int

    def __str__(self) -> str:
        when = "never" if self.step is None else f"step {self.step} (checkpoint {self.checkpoint})"
        return (f"{self.metric}[{self.layer}] {self.direction} past {self.crossing:.4g} "
                f"(baseline {self.baseline:.4g}): {when}; n_points = {self.n_points}")


class OnsetOrder(NamedTuple):
    """Onsets of several metrics in several runs, and how often each precedes each other.

    ``steps[r, i]``: onset step of metric i in run r (NaN: never). ``precedes[i, j]``: runs in
    which metric i's onset is strictly earlier than j's (a never-crossing metric comes last).
    ``order``: metric indices by median onset step (never-crossing last).
    """

    refs: tuple[tuple[str, str], ...]
    onsets: tuple[tuple[Onset, ...], ...]
    steps: np.ndarray
    precedes: np.ndarray
    order: tuple[int, ...]
    criterion: str

    def __str__(self) -> str:
        n_runs = len(self.onsets)
        lines = [f"onset order ({self.criterion}), n_runs = {n_runs}, n_points per run = "
                 + "/".join(str(o[0].n_points) for o in self.onsets) + ":"]
        for rank, i in enumerate(self.order, 1):
            col = self.steps[:, i]
            med = "never" if np.all(np.isnan(col)) else f"median step {np.nanmedian(col):g}"
            runs = ", ".join("never" if np.isnan(s) else f"{s:g}" for s in col)
            lines.append(f"  {rank}. {_name(self.refs[i])}: {med} (runs: {runs})")
        for a, b in zip(self.order, self.order[1:]):
            lines.append(f"  {_name(self.refs[a])} before {_name(self.refs[b])} in "
                         f"{self.precedes[a, b]}/{n_runs} runs (after in "
                         f"{self.precedes[b, a]}/{n_runs})")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------- input


def _ref(ref: MetricRef, what: str) -> tuple[str, str]:
    if isinstance(ref, str):
        return ref, "all"
    if (isinstance(ref, tuple | list) and len(ref) == 2
            and all(isinstance(s, str) for s in ref)):
        return ref[0], ref[1]
    raise NtkplastError(f"{what}: expected a metric name or a (metric, layer) pair such as "
                        f"('jac_isometry_index', 'layer1'), got {ref!r}")


def _tables(tables: Table | Sequence[Table], fn: str) -> list[Table]:
    out = [tables] if isinstance(tables, Table) else list(tables)
    if not out:
        raise NtkplastError(f"{fn}: no tables given; pass a Table or a list of Tables, one per run")
    for i, t in enumerate(out):
        if not isinstance(t, Table):
            raise NtkplastError(f"{fn}: tables[{i}] is a {type(t).__name__}, not a Table; "
                                "load one with Table.read_csv or ntkplast.analysis.analyze")
        if len(t) == 0:
            raise NtkplastError(f"{fn}: table {i} is empty; analyse the run first")
    return out


def _series(table: Table, ref: tuple[str, str], at: At,
            what: str = "metric") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(checkpoint, step, value)`` of the finite rows of one metric, sorted by checkpoint."""
    if at not in ("all", "task_end"):
        raise NtkplastError(f"at: expected 'all' or 'task_end', got {at!r}")
    metric, layer = ref
    cols = table.columns
    keep = (cols["metric"] == metric) & (cols["layer"] == layer)
    if not keep.any():
        on_layer = sorted(set(cols["metric"][cols["layer"] == layer].tolist()))
        layers = sorted(set(cols["layer"][cols["metric"] == metric].tolist()))
        hint = (f"'{metric}' exists on layer(s) {layers}" if layers else
                f"metrics on layer '{layer}': {on_layer}" if on_layer else
                f"layers in the table: {sorted(set(cols['layer'].tolist()))}")
        raise NtkplastError(f"{what}: no rows of metric '{metric}' on layer '{layer}'; {hint}")
    ckpt, step, value = cols["checkpoint"][keep], cols["step"][keep], cols["value"][keep]
    if len(np.unique(ckpt)) != len(ckpt):
        raise NtkplastError(f"{what}: '{metric}' on layer '{layer}' has several rows at one "
                            "checkpoint; is the table several runs concatenated? Pass one Table "
                            "per run as a list")
    ok = np.isfinite(value)
    if at == "task_end":
        ends = task_end_checkpoints(table)
        if len(ends) == 0:
            raise NtkplastError(f"at='task_end': the table has no {list(TASK_END_METRICS)} rows "
                                "to mark task ends; use at='all'")
        ok &= np.isin(ckpt, ends)
    order = np.argsort(ckpt[ok], kind="stable")
    return ckpt[ok][order], step[ok][order], value[ok][order]


def metric_series(table: Table, metric: str, layer: str = "all", *,
                  at: At = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(checkpoint (n,), value (n,))`` of one metric's finite values, sorted by checkpoint.

    ``at="task_end"`` keeps only checkpoints with a ``test_accuracy`` (or ``test_mse``) row
    (task ends).
    """
    ckpt, _, value = _series(table, (metric, layer), at)
    return ckpt, value


def aligned(table: Table, metrics: Sequence[MetricRef], *,
            at: At = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(checkpoint (n,), values (n, k))``: the k metrics joined on the checkpoints where all
    are finite (an inner join on the checkpoint index), sorted by checkpoint."""
    refs = [_ref(m, f"metrics[{i}]") for i, m in enumerate(metrics)]
    if not refs:
        raise NtkplastError("metrics: expected at least one metric")
    series = [_series(table, r, at, f"metrics[{i}]") for i, r in enumerate(refs)]
    common = series[0][0]
    for ckpt, _, _ in series[1:]:
        common = np.intersect1d(common, ckpt)
    values = [v[np.searchsorted(c, common)] for c, _, v in series]
    return common, np.stack(values, axis=1) if values else np.empty((len(common), 0))


# ----------------------------------------------------------------------------------- core


def _residual_ranks(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Ranks of x (..., n) minus their least-squares fit on [1, ranks of z (..., n, k)]."""
    rx = stats.rankdata(x, axis=-1)
    design = np.ones(x.shape + (1,))
    if z.shape[-1]:
        design = np.concatenate([design, stats.rankdata(z, axis=-2)], axis=-1)
    beta = np.linalg.pinv(design) @ rx[..., None]
    return rx - (design @ beta)[..., 0]


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    tol = 1e-12 * np.maximum(1.0, den)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > tol, (a * b).sum(-1) / np.where(den > tol, den, 1.0), np.nan)


def _partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    return _pearson(_residual_ranks(x, z), _residual_ranks(y, z))


def _correlate(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef,
               controls: Sequence[MetricRef], *, fn: str, lag: int = 0, difference: bool = False,
               at: At, n_boot: int, seed: int, level: float) -> CorrelationResult:
    runs = _tables(tables, fn)
    xr, yr = _ref(x, "x"), _ref(y, "y")
    zr = [_ref(c, f"controls[{i}]") for i, c in enumerate(controls)]
    if not isinstance(n_boot, int) or n_boot < 1:
        raise NtkplastError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise NtkplastError(f"level: expected a coverage in (0, 1) such as 0.95, got {level!r}")
    k, need = len(zr), len(zr) + 3
    data = []
    for i, t in enumerate(runs):
        _, v = aligned(t, [xr, yr, *zr], at=at)
        if difference:
            v = np.diff(v, axis=0)
        n = len(v) - abs(lag)
        xs, ys = (v[:n, 0], v[lag:, 1]) if lag >= 0 else (v[-lag:, 0], v[:n, 1])
        zs = v[:n, 2:] if lag >= 0 else v[-lag:, 2:]
        if n < need:
            raise NtkplastError(
                f"{fn}: run {i} has {max(n, 0)} usable checkpoint(s) with {_name(xr)} and "
                f"{_name(yr)}{' and the controls' if k else ''} both finite"
                f"{f' at lag {lag}' if lag else ''}{' after differencing' if difference else ''}"
                f"; at least {need} are needed ({k} control(s) + 3); use at='all', fewer "
                "controls or a smaller lag")
        data.append((xs, ys, zs))
    per_run = np.array([float(_partial(*d)) for d in data])
    bad = np.flatnonzero(~np.isfinite(per_run))
    if len(bad):
        raise NtkplastError(f"{fn}: correlation undefined in run {int(bad[0])}: {_name(xr)} or "
                            f"{_name(yr)} is constant over its {len(data[bad[0]][0])} checkpoints"
                            f"{' or fully explained by the controls' if k else ''}")
    # Pooled within-run test (module docstring).
    rx = np.concatenate([_residual_ranks(d[0], d[2]) for d in data])
    ry = np.concatenate([_residual_ranks(d[1], d[2]) for d in data])
    r = float(np.clip(_pearson(rx, ry), -1.0, 1.0))
    n_points = len(rx)
    df = n_points - len(data) * (k + 1) - 1
    tstat = r * np.sqrt(df / (1.0 - r * r)) if abs(r) < 1 else np.inf
    p = float(2 * stats.t.sf(abs(tstat), df))
    # Percentile bootstrap.
    rng = np.random.default_rng(seed)
    if len(data) >= 2:
        boot = per_run[rng.integers(0, len(data), (n_boot, len(data)))].mean(1)
        over = "runs"
    else:
        xs, ys, zs = data[0]
        idx = rng.integers(0, len(xs), (n_boot, len(xs)))
        boot = _partial(xs[idx], ys[idx], zs[idx])
        over = "checkpoints"
    tail = 50 * (1 - level)
    lo, hi = (np.nanpercentile(boot, [tail, 100 - tail]) if np.isfinite(boot).any()
              else (np.nan, np.nan))
    what = "partial spearman" if k else "spearman"
    label = f"{what} rho({_name(xr)}, {_name(yr)}"
    label += f" | {', '.join(map(_name, zr))})" if k else ")"
    label += (f" at lag {lag:+d}" if lag else "") + (" of first differences" if difference else "")
    label += " at task ends" if at == "task_end" else ""
    return CorrelationResult(float(per_run.mean()), float(lo), float(hi), p, len(data), n_points,
                             tuple(len(d[0]) for d in data), tuple(per_run.tolist()), over,
                             n_boot, level, label)


# ----------------------------------------------------------------------------------- public


def spearman(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef, *, lag: int = 0,
             at: At = "all", n_boot: int = 1000, seed: int = 0,
             level: float = 0.95) -> CorrelationResult:
    r"""Spearman rank correlation of two metrics across checkpoints, averaged over runs.

    ρ_r = corr(rank x_t, rank y_{t+lag}) over the common checkpoints t of run r (ties get average
    ranks; Spearman 1904); ``rho`` = (1/R) Σ_r ρ_r. Interval and p-value: module docstring.

    Args:
      tables: one Table per run (a single Table is one run).
      x, y: ``"metric"`` (layer ``"all"``) or ``("metric", "layer<l>")``.
      lag: pair x at common checkpoint t with y at t + lag (lag > 0: x leads y).
      at: ``"all"`` checkpoints or only ``"task_end"`` ones.
      n_boot: bootstrap resamples.  seed: seeds the bootstrap.  level: interval coverage.

    Raises:
      NtkplastError: no tables, an empty table, an unknown metric or layer, fewer than 3 common
        checkpoints in a run, or a constant series.
    """
    if not isinstance(lag, int | np.integer):
        raise NtkplastError(f"lag: expected an integer number of checkpoints, got {lag!r}")
    return _correlate(tables, x, y, (), fn="spearman", lag=int(lag), at=at, n_boot=n_boot,
                      seed=seed, level=level)


def partial_spearman(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef,
                     controls: Sequence[MetricRef], *, at: At = "all", n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95) -> CorrelationResult:
    r"""Partial Spearman correlation ρ_{xy·Z} of two metrics given control metrics Z, per run.

    With R_x, R_y, R_Z the within-run ranks and D = [1, R_Z] (n × (k+1)),
    e_x = R_x − D D⁺ R_x, e_y = R_y − D D⁺ R_y and ρ_r = corr(e_x, e_y) (Kendall & Stuart vol. 2,
    ch. 27); ``rho`` = mean over runs. Interval and p-value (df = N − R(k+1) − 1): module
    docstring. Needs k + 3 common checkpoints per run. Only the part of the ranks that is
    linear in the control ranks is removed: a driver that acts on x through a rank-nonlinear
    path leaves a residual correlation.

    Args:
      controls: metrics to partial out, e.g. ``["ntk_trace", ("dormant_fraction_tau0.025",
        "layer1")]``; ``[]`` gives :func:`spearman`.
      Others as in :func:`spearman`.
    """
    if isinstance(controls, str) or (isinstance(controls, tuple) and len(controls) == 2
                                     and all(isinstance(s, str) for s in controls)):
        raise NtkplastError(f"controls: expected a list of metrics, got {controls!r}; wrap it: "
                            f"[{controls!r}]")
    return _correlate(tables, x, y, list(controls), fn="partial_spearman", at=at, n_boot=n_boot,
                      seed=seed, level=level)


def lead_lag(tables: Table | Sequence[Table], x: MetricRef, y: MetricRef, *, max_lag: int = 5,
             difference: bool = False, at: At = "all", n_boot: int = 1000, seed: int = 0,
             level: float = 0.95) -> LeadLagResult:
    r"""Lagged Spearman correlation ρ(lag) = ρ(x_t, y_{t+lag}) for lag = −max_lag … max_lag.

    Lag > 0 means x leads y: a peak of |ρ| at lag L > 0 says y follows x L checkpoints later
    (lags count positions among the common checkpoints). With ``difference=True`` the series are
    first-differenced per run (Δx_t = x_{t+1} − x_t), removing the shared trend that makes
    every lag correlate. Each lag is a :func:`spearman` (same interval and p-value); ``best_lag``
    maximises |ρ|, ties to the smaller |lag|. Needs 3 + max_lag (+1 when differencing) common
    checkpoints per run.
    """
    if not isinstance(max_lag, int | np.integer) or max_lag < 0:
        raise NtkplastError(f"max_lag: expected a non-negative integer, got {max_lag!r}")
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    results = tuple(_correlate(tables, x, y, (), fn="lead_lag", lag=int(lag),
                               difference=difference, at=at, n_boot=n_boot, seed=seed,
                               level=level) for lag in lags)
    rho = np.abs([r.rho for r in results])
    by_size = np.argsort(np.abs(lags), kind="stable")
    best = int(lags[by_size[np.argmax(rho[by_size])]])
    label = (f"lead-lag spearman rho({_name(_ref(x, 'x'))}_t, {_name(_ref(y, 'y'))}_t+lag)"
             + (" of first differences" if difference else ""))
    return LeadLagResult(lags, results, best, label)


def onset(table: Table, metric: str, layer: str = "all", *,
          by: Literal["fraction", "relative", "absolute"] = "fraction", level: float = 0.5,
          direction: Literal["auto", "up", "down"] = "auto", persist: int = 1,
          at: At = "all") -> Onset:
    r"""First checkpoint at which a metric has crossed a criterion, relative to its first value v₀.

    Crossing value c (for ``direction="up"``; mirrored for ``"down"``):

    * ``by="fraction"``: c = v₀ + level·(max_t v_t − v₀), the point where the metric has made
      ``level`` of its total change (scale-free, so metrics in different units compare);
    * ``by="relative"``: c = v₀ + level·|v₀| (needs v₀ ≠ 0);
    * ``by="absolute"``: c = level.

    The onset is the first checkpoint t (t ≥ 1 for the first two) with v_s ≥ c for s = t …
    t + persist − 1 (``persist`` guards against a single noisy checkpoint). ``direction="auto"``
    picks ``"up"`` when the mean of the later values exceeds v₀ (for ``"absolute"``: when v₀ < c).
    """
    ref = _ref((metric, layer), "metric")
    ckpt, step, v = _series(_tables(table, "onset")[0], ref, at)
    if by not in ("fraction", "relative", "absolute"):
        raise NtkplastError(f"by: expected 'fraction', 'relative' or 'absolute', got {by!r}")
    if direction not in ("auto", "up", "down"):
        raise NtkplastError(f"direction: expected 'auto', 'up' or 'down', got {direction!r}")
    if not isinstance(persist, int | np.integer) or persist < 1:
        raise NtkplastError(f"persist: expected a positive integer, got {persist!r}")
    if by == "fraction" and not 0 < level <= 1:
        raise NtkplastError(f"level: with by='fraction' expected a fraction in (0, 1], got {level}")
    if len(v) < 2:
        raise NtkplastError(f"onset: {_name(ref)} has {len(v)} finite checkpoint(s); at least 2 "
                            "are needed")
    v0 = float(v[0])
    if by == "relative" and v0 == 0:
        raise NtkplastError(f"onset: {_name(ref)} starts at 0, so a relative change is undefined;"
                            " use by='fraction' or by='absolute'")
    if direction == "auto":
        direction = ("up" if v0 < level else "down") if by == "absolute" else (
            "up" if np.mean(v[1:]) > v0 else "down")
    sign = 1.0 if direction == "up" else -1.0
    if by == "fraction":
        extreme = float(v.max() if sign > 0 else v.min())
        c = v0 + level * (extreme - v0)
        beyond = sign * (v - c) >= 0 if extreme != v0 else np.zeros(len(v), bool)
    else:
        c = v0 + sign * level * abs(v0) if by == "relative" else float(level)
        beyond = sign * (v - c) >= 0
    if by != "absolute":
        beyond[0] = False
    run = np.convolve(beyond.astype(int), np.ones(int(persist), int), "valid") == persist
    hit = np.flatnonzero(run)
    t = int(hit[0]) if len(hit) else None
    return Onset(metric, layer, None if t is None else int(ckpt[t]),
                 None if t is None else int(step[t]), direction, v0, float(c), len(v))


def onset_order(tables: Table | Sequence[Table], metrics: Sequence[MetricRef], *,
                by: Literal["fraction", "relative", "absolute"] = "fraction",
                level: float = 0.5, direction: str | Sequence[str] = "auto", persist: int = 1,
                at: At = "all") -> OnsetOrder:
    """:func:`onset` of each metric in each run, and which comes first.

    E.g. ``onset_order(runs, [("jac_isometry_index", "layer2"), "ntk_effective_rank",
    "plasticity_loss"], at="task_end")`` asks whether isometry loss precedes NTK rank loss
    precedes plasticity loss. ``direction`` is one value for all or one per metric; ``by`` and
    ``level`` apply to all (``"fraction"`` compares metrics of different scales).
    """
    runs = _tables(tables, "onset_order")
    refs = tuple(_ref(m, f"metrics[{i}]") for i, m in enumerate(metrics))
    if len(refs) < 2:
        raise NtkplastError(f"metrics: expected at least 2 metrics to order, got {len(refs)}")
    dirs = [direction] * len(refs) if isinstance(direction, str) else list(direction)
    if len(dirs) != len(refs):
        raise NtkplastError(f"direction: expected one value or {len(refs)} (one per metric), "
                            f"got {len(dirs)}")
    onsets = tuple(tuple(onset(t, m, layer, by=by, level=level, direction=d, persist=persist,
                               at=at) for (m, layer), d in zip(refs, dirs)) for t in runs)
    steps = np.array([[np.nan if o.step is None else o.step for o in row] for row in onsets],
                     float)
    s = np.where(np.isnan(steps), np.inf, steps)
    precedes = (s[:, :, None] < s[:, None, :]).sum(0)
    med = np.array([np.median(s[:, i]) for i in range(len(refs))])
    order = tuple(int(i) for i in np.argsort(med, kind="stable"))
    criterion = {"fraction": f"{level:g} of the total change", "relative":
                 f"relative change {level:g}", "absolute": f"level {level:g}"}[by]
    return OnsetOrder(refs, onsets, steps, precedes,
                      order, f"{criterion}, persist {persist}" + (", task ends" if at ==
                                                                  "task_end" else ""))


# ------------------------------------------------------------------- predictor comparison

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
"""The candidates of the head-to-head test (issue 5, experiment 2): NTK conditioning against NTK
scale (trace, λ_max), spectral shape, isometry deviation, dead units and the weight norm
(Σ_l ‖m_W W_l‖_F²)^½ (``weight_norm``, written by the analysis' isometry family). Spearman's ρ is
invariant under any increasing transform, so "log" in a name only says how the metric is usually
read."""


class PredictorStat(NamedTuple):
    """One predictor's rank correlation with the target in one scope (pooled or within-run).

    Attributes:
      name: display name.  metric, layer: what was read.
      rho: the coefficient (pooled ρ, or the mean of per-run ρ_r).
      ci_low, ci_high: percentile cluster-bootstrap interval at the comparison's ``level``.
      p_value: analytic two-sided p (pooled: Spearman's t-test treating points as independent,
        optimistic under clustering; within-run: one-sample t-test of ρ_r over runs, NaN with
        fewer than 2 runs).
      p_boot: two-sided bootstrap p, 2 min(#{ρ* ≤ 0} + 1, #{ρ* ≥ 0} + 1) / (B + 1), capped at 1.
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
    p_boot: float
    n_points: int
    n_runs: int


class Contrast(NamedTuple):
    """Paired bootstrap contrast Δ = |ρ_best| − |ρ_other| (same resamples for both)."""

    best: str
    other: str
    diff: float
    ci_low: float
    ci_high: float
    p_boot: float

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
                 f"{'p_boot':<8} {'n_pts':<6} {'runs':<5} |rho_best|-|rho| [{pct} CI]"]
        for s in self.stats:
            c = diffs.get(s.name)
            tail = ("best" if s.name == self.best else
                    f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                    + (" *" if c.significant else "") if c is not None else "")
            lines.append(f"  {s.name:<{width}}  {s.rho:+.3f}  [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"
                         f"  {s.p_value:<8.2g} {s.p_boot:<8.2g} {s.n_points:<6d} {s.n_runs:<5d} "
                         f"{tail}")
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
      runs: ``(method, seed index)`` of every run.  ci_over: ``"runs"`` (cluster bootstrap) or
      ``"tasks"`` (one run: points resampled).  complete_cases: whether every predictor used the
      same points.  n_boot, level: bootstrap settings.
    """

    target: tuple[str, str]
    lag: int
    pooled: PredictorRanking
    within: PredictorRanking
    runs: tuple[tuple[str, int], ...]
    ci_over: str
    complete_cases: bool
    n_boot: int
    level: float

    def summary(self) -> str:
        methods = sorted({m for m, _ in self.runs})
        head = (f"which task-end metric predicts {_name(self.target)} {self.lag:+d} task(s) "
                f"later? Spearman rho; {100 * self.level:g}% percentile bootstrap over "
                f"{self.ci_over} ({self.n_boot} resamples); {len(self.runs)} run(s) of "
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


def _weighted_ranks(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (B, N) of v (N,) in the samples where point i appears w[b, i] times."""
    _, inv = np.unique(v, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    gw = np.add.reduceat(w[:, order], starts, axis=1)
    rank = np.cumsum(gw, axis=1) - gw + (gw + 1) / 2
    return rank[:, inv]


def _weighted_spearman(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spearman ρ (B,) of the samples in which (x_i, y_i) appears w[b, i] ≥ 0 times; NaN where
    x or y is constant over the sample. Integer weights make this exactly ``spearmanr`` of the
    expanded sample (a run drawn k times contributes its points k times)."""
    rx, ry = _weighted_ranks(x, w), _weighted_ranks(y, w)
    tot = w.sum(1, keepdims=True)
    dx = rx - (w * rx).sum(1, keepdims=True) / tot
    dy = ry - (w * ry).sum(1, keepdims=True) / tot
    den = np.sqrt((w * dx * dx).sum(1) * (w * dy * dy).sum(1))
    ok = den > 1e-12 * tot[:, 0] ** 2
    return np.where(ok, (w * dx * dy).sum(1) / np.where(ok, den, 1.0), np.nan)


def _p_boot(boot: np.ndarray) -> float:
    b = boot[np.isfinite(boot)]
    if not len(b):
        return float("nan")
    return float(min(1.0, 2 * (min((b <= 0).sum(), (b >= 0).sum()) + 1) / (len(b) + 1)))


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    if not np.isfinite(boot).any():
        return float("nan"), float("nan")
    tail = 50 * (1 - level)
    lo, hi = np.nanpercentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


def _task_values(table: Table, ends: np.ndarray, ref: tuple[str, str], what: str) -> np.ndarray:
    """Values (T,) of one metric at the task-end checkpoints ``ends`` (NaN where absent);
    layer ``"mean"`` averages the finite per-layer rows (all layers but ``"all"``)."""
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
            hint += ("; ntkplast.analysis writes no weight norm (('weight_chi', 'mean'), the layer "
                     "mean of ‖W_l‖_F² / min(fan_in, fan_out), is a scale proxy it does write)")
        raise NtkplastError(f"{what}: no rows of '{metric}' on layer '{layer}'; {hint}")
    ckpt, value = c["checkpoint"][sel], c["value"][sel].astype(np.float64)
    if layer != "mean" and len(np.unique(ckpt)) != len(ckpt):
        raise NtkplastError(f"{what}: '{metric}' on layer '{layer}' has several rows at one "
                            "checkpoint; is a table several runs concatenated? Pass one Table "
                            "per seed")
    pos = np.clip(np.searchsorted(ends, ckpt), 0, len(ends) - 1)
    keep = (ends[pos] == ckpt) & np.isfinite(value)
    total = np.bincount(pos[keep], value[keep], minlength=len(ends))
    count = np.bincount(pos[keep], minlength=len(ends))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _predictor_points(tables: Mapping[str, Sequence[Table]] | Sequence[Table] | Table,
                      refs: Sequence[tuple[str, str]], names: Sequence[str],
                      target: tuple[str, str], lag: int):
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


def compare_predictors(tables: Mapping[str, Sequence[Table]] | Sequence[Table] | Table,
                       predictors: Mapping[str, PredictorSpec] | None = None,
                       target: MetricRef = "online_accuracy", *, lag: int = 1,
                       complete_cases: bool = True, n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95) -> PredictorComparison:
    r"""Which task-end metric best predicts plasticity on a later task? Rank correlations with
    cluster-bootstrap intervals and a paired test of "better".

    Data: runs r = (method, seed) with task ends t = 0 … T_r − 1 (checkpoints with a
    ``test_accuracy`` row). For predictor p, x_{r,t} is its value at the end of task t (layer
    ``"mean"``: the mean over its per-layer rows) and y_{r,t+lag} the target at the end of task
    t + lag (``online_accuracy``: accuracy while learning task t + lag). Points with a non-finite
    value are dropped; with ``complete_cases`` a point is kept only where every predictor and
    the target are finite, so all predictors are compared on the same points.

    * Pooled: ρ_p = Spearman's ρ (Pearson correlation of average ranks; Spearman 1904) over all
      N pooled points of all methods, seeds and tasks — between-method and between-seed
      differences count, as in "across methods, tasks and seeds". p: t = ρ √((N−2)/(1−ρ²)),
      Student-t with N − 2 df (scipy's ``spearmanr`` p), which treats points as independent.
    * Within-run: ρ̄_p = (1/R') Σ_r ρ_{p,r} over the R' runs where the per-run ρ is defined
      (≥ 3 points, neither series constant) — only the task-to-task co-variation inside a run
      counts. p: one-sample t-test of the ρ_{p,r} over runs.
    * Intervals: percentile bootstrap (Efron & Tibshirani 1993, ch. 13) with whole runs as the
      resampling unit — the cluster bootstrap (Field & Welsh 2007; Cameron, Gelbach & Miller
      2008), because tasks of one run are dependent. Resample b draws R runs with replacement;
      ρ*_p is recomputed on the union of the drawn runs (a run drawn k times contributes k copies
      of its points) and ρ̄*_p is the mean of the drawn runs' ρ_{p,r}. With a single run the
      points (tasks) are resampled instead (``ci_over="tasks"``; optimistic, tasks are
      autocorrelated). p_boot = min(1, 2 (min(#{ρ* ≤ 0}, #{ρ* ≥ 0}) + 1) / (B + 1)).
    * Better: best = argmax_p |ρ_p| (ties to the earlier predictor). For every other q the
      paired contrast Δ_q = |ρ_best| − |ρ_q| is recomputed on the same resamples; its percentile
      interval lying above 0 is the tested statement "best predicts better than q". Selecting
      the best on the same data makes Δ optimistic when predictors are close; read marginal
      contrasts with that in mind.

    Args:
      tables: method name → one Table per seed (``run_grid(...).tables``); a list of Tables is
        one method.
      predictors: display name → ``"metric"`` or ``(metric, layer)``, layer ``"all"``,
        ``"layer<l>"`` or ``"mean"``; default :data:`PREDICTORS`.
      target: the plasticity metric, ``"metric"`` or ``(metric, layer)``.
      lag: target task = predictor task + lag (1: the next task; 0: the same task; negative:
        the target leads).
      complete_cases: use the same points for every predictor (see above).
      n_boot: bootstrap resamples B.  seed: seeds the resampling.  level: interval coverage.

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
    if not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise NtkplastError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise NtkplastError(f"level: expected a coverage in (0, 1) such as 0.95, got {level!r}")
    runs = _predictor_points(tables, refs, names, tref, int(lag))
    n_runs, n_pred = len(runs), len(refs)
    keep_all = [np.isfinite(y) & np.isfinite(xs).all(1) for _, xs, y in runs]

    # Per-run coefficients and each predictor's pooled points.
    pooled_pts, per_run = [], np.full((n_runs, n_pred), np.nan)
    for p, name in enumerate(names):
        xs, ys, cl = [], [], []
        for r, (_, x, y) in enumerate(runs):
            keep = keep_all[r] if complete_cases else np.isfinite(y) & np.isfinite(x[:, p])
            xs.append(x[keep, p])
            ys.append(y[keep])
            cl.append(np.full(int(keep.sum()), r))
            if keep.sum() >= 3:
                per_run[r, p] = _weighted_spearman(x[keep, p], y[keep], np.ones((1, keep.sum())))[0]
        x, y, cl = np.concatenate(xs), np.concatenate(ys), np.concatenate(cl)
        if len(x) < 4:
            raise NtkplastError(
                f"compare_predictors: {len(x)} usable (predictor, target) point(s) for {name!r} "
                f"at lag {lag:+d} over {n_runs} run(s); at least 4 are needed. Runs need more "
                f"than {abs(lag)} task ends with finite {_name(tref)}"
                + (" and every predictor finite (try complete_cases=False)"
                   if complete_cases else ""))
        for series, what in ((x, f"predictor {name!r} ({_name(refs[p])})"),
                             (y, f"target {_name(tref)}")):
            if np.all(series == series[0]):
                raise NtkplastError(f"compare_predictors: {what} is constant ({series[0]:g}) "
                                    f"over all {len(x)} points, so no rank correlation exists; "
                                    "drop it from predictors")
        pooled_pts.append((x, y, cl))

    # Cluster bootstrap: one draw of run multiplicities shared by all predictors (paired).
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    ci_over = "runs" if n_runs >= 2 else "tasks"
    n_clusters = n_runs if n_runs >= 2 else len(pooled_pts[0][0])
    draws = rng.integers(0, n_clusters, (n_boot, n_clusters))
    counts = np.zeros((n_boot, n_clusters))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    boot_pooled = np.empty((n_boot, n_pred))
    rho_pooled = np.empty(n_pred)
    for p, (x, y, cl) in enumerate(pooled_pts):
        rho_pooled[p] = _weighted_spearman(x, y, np.ones((1, len(x))))[0]
        unit = cl if ci_over == "runs" else np.arange(len(x))
        if ci_over == "tasks" and len(x) != n_clusters:   # complete_cases=False, one run
            sub = rng.integers(0, len(x), (n_boot, len(x)))
            w = np.zeros((n_boot, len(x)))
            np.add.at(w, (np.arange(n_boot)[:, None], sub), 1.0)
        else:
            w = counts[:, unit]
        step = max(1, 2_000_000 // max(len(x), 1))
        boot_pooled[:, p] = np.concatenate([_weighted_spearman(x, y, w[i:i + step])
                                            for i in range(0, n_boot, step)])
    defined = np.isfinite(per_run)
    if ci_over == "runs":
        rr = np.where(defined, per_run, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot_within = (counts @ rr) / (counts @ defined.astype(float))
    else:
        boot_within = boot_pooled.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rho_within = np.nanmean(per_run, axis=0)

    def p_pooled(rho: float, n: int) -> float:
        if abs(rho) >= 1:
            return 0.0
        t = rho * np.sqrt((n - 2) / (1 - rho * rho))
        return float(2 * stats.t.sf(abs(t), n - 2))

    def p_within(col: np.ndarray) -> float:
        col = col[np.isfinite(col)]
        if len(col) < 2:
            return float("nan")
        sd = col.std(ddof=1)
        if sd == 0:
            return 0.0 if col.mean() != 0 else 1.0
        return float(2 * stats.t.sf(abs(col.mean()) / (sd / np.sqrt(len(col))), len(col) - 1))

    def ranking(scope: str, rho: np.ndarray, boot: np.ndarray, pvals: list[float],
                n_pts: list[int], n_r: list[int]) -> PredictorRanking:
        st = tuple(PredictorStat(names[p], refs[p][0], refs[p][1], float(rho[p]),
                                 *_interval(boot[:, p], level), pvals[p], _p_boot(boot[:, p]),
                                 n_pts[p], n_r[p]) for p in range(n_pred))
        size = np.where(np.isfinite(rho), np.abs(rho), -1.0)
        best = int(np.argmax(size))
        contrasts = []
        for q in range(n_pred):
            if q == best:
                continue
            d = np.abs(boot[:, best]) - np.abs(boot[:, q])
            contrasts.append(Contrast(names[best], names[q], float(size[best] - abs(rho[q])),
                                      *_interval(d, level), _p_boot(d)))
        return PredictorRanking(scope, st, names[best], tuple(contrasts), level)

    n_pts = [len(pt[0]) for pt in pooled_pts]
    pooled = ranking("pooled over methods, seeds and tasks", rho_pooled, boot_pooled,
                     [p_pooled(float(r), n) for r, n in zip(rho_pooled, n_pts)], n_pts,
                     [len(np.unique(pt[2])) for pt in pooled_pts])
    within = ranking("within-run (mean of per-run rho)", rho_within, boot_within,
                     [p_within(per_run[:, p]) for p in range(n_pred)], n_pts,
                     [int(defined[:, p].sum()) for p in range(n_pred)])
    return PredictorComparison(tref, int(lag), pooled, within, tuple(r[0] for r in runs),
                               ci_over, bool(complete_cases), n_boot, float(level))


def predictor_lead_lag(tables: Mapping[str, Sequence[Table]] | Sequence[Table] | Table,
                       predictors: Mapping[str, PredictorSpec] | None = None,
                       target: MetricRef = "online_accuracy", *, max_lag: int = 3,
                       complete_cases: bool = True, n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95) -> PredictorLeadLag:
    """:func:`compare_predictors` at lag = −max_lag … max_lag (tasks): ρ(x_t, y_{t+lag}).

    Lag > 0: the predictor leads the target. A predictor that drives plasticity should peak at
    a positive lag; a peak at a negative lag says the metric follows the loss of plasticity.
    Each lag is resampled with the same ``seed``. Needs more than ``max_lag`` tasks per run.
    """
    if not isinstance(max_lag, int | np.integer) or max_lag < 0:
        raise NtkplastError(f"max_lag: expected a non-negative integer, got {max_lag!r}")
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    return PredictorLeadLag(lags, tuple(
        compare_predictors(tables, predictors, target, lag=int(lag),
                           complete_cases=complete_cases, n_boot=n_boot, seed=seed, level=level)
        for lag in lags))
