"""The spectra themselves: NTK eigenvalue decay, layer-Jacobian singular-value distributions,
each layer's share of the kernel, and an NTK quantity against the next task's plasticity.

The first two draw the raw arrays an analysis writes to ``spectra.npz``
(:mod:`ntkplast.analysis`): ``ntk_eigenvalues/<ckpt>``, ``ntk_layer_eigenvalues/<l>/<ckpt>``,
``ntk_infinite_eigenvalues``, ``jac_sv/<l>/<ckpt>`` and ``io_sv/<ckpt>`` (pass the mapping
:func:`ntkplast.io.files.load_arrays` returns). Checkpoints are coloured by task on one sequential
scale (viridis, readable under colour-vision deficiencies and in greyscale); the initial
checkpoint is drawn grey and dashed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

from ntkplast import spectra as spectra_lib
from ntkplast import stats
from ntkplast.errors import NtkplastError
from ntkplast.figures._style import layers_of, style, subplots, task_boundaries
from ntkplast.table import Table, per_task, task_end_checkpoints

Spectra = Mapping[str, np.ndarray]
LOG_QUANTITIES = ("ntk_condition", "ntk_trace", "ntk_lambda_max", "ntk_lambda_min")
"""Quantities :func:`kernel_vs_plasticity` puts on a log axis by default (when all positive)."""
MAX_CURVES = 7
"""Default number of task ends drawn (plus the initial checkpoint)."""


def _by_checkpoint(arrays: Spectra, prefix: str) -> dict[int, np.ndarray]:
    """``{ckpt: array}`` of the keys ``<prefix>/<ckpt>``."""
    out = {}
    for key, value in arrays.items():
        head, _, tail = key.rpartition("/")
        if head == prefix and tail.isdigit():
            out[int(tail)] = np.asarray(value)
    return out


def _by_layer(arrays: Spectra, prefix: str) -> dict[int, dict[int, np.ndarray]]:
    """``{layer: {ckpt: array}}`` of the keys ``<prefix>/<layer>/<ckpt>``."""
    layers = {int(k.split("/")[1]) for k in arrays
              if k.startswith(prefix + "/") and k.count("/") == 2 and k.split("/")[1].isdigit()}
    return {li: _by_checkpoint(arrays, f"{prefix}/{li}") for li in sorted(layers)}


def _tasks(table: Table | None) -> dict[int, int]:
    """Checkpoint → task index, from the table's rows."""
    if table is None:
        return {}
    c = table.columns
    return {int(k): int(t) for k, t in zip(c["checkpoint"], c["task"], strict=True)}


def choose_checkpoints(available: Sequence[int], table: Table | None = None,
                       checkpoints: Sequence[int] | None = None,
                       every: int | None = None) -> list[int]:
    """The checkpoints a spectrum figure draws: ``checkpoints`` when given (those with
    spectra), else the initial checkpoint and the end of every ``every``-th task (default: a
    step that draws at most :data:`MAX_CURVES` task ends, the last task always included), else
    up to :data:`MAX_CURVES` + 1 evenly spaced ones."""
    have = sorted(set(int(a) for a in available))
    if not have:
        raise NtkplastError("figures: no spectra in the analysis; run `ntkplast analyze` with "
                            "the ntk and isometry families")
    if checkpoints is not None:
        chosen = [int(c) for c in checkpoints if int(c) in have]
        if not chosen:
            raise NtkplastError(f"figures: none of checkpoints {list(checkpoints)} has spectra; "
                                f"available: {have}")
        return chosen
    ends = [int(e) for e in task_end_checkpoints(table) if int(e) in have] if table else []
    if ends:
        step = every or max(1, math.ceil(len(ends) / MAX_CURVES))
        picked = ends[step - 1::step]
        if picked[-1] != ends[-1]:
            picked.append(ends[-1])
        return sorted(set(have[:1] + picked))
    idx = np.unique(np.linspace(0, len(have) - 1, min(len(have), MAX_CURVES + 1)).astype(int))
    return [have[i] for i in idx]


