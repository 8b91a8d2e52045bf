# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Near-isometric architectures where plasticity is lost
#
# The seed paper's architecture claim: networks that are isometric almost everywhere yet
# universal Lipschitz approximators — GroupSort activations with orthogonal weights (Anil, Lucas
# & Grosse 2019) — stay expressive and keep their plasticity. Four arms on the paper's stream
# (`configs/paper/*.toml`: 4×512, Adam lr 1e-4, 8 seeds, 100 tasks at the quick size):
#
# * `relu`: the He-scaled orthogonal ReLU MLP with plain Adam (the baseline that loses);
# * `relu_adamo`: the same with AdamO at the paper's λ (λ_paper = 1e-3, `lam = 2e-3`);
# * `layernorm_l2`: ReLU with LayerNorm after each hidden layer and L2 weight decay (Lyle et
#   al. 2024's strongest simple baseline; ntkplast's default λ = 1e-4);
# * `groupsort_orthogonal`: MaxMin (GroupSort, groups of 2) with every weight kept exactly
#   orthogonal (`weight_constraint = "orthogonal"`, σ_w = 1), plain Adam.
#
# Per arm, with 95% Student-t intervals over R seeds: expressivity as the plasticity measure on
# the first task (memorisation accuracy for random labels, online accuracy for online permuted);
# the plasticity measure over the last quarter of the tasks; the plasticity loss against a fresh
# network of the same architecture and method (the run's own reference) and against a fresh
# network of the same architecture with plain Adam (the common baseline; the same reference for
# the two plain-Adam arms). Usage:
#
#     python analyses/architectures.py --stream random_labels
#     python analyses/architectures.py --stream online_permuted --seeds 4
#     python analyses/architectures.py --no-train   # report on the finished runs only

# %%
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from ntkplast import analysis, figures, models, stats, training
from ntkplast.errors import NtkplastError
from ntkplast.experiments import grid as grid_lib
from ntkplast.experiments import sweep
from ntkplast.experiments.scripts import repository_root, script_args
from ntkplast.runs import checkpoints
from ntkplast.table import Table

ROOT = repository_root(globals())
STREAMS = {"random_labels": ROOT / "configs/paper/random_labels_mnist5k.toml",
           "online_permuted": ROOT / "configs/paper/online_permuted_mnist5k.toml"}
ARMS = {  # name: (model overrides, method)
    "relu": ({}, {}),
    "relu_adamo": ({}, {"name": "adamo", "lam": 2e-3}),
    "layernorm_l2": ({"layer_norm": True}, {"name": "l2"}),
    "groupsort_orthogonal": ({"activation": "maxmin", "weight_constraint": "orthogonal",
                              "w_std": 1.0}, {}),
}

parser = argparse.ArgumentParser(description="Near-isometric architectures vs plasticity loss.")
parser.add_argument("--stream", choices=sorted(STREAMS), default="random_labels")
parser.add_argument("--arms", default=None, help=f"comma-separated subset of {list(ARMS)}")
parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 8)")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the run config, e.g. stream.num_tasks=20")
parser.add_argument("--out", default=None, help="default runs/architectures/<stream>")
parser.add_argument("--figures", default=None, help="also copy the figure here")
parser.add_argument("--no-train", action="store_true",
                    help="train nothing: report on the runs under --out that have finished (an "
                         "arm's R is then the number of its finished seeds)")
args = script_args(parser)

# %%
grid_file = STREAMS[args.stream]
grid = sweep.load_grid(grid_file)
grid["config"] = training.apply_overrides(grid.get("config", {}), args.set)
base = sweep.point_config(grid, sweep.expand(grid)[0], str(grid_file))
seeds = grid["seeds"][:args.seeds] if args.seeds else grid["seeds"]
arms = {a: ARMS[a] for a in args.arms.split(",")} if args.arms else ARMS
out = Path(args.out or ROOT / "runs" / "architectures" / args.stream)
settings = analysis.Settings(metrics=("plasticity",), probe_size=2)
tables: dict[str, list[Table]] = {}
lines = []
for name, (overrides, method) in arms.items():
    spec = models.ArchSpec.from_dict({**base.model.to_dict(), **overrides}, where="arm")
    t0 = time.perf_counter()
    if args.no_train:
        dirs = [out / name / f"seed{s}" for s in seeds
                if (out / name / f"seed{s}" / "manifest.json").exists()
                and checkpoints.open_run(out / name / f"seed{s}").complete]
    else:
        dirs = grid_lib.run_grid(dataclasses.replace(base, model=spec), {name: method}, seeds,
                                 out, analyze=False, progress=False,
                                 vectorise_seeds=True).run_dirs[name]
    t_train = time.perf_counter() - t0
    tables[name] = [analysis.analyze(d, settings, progress=False) for d in dirs]
    if not args.no_train:
        lines.append(f"[{name}] trained in {t_train:.0f} s")
        print(lines[-1], flush=True)

# %%
sizes = {name: len(v) for name, v in tables.items()}
R = (f"R = {next(iter(sizes.values()))} seeds" if len(set(sizes.values())) == 1
     else "R = " + ", ".join(f"{n} ({name})" for name, n in sizes.items()))
arch = "×".join(map(str, base.model.widths))
title = (f"{base.stream.kind} {base.stream.dataset}, {arch} MLPs, {base.train.optimizer} "
         f"{base.train.learning_rate:g}, {base.stream.num_tasks} tasks; {R}")
last = max(base.stream.num_tasks // 4, 1)


def cell(values: np.ndarray, fmt: str = "+.3f") -> str:
    """mean [95% Student-t] of one value per seed, or n/a under two finite seeds."""
    try:
        m, lo, hi = stats.t_interval(values[np.isfinite(values)])
    except NtkplastError:
        return "n/a"
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


lines += ["", f"# {title}", f"per arm, mean over seeds [95% Student-t interval, R seeds]; "
          f"'late' = the last {last} tasks; losses > 0: plasticity lost against a fresh network"]
for name, runs in tables.items():
    score = figures.task_values(runs, "plasticity_score")
    with np.errstate(all="ignore"):
        own = np.nanmean(figures.task_values(runs, "plasticity_loss")[:, -last:], axis=1)
        common = np.nanmean(figures.task_values(runs, "plasticity_loss_baseline")[:, -last:],
                            axis=1)
        late = np.nanmean(score[:, -last:], axis=1)
    first, end = cell(score[:, 0], ".3f"), cell(late, ".3f")
    lines.append(f"  {name:<22} first task {first}; late {end}; loss vs own fresh net "
                 f"{cell(own)}; vs its plain-Adam fresh net {cell(common)}  (R = {len(runs)})")
text = "\n".join(lines)
print(text)
(out / "figures").mkdir(parents=True, exist_ok=True)
(out / "architectures.txt").write_text(text + "\n")
fig = figures.plasticity_curves(tables, title=title)
figures.save(fig, out / "figures" / "plasticity")
if args.figures:
    figures.save(fig, Path(args.figures) / f"architectures_{args.stream}_plasticity")
