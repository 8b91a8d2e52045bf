r"""Relating metrics across checkpoints and runs: rank correlation, partial correlation, lead–lag.

Functions a researcher calls on one :class:`~ntkplast.table.Table` per run (seed) to test a
hypothesis such as "NTK effective rank falls as plasticity is lost" or "isometry loss precedes NTK
rank loss precedes plasticity loss". A metric is named ``"metric"`` (layer ``"all"``) or
``("metric", "layer<l>")``. Two metrics are compared on the checkpoints where both are finite
(``at="task_end"`` keeps only task-end checkpoints, those with a ``test_accuracy`` row).

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
from scipy import stats

from ntkplast.errors import NtkplastError
from ntkplast.table import Table

__all__ = ["MetricRef", "CorrelationResult", "LeadLagResult", "Onset", "OnsetOrder",
           "metric_series", "aligned", "spearman", "partial_spearman", "lead_lag", "onset",
           "onset_order"]

MetricRef = str | tuple[str, str]
"""``"metric"`` (layer ``"all"``) or ``("metric", "layer")``."""
At = Literal["all", "task_end"]
TASK_END_METRIC = "test_accuracy"


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
        ends = cols["checkpoint"][(cols["metric"] == TASK_END_METRIC) & (cols["layer"] == "all")
                                  & np.isfinite(cols["value"])]
        if len(ends) == 0:
            raise NtkplastError(f"at='task_end': the table has no '{TASK_END_METRIC}' rows to "
                                "mark task ends; use at='all'")
        ok &= np.isin(ckpt, ends)
    order = np.argsort(ckpt[ok], kind="stable")
    return ckpt[ok][order], step[ok][order], value[ok][order]


def metric_series(table: Table, metric: str, layer: str = "all", *,
                  at: At = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(checkpoint (n,), value (n,))`` of one metric's finite values, sorted by checkpoint.

    ``at="task_end"`` keeps only checkpoints with a ``test_accuracy`` row (task ends).
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