class _TaskColours:
    """Colour by task on viridis; the initial checkpoint grey and dashed."""

    def __init__(self, table: Table | None, chosen: Sequence[int]):
        self.task = _tasks(table)
        tasks = [self.task.get(c, c) for c in chosen]
        self.norm = matplotlib.colors.Normalize(min(tasks), max(max(tasks), min(tasks) + 1))
        self.cmap = matplotlib.colormaps["viridis"]
        self.first = chosen[0] if chosen and chosen[0] == 0 else None

    def __call__(self, ckpt: int) -> dict[str, Any]:
        if ckpt == self.first:
            return {"color": "0.55", "ls": "--"}
        return {"color": self.cmap(self.norm(self.task.get(ckpt, ckpt)))}

    def label(self, ckpt: int) -> str:
        if ckpt == self.first:
            return "init"
        return f"task {self.task[ckpt]} end" if ckpt in self.task else f"checkpoint {ckpt}"

    def colorbar(self, fig: Any, axes: Any) -> None:
        if self.task:
            bar = fig.colorbar(matplotlib.cm.ScalarMappable(self.norm, self.cmap),
                               ax=axes, shrink=0.8, pad=0.02)
            bar.set_label("task")


def _grid(panels: int, width: float = 3.4, height: float = 3.0) -> tuple[Any, list[Any]]:
    ncols = min(4, panels)
    nrows = math.ceil(panels / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(width * ncols + 1.2, height * nrows + 0.8),
                         squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def _decay(ax: Any, lam: np.ndarray, label: str, **kw: Any) -> float:
    """log λ_i against log i for the λ_i above the rounding floor N·ε₃₂·λ_max (those below are
    not drawn); returns the fitted decay exponent α over the default window (ranks 2 … ⌈N/2⌉
    above the floor; :func:`ntkplast.spectra.summary_from_eigenvalues`), NaN when fewer than
    two ranks there are above it."""
    lam = np.sort(np.asarray(lam, np.float64))[::-1]
    eps = len(lam) * float(np.finfo(np.float32).eps)
    alpha = spectra_lib.summary_from_eigenvalues(lam, eps=eps).decay_exponent
    ranks = np.arange(1, len(lam) + 1)
    pos = lam > eps * lam[0]  # below it: rounding, not spectrum
    ax.loglog(ranks[pos], lam[pos], label=f"{label} (α = {alpha:.2f})", lw=1.2, **kw)
    return alpha


def ntk_spectra(arrays: Spectra, table: Table | None = None, *,
                checkpoints: Sequence[int] | None = None, every: int | None = None,
                title: str = "") -> Any:
    r"""Eigenvalue decay of the empirical NTK on the probe set: log λ_i against log i.

    Left panel, the output-traced kernel Θ; then one small panel per weight layer's part Θ_l
    (Θ = Σ_l Θ_l). One curve per chosen checkpoint (:func:`choose_checkpoints`), coloured by
    task; the shaded band is the rank window of the power-law fit λ_i ∝ i^{−α} whose α each
    legend entry gives (ntkplast's ``ntk_decay_exponent``; NaN when the spectrum has fallen below
    the rounding floor N·ε·λ_max, under which nothing is drawn); the infinite-width NTK's spectrum
    (black, dotted) where the analysis computed it (neural-tangents installed).

    What to look for: plasticity loss in the seed paper's reading shows as a spectrum that
    steepens (α grows) and a head that separates from the bulk — fewer directions carry the
    kernel, so fewer function changes are cheap; a curve that stays on the infinite-width
    reference means the network is still in the kernel regime. In the small panels, which
    layer's part collapses first.
    """
    total = _by_checkpoint(arrays, "ntk_eigenvalues")
    layers = _by_layer(arrays, "ntk_layer_eigenvalues")
    chosen = choose_checkpoints(list(total), table, checkpoints, every)
    colours = _TaskColours(table, chosen)
    fig, axes = _grid(1 + len(layers))
    infinite = arrays.get("ntk_infinite_eigenvalues")
    n = len(total[chosen[0]])
    lo, hi = spectra_lib.default_fit_window(n)
    for ax, (name, series) in zip(axes, [("Θ (all layers)", total)]
                                  + [(f"Θ_{li} (layer {li})", s) for li, s in layers.items()]):
        ax.axvspan(lo, hi, color="0.93", zorder=0, lw=0)
        for c in chosen:
            if c in series:
                _decay(ax, series[c], colours.label(c), **colours(c))
        ax.set_title(name)
        ax.set_xlabel("rank i")
        ax.set_ylabel("eigenvalue λ_i")
    if infinite is not None:
        _decay(axes[0], infinite, "infinite width", color="k", ls=":")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
               fontsize=7, title=f"α: decay exponent fitted over the grey band, ranks {lo}–{hi}",
               title_fontsize=7)
    colours.colorbar(fig, axes)
    if title:
        fig.suptitle(title)
    return fig


