# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The paper's claims, re-tested in its own setting, where plasticity is lost
#
# The seed paper's setting (`configs/paper/*.toml`): a 4×512 ReLU MLP, orthogonal
# initialisation, Adam at lr 1e-4, eight seeds; AdamO at the paper's λ (1e-3 on its unhalved
# ‖WᵀW − I‖²_F, λ = 2e-3 in ntkplast's ½-convention) with a sweep λ_paper ∈ {1e-4, 1e-3, 1e-2,
# 1e-1}, and the ten other methods at their defaults. Each claim gets a statistic with its
# interval (R runs beside it) and a figure:
#
# * claim 1, conditioning not scale: NTK condition number, decay exponent, effective rank, trace
#   and λ_max (with isometry deviation, dead fraction and weight norm) as predictors of the next
#   task's plasticity measure and of its loss against the common baseline, pooled and within-run;
# * claim 2, isometry as the mechanism: which of isometry deviation, NTK conditioning, dead
#   fraction, weight norm and feature rank passes half its change first in each plain-Adam run,
#   and each one's lead time relative to the plasticity measure;
# * claim "partial measures": per method, the drift from initialisation of four isometry
#   measures (layer Jacobian, input–output Jacobian, weight spectrum, NTK conditioning);
# * claim 3, over 100 tasks: every method's plasticity loss against the common baseline;
# * claim 4, reactivation: the dead-unit fraction per method, its peak and its final value.
#
# Training runs every checkpoint; the analysis takes the plasticity family at every task end
# and the NTK, isometry and dormancy families at the initialisation and every `--analyse-every`-th
# task end, into each run's `analysis_plasticity/` and `analysis_theory/` (not `analysis/`, so
# `ntkplast analyze` there stays free for the every-checkpoint analysis). Measured costs are in
# paper_notes.md. `--full` is the full size, for a GPU or a
# cluster. Usage:
#
#     python analyses/paper_claims.py --stream random_labels
#     python analyses/paper_claims.py --stream online_permuted

# %%
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ntkplast import analysis, figures, stats, training
from ntkplast.errors import NtkplastError
from ntkplast.experiments import grid as grid_lib
from ntkplast.experiments import report, sweep
from ntkplast.experiments.scripts import repository_root, script_args
from ntkplast.table import Table

ROOT = repository_root(globals())
STREAMS = {"random_labels": ROOT / "configs/paper/random_labels_mnist5k.toml",
           "online_permuted": ROOT / "configs/paper/online_permuted_mnist5k.toml"}
FULL = {"random_labels": ["stream.train_size=1024", "train.steps_per_task=1000",
                          "stream.num_tasks=200"],
        "online_permuted": ["stream.train_size=4000", "train.batch_size=1",
                            "stream.num_tasks=300"]}
CLAIM1 = {"NTK condition number": ("ntk_condition", "all"),
          "NTK decay exponent": ("ntk_decay_exponent", "all"),
          "NTK effective rank": ("ntk_effective_rank", "all"),
          "NTK trace": ("ntk_trace", "all"), "NTK λ_max": ("ntk_lambda_max", "all"),
          "isometry deviation": ("jac_isometry_deviation", "mean"),
          "dead fraction": ("dormant_fraction_tau0", "mean"), "weight norm": ("weight_norm", "all")}
ONSETS = (("plasticity_score", "all"), ("jac_isometry_deviation", "layer1"),
          ("ntk_condition", "all"), ("dormant_fraction_tau0", "layer1"), ("weight_norm", "all"),
          ("feature_effective_rank", "layer1"))
PARTIAL = (("layer-Jacobian isometry deviation", "jac_isometry_deviation", "mean"),
           ("input–output Jacobian isometry deviation", "io_isometry_deviation", "all"),
           ("weight-spectrum isometry deviation", "weight_isometry_deviation", "mean"),
           ("NTK condition number (log10)", "ntk_condition", "all"))

parser = argparse.ArgumentParser(description="The paper's claims in its own setting.")
parser.add_argument("--stream", choices=sorted(STREAMS), default="random_labels")
parser.add_argument("--full", action="store_true", help="the full size (a GPU or a cluster)")
parser.add_argument("--methods", default=None, help="comma-separated subset of the grid's")
parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 8)")
parser.add_argument("--analyse-every", type=int, default=10,
                    help="all metric families at every this-many-th task end")
parser.add_argument("--grid", default=None, help="another grid file (default: the stream's)")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the grid's run config, e.g. stream.num_tasks=20")
parser.add_argument("--out", default=None, help="default runs/paper/<stream>")
parser.add_argument("--figures", default=None, help="also copy the figures here")
args = script_args(parser)