def _ecdf(ax: Any, values: np.ndarray, label: str, **kw: Any) -> float:
    """Empirical CDF of the σ of every input (rows of ``values``) on a log axis. A σ at or
    below the rounding level n·ε·σ_max of its row (n σ per row, ε of the array's dtype) is a
    zero; zeros cannot sit on a log axis, so they lift the curve's start."""
    values = np.asarray(values)
    rows = values.reshape(-1, values.shape[-1]).astype(np.float64)
    eps = float(np.finfo(values.dtype).eps) if values.dtype.kind == "f" else 0.0
    floor = rows.shape[1] * eps * rows.max(axis=1, keepdims=True)
    v = np.sort(np.where(rows > floor, rows, 0.0).ravel())
    zeros = float(np.mean(v <= 0))
    pos = v[v > 0]
    if len(pos):
        y = zeros + (1 - zeros) * np.arange(1, len(pos) + 1) / len(pos)
        ax.step(pos, y, where="post", label=label, lw=1.2, **kw)
    return zeros


def jacobian_spectra(arrays: Spectra, table: Table | None = None, *,
                     checkpoints: Sequence[int] | None = None, every: int | None = None,
                     title: str = "") -> Any:
    r"""Distribution of the layer-Jacobian singular values at chosen checkpoints.

    One panel per layer (σ of J_l = ∂a_l/∂a_{l−1} over the analysis' spectra subsample of probe
    inputs, all pooled) and one for the input–output Jacobian ∂f/∂x: the empirical CDF of σ on
    a log axis, with σ = 1 marked. Zeros (inactive ReLU rows; σ at the rounding level) cannot
    sit on a log axis: they raise the curve's left end, and each panel's title gives their share
    at the first and the last checkpoint drawn.

    What to look for: dynamical isometry (Pennington, Schoenholz & Ganguli 2017) is a CDF that
    jumps at σ = 1; drift away from it shows as the curve spreading (a wider bulk), sliding left
    (contracting layers) or right (expanding), or a growing share of zeros (dead directions) —
    seen across task shifts, not only through the summary ``jac_isometry_index``.
    """
    layers = _by_layer(arrays, "jac_sv")
    io = _by_checkpoint(arrays, "io_sv")
    panels = [(f"layer {li} Jacobian", s) for li, s in layers.items()]
    if io:
        panels.append(("input–output Jacobian", io))
    if not panels:
        raise NtkplastError("figures: no Jacobian spectra (jac_sv, io_sv) in the analysis; run "
                            "`ntkplast analyze` with the isometry family")
    available = set().union(*(s.keys() for _, s in panels))
    chosen = choose_checkpoints(sorted(available), table, checkpoints, every)
    colours = _TaskColours(table, chosen)
    fig, axes = _grid(len(panels))
    for ax, (name, series) in zip(axes, panels):
        zeros = [_ecdf(ax, series[c], colours.label(c), **colours(c)) for c in chosen
                 if c in series]
        ax.axvline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.01)
        ax.set_title(f"{name}\nzeros {zeros[0]:.0%} → {zeros[-1]:.0%}" if zeros else name)
        ax.set_xlabel("singular value σ (dotted: σ = 1)")
        ax.set_ylabel("fraction ≤ σ")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
               fontsize=7, title="zeros (first → last checkpoint drawn): σ ≤ n·ε·σ_max of its "
               "input, the rounding level", title_fontsize=7)
    colours.colorbar(fig, axes)
    if title:
        fig.suptitle(title)
    return fig