# %%
grid_file = Path(args.grid) if args.grid else STREAMS[args.stream]
grid = sweep.load_grid(grid_file)
grid["config"] = training.apply_overrides(
    grid.get("config", {}), (FULL[args.stream] if args.full else []) + args.set)
base = sweep.point_config(grid, sweep.expand(grid)[0], str(grid_file))
methods = grid["methods"]
if args.methods:
    methods = {m: methods[m] for m in args.methods.split(",")}
seeds = grid["seeds"][:args.seeds] if args.seeds else grid["seeds"]
out = Path(args.out or ROOT / "runs" / "paper" / args.stream)
started = time.perf_counter()
trained = {}
for name, method in methods.items():   # one method at a time: finished runs are skipped
    t0 = time.perf_counter()
    trained.update(grid_lib.run_grid(base, {name: method}, seeds, out, analyze=False,
                                     progress=False, vectorise_seeds=True).run_dirs)
    print(f"[train] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
train_s = time.perf_counter() - started

# %% [markdown]
# Analysis: the plasticity family at every task end; the NTK, isometry and dormancy families at
# the initialisation and at the end of every `--analyse-every`-th task (the tasks before each
# reference task, so the plasticity loss of the next task is predicted too).

# %%
full_settings = analysis.Settings(**{**grid.get("analysis", {}),
                                     "metrics": ("ntk", "isometry", "dormancy")})
plast_settings = analysis.Settings(metrics=("plasticity",), probe_size=2)
tables: dict[str, list[Table]] = {}
t0 = time.perf_counter()
for name, dirs in trained.items():
    tables[name] = []
    for d in dirs:
        plast = analysis.analyze(d, plast_settings, out_dir=Path(d) / "analysis_plasticity",
                                 progress=False)
        ends = sorted(set(plast.columns["checkpoint"][plast.columns["metric"]
                                                      == "plasticity_score"].tolist()))
        every = [c for i, c in enumerate(ends) if (i + 1) % args.analyse_every == 0]
        theory = analysis.analyze(d, full_settings, out_dir=Path(d) / "analysis_theory",
                                  progress=False, checkpoints_subset=[0, *every])
        tables[name].append(Table.concat([plast, theory]))
    print(f"[analyse] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
analyse_s = time.perf_counter() - t0

# %%
fig_dir = out / "figures"
fig_dir.mkdir(parents=True, exist_ok=True)
R = min(len(v) for v in tables.values())
arch = "×".join(map(str, base.model.widths))
title = (f"{base.stream.kind} {base.stream.dataset}, {arch} {base.model.init} "
         f"{base.model.activation} MLP, {base.train.optimizer} {base.train.learning_rate:g}, "
         f"{base.stream.num_tasks} tasks; R = {R} seeds")
lines = [f"# {title}",
         f"# training {train_s:.0f} s, analysis {analyse_s:.0f} s on this machine", ""]


def save(fig, name: str) -> None:
    figures.save(fig, fig_dir / name)
    if args.figures:
        figures.save(fig, Path(args.figures) / f"paper_{args.stream}_{name}")


# Claim 3 (over 100 tasks): plasticity of every method against the common baseline.
save(figures.plasticity_curves(tables, title=title), "plasticity")
last = max(base.stream.num_tasks // 4, 1)
lines.append(f"claim 3 — plasticity loss vs the common baseline (fresh network, plain Adam), "
             f"mean over each seed's reference tasks in the last {last} tasks; 95% Student-t "
             f"interval over R seeds (> 0: plasticity lost):")
for name, runs in tables.items():
    loss = figures.task_values(runs, "plasticity_loss_baseline")[:, -last:]
    score = figures.task_values(runs, "plasticity_score")
    with np.errstate(all="ignore"):
        per_seed = np.nanmean(loss, axis=1)
    try:
        m, lo, hi = stats.t_interval(per_seed)
    except NtkplastError:
        m = lo = hi = float("nan")
    verdict = ("lost" if lo > 0 else "kept" if hi < 0 else "not distinguishable")
    first = stats.final_tasks_interval(score[:, :5], 5)
    end = stats.final_tasks_interval(score, last)
    lines.append(f"  {name:<16} loss {m:+.3f} [{lo:+.3f}, {hi:+.3f}] ({verdict}); plasticity "
                 f"measure first 5 tasks {first[0]:.3f} → last {last} {end[0]:.3f} "
                 f"[{end[1]:.3f}, {end[2]:.3f}]  (R = {len(runs)})")
lines += [f"  {line}" for line in report.contrast_lines(tables, last)]

# Claim 1: conditioning vs scale as predictors of the next task's plasticity.
save(figures.theory_panels(tables, title=title), "theory")
for target in ("plasticity_score", "plasticity_loss_baseline"):
    res, dropped = report.predictor_test(tables, target, CLAIM1)
    if dropped:
        lines += ["", f"claim 1 — left out for {target} (not testable on these runs): "
                  + "; ".join(f"{name} ({why})" for name, why in dropped.items())]
    if res is None:
        lines += ["", f"claim 1 — predictors of {target}: not run"]
        continue
    save(figures.predictor_comparison(res, title=f"{title}\ntarget: {target} of task t + 1"),
         f"predictors_{target}")
    lines += ["", f"claim 1 — which end-of-task quantity predicts {target} on the next task?",
              str(res)]
    tested = {name: CLAIM1[name] for name in CLAIM1 if name not in dropped}
    try:
        sens = stats.sensitivity(tables, tested, target, complete_cases=False)
    except NtkplastError:
        continue
    lines += [f"  sensitivity (trend control × lag): {sens.verdicts(name)}" for name in tested]

# Claim 2: onset order in the plain runs, and lead times relative to plasticity.
plain = tables.get("adam") or next(iter(tables.values()))
try:
    order = stats.onset_order(plain, ONSETS, at="task_end")
except NtkplastError as e:
    lines += ["", f"claim 2 — onsets: not run ({e})"]
else:
    lead = order.steps[:, 1:] - order.steps[:, :1]     # > 0: after the plasticity measure
    lines += ["", "claim 2 — onsets (half of the total change) in the plain-Adam runs; "
              "theory metrics are analysed every "
              f"{args.analyse_every} tasks, so onsets are resolved to that", str(order),
              "  onset step minus the plasticity measure's onset step, per run "
              "(< 0: moved before plasticity):"]
    for j, (metric, layer) in enumerate(ONSETS[1:]):
        col = lead[:, j]
        done = col[np.isfinite(col)]
        cell = (f"median {np.median(done):+.0f}, range [{done.min():+.0f}, {done.max():+.0f}]"
                if len(done) else "never crossed")
        lines.append(f"    {metric}[{layer}]: {cell} over {len(done)}/{len(col)} runs")

def finite_ends(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (seed) of a seeds × tasks array: its first and its last finite value (NaN for a
    row with none)."""
    ends = [(r[np.isfinite(r)][[0, -1]] if np.isfinite(r).any() else (np.nan, np.nan))
            for r in v]
    return np.array([e[0] for e in ends]), np.array([e[1] for e in ends])


# Claim "partial measures": which isometry measures each method holds.
save(figures.per_task_panels(tables, [(m, layer, label, m == "ntk_condition")
                                      for label, m, layer in PARTIAL], ncols=2, title=title),
     "isometry_measures")
lines += ["", "claim 'partial measures' — change from initialisation to the last analysed task "
          "end, mean over seeds [95% Student-t, R seeds] (0: the measure is held):"]
for name, runs in tables.items():
    cells = []
    for label, metric, layer in PARTIAL:
        v = figures.task_values(runs, metric, layer)
        if metric == "ntk_condition":
            v = np.log10(v)
        first, final = finite_ends(v)
        try:
            m, lo, hi = stats.t_interval(final - first)
            cells.append(f"{label.split(' (')[0].split(' isometry')[0]} {m:+.3g} "
                         f"[{lo:+.3g}, {hi:+.3g}]")
        except NtkplastError:
            cells.append(f"{label}: n/a")
    lines.append(f"  {name:<16} " + "; ".join(cells) + f"  (R = {len(runs)})")

# Claim 4: reactivation — the dead-unit fraction per method.
lines += ["", "claim 4 — dead-unit fraction (τ = 0, layer mean) at the last analysed task end, "
          "and its peak over the run; mean over seeds [95% Student-t, R seeds]:"]
for name, runs in tables.items():
    v = figures.task_values(runs, "dormant_fraction_tau0", "mean")
    final = finite_ends(v)[1]
    with np.errstate(all="ignore"):
        peak = np.nanmax(v, axis=1)
    f, p = stats.t_interval(final), stats.t_interval(peak)
    lines.append(f"  {name:<16} final {f[0]:.4f} [{f[1]:.4f}, {f[2]:.4f}], peak {p[0]:.4f} "
                 f"[{p[1]:.4f}, {p[2]:.4f}], revived (peak − final) {p[0] - f[0]:.4f}  "
                 f"(R = {len(runs)})")

text = "\n".join(lines) + "\n"
(out / "claims.txt").write_text(text)
print(text)