def ntk_layer_shares(table: Table, title: str = "") -> Any:
    r"""Each layer's share of the kernel's trace, tr Θ_l / tr Θ (stacked; the shares sum to 1),
    against the training step, beside each hidden layer's dead-unit fraction (τ = 0).

    What to look for: a layer whose share shrinks while its dead fraction grows has stopped
    contributing function-space directions — the kernel then leans on the other layers; whether
    the shift comes before or after the plasticity loss is what the onset analysis tests.
    """
    layers = [layer for layer in layers_of(table, "ntk_trace_share") if layer != "all"]
    if not layers:
        raise NtkplastError("figures: no ntk_trace_share rows; run `ntkplast analyze` with the "
                            "ntk family")
    fig, (a, b) = subplots(1, 2, figsize=(11, 3.8), sharex=True)
    steps = None
    shares = []
    for layer in layers:
        s, v = table.series("ntk_trace_share", layer)
        steps = s if steps is None else steps
        if len(s) != len(steps) or np.any(s != steps):
            raise NtkplastError(f"figures: ntk_trace_share of {layer} is not at the same "
                                "checkpoints as the other layers")
        shares.append(v)
    a.stackplot(steps, np.asarray(shares), labels=layers,
                colors=[style(i)["color"] for i in range(len(layers))], alpha=0.85)
    a.set_ylim(0, 1)
    a.set_ylabel("share of tr Θ")
    a.set_title("(a) each layer's part of the NTK")
    a.legend(fontsize=7, loc="lower left", ncol=2)
    dead = [layer for layer in layers_of(table, "dormant_fraction_tau0") if layer != "all"]
    for i, layer in enumerate(dead):
        s, v = table.series("dormant_fraction_tau0", layer)
        b.plot(s, v, marker=".", ms=3, label=layer, **style(i))
    b.set_ylabel("dead-unit fraction (τ = 0)")
    b.set_title("(b) dormancy" + ("" if dead else ": not analysed"))
    if dead:
        b.legend(fontsize=7)
    for ax in (a, b):
        task_boundaries(ax, table)
        ax.set_xlabel("training step (grey lines: task ends)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _label(ref: tuple[str, str]) -> str:
    return ref[0] if ref[1] == "all" else f"{ref[0]} ({ref[1]})"


def kernel_vs_plasticity(runs: Mapping[str, Sequence[Table]],
                         quantity: stats.MetricRef = "ntk_condition",
                         target: stats.MetricRef = "plasticity_score", *,
                         log_x: bool | None = None, trend: stats.Trend = "difference",
                         level: float = 0.95, title: str = "") -> Any:
    r"""An NTK or isometry quantity at the end of task t against the plasticity measure of task
    t + 1, one point per (method, seed, task), coloured by method.

    The legend gives, per method and pooled over all, Spearman's ρ with its delete-one-run
    jackknife interval and R, exactly as :func:`ntkplast.stats.compare_predictors` computes it
    for this one predictor at lag 1 with the same ``trend`` control (default: first differences
    with the task position partialled out — the points are the levels, the ρ is of their
    task-to-task changes, so a shared trend does not count).

    What to look for: a monotone cloud whose ρ interval excludes 0 — inside each method, not
    only between methods (a between-method gap alone can come from anything the methods do
    differently); compare the colours' slopes with the pooled one.
    """
    if not isinstance(runs, Mapping) or not runs:
        raise NtkplastError("kernel_vs_plasticity: expected {method: [Table per seed]}")
    qref = quantity if isinstance(quantity, tuple) else (quantity, "all")
    tref = target if isinstance(target, tuple) else (target, "all")
    fig, ax = subplots(figsize=(6.2, 4.6))

    def rho(tables: Mapping[str, Sequence[Table]]) -> str:
        try:
            s = stats.compare_predictors(tables, {"x": qref}, tref, lag=1, trend=trend,
                                         level=level).pooled.stats[0]
        except NtkplastError:
            return "ρ n/a"
        return f"ρ = {s.rho:+.2f} [{s.ci_low:+.2f}, {s.ci_high:+.2f}], R = {s.n_runs}"

    xs = []
    for i, (method, tables) in enumerate(runs.items()):
        x = per_task(list(tables), *qref)[:, :-1]
        y = per_task(list(tables), *tref)[:, 1:]
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=12, alpha=0.7, color=style(i)["color"],
                   label=f"{method}: {rho({method: tables})}")
        xs.append(x[ok])
    if not any(len(x) for x in xs):
        matplotlib.pyplot.close(fig)
        raise NtkplastError(f"kernel_vs_plasticity: no task end has both {_label(qref)} and "
                            f"{_label(tref)} of the next task; analyse with the families that "
                            "write them")
    if len(runs) > 1:
        ax.plot([], [], " ", label=f"pooled: {rho(runs)}")
    if log_x is None:
        log_x = qref[0] in LOG_QUANTITIES and bool(np.all(np.concatenate(xs) > 0))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(f"{_label(qref)} at the end of task t")
    ax.set_ylabel(f"{_label(tref)} of task t + 1")
    ax.legend(fontsize=7, title=f"Spearman ρ of task-to-task changes ({stats.TREND_TEXT[trend]}), "
              f"{100 * level:g}% jackknife-t interval over runs; the points show the levels",
              title_fontsize=6)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
