# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Standard benchmarks on real data, without per-stream tuning
#
# An independent commentary asked of the isometry regulariser: does it hold up on standard
# continual-learning benchmarks without task boundaries at test time, on longer sequences
# (20+ and 100+ tasks), and without task-specific tuning? This script answers on Fashion-MNIST's
# real 28×28 images (`configs/benchmarks/fashion/`): online permuted (30 and 100 tasks), split
# (5 two-class tasks cycled to 20), random-label memorisation (30 tasks) and a task-free stream
# whose pixel permutation drifts with no boundary (60 windows). One shared 10-way head
# everywhere, no task identity; one base setting for every stream (Adam, lr 3e-3, a 3×100 ReLU
# MLP).
#
#     python analyses/fashion_benchmarks.py [--seeds 8] [--out runs/fashion]
#
# **The no-tuning protocol.** The λ of AdamO and of the coupled penalty is chosen on selection
# seeds (100, 101; never evaluated), per stream, as the λ with the highest mean plasticity over
# the last tasks. *Frozen*: the choice made on the online permuted stream is used on every
# stream. *Tuned*: each stream's own choice. The 100-task stream uses the 30-task permuted
# stream's choice for both. Every other method runs at its defaults. Per seed, plasticity is the
# mean of the run's plasticity score (online accuracy, test accuracy on the task's classes,
# training accuracy reached; the stream's own) over its last `--last` tasks; methods are compared
# paired over the same evaluated seeds (Student t, R seeds). Results, whatever they show, go to
# paper_notes.md ("Standard benchmarks on real data").

# %%
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from ntkplast import figures, stats, training
from ntkplast.data import streams
from ntkplast.experiments.scripts import repository_root, script_args
from ntkplast.runs import checkpoints

ROOT = repository_root(globals())
STREAMS = {  # name → (config in configs/benchmarks/fashion/, its overrides)
    "permuted": ("permuted_online.toml", []),
    "permuted_100": ("permuted_online.toml", ["stream.num_tasks=100"]),
    "split": ("split.toml", []),
    "random_labels": ("random_labels.toml", []),
    "drifting": ("drifting.toml", []),
}
METHODS = {"adam": {}, "adamo": {"name": "adamo"}, "isometry": {"name": "isometry"},
           "l2": {"name": "l2"}, "redo": {"name": "redo"}, "fire": {"name": "fire"}}
TUNED = ("adamo", "isometry")  # the methods whose λ is selected
SELECTED_ON_ANOTHER = {"permuted_100": "permuted"}  # too long to select on: its short stream's λ

# %%
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--streams", default=",".join(STREAMS))
parser.add_argument("--methods", default=",".join(METHODS))
parser.add_argument("--long-methods", default="adam,adamo,isometry",
                    help="the methods also run on permuted_100")
parser.add_argument("--seeds", type=int, default=8)
parser.add_argument("--selection-seeds", default="100,101")
parser.add_argument("--lams", default="2e-4,2e-3,2e-2")
parser.add_argument("--frozen-on", default="permuted")
parser.add_argument("--last", type=int, default=10)
parser.add_argument("--out", default=str(ROOT / "runs" / "fashion"))
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of every stream, e.g. stream.dataset=digits")
args = script_args(parser, ["--seeds", "2", "--set", "stream.dataset=digits",
                            "--set", "stream.num_tasks=6"])
out = Path(args.out)
names = args.streams.split(",")
seeds = list(range(args.seeds))
selection_seeds = [int(s) for s in args.selection_seeds.split(",")]
lams = [float(v) for v in args.lams.split(",")]


def stream_config(name: str) -> training.RunConfig:
    file, extra = STREAMS[name]
    return training.load_config(ROOT / "configs" / "benchmarks" / "fashion" / file,
                                [*args.set, *extra])


def train(name: str, label: str, method: dict, run_seeds: list[int], folder: Path) -> np.ndarray:
    """Train (or resume, or skip) one method's seeds together; per seed, the mean plasticity
    score over the last ``--last`` tasks."""
    cfg = dataclasses.replace(stream_config(name), method=dict(method))
    dirs = [folder / name / label / f"seed{s}" for s in run_seeds]
    training.train_seeds(cfg, run_seeds, dirs, resume=True, progress=False)
    values = []
    for d in dirs:
        tasks = checkpoints.read_manifest(d)["tasks"][-args.last:]
        values.append(np.mean([t["plasticity_score"] for t in tasks]))
    print(f"[{name}] {label}: trained, mean over seeds {np.mean(values):.3f}")
    return np.array(values)


def decline(name: str, label: str, folder: Path) -> str:
    """Is plasticity lost at all? The run's first five tasks against its last ``--last``,
    paired over the seeds (positive: lost), and whether it fell to chance (a collapse)."""
    first, final = [], []
    for s in seeds:
        tasks = checkpoints.read_manifest(folder / name / label / f"seed{s}")["tasks"]
        first.append(np.mean([t["plasticity_score"] for t in tasks[:5]]))
        final.append(np.mean([t["plasticity_score"] for t in tasks[-args.last:]]))
    c = stats.paired_contrast(first, final, label=f"{label}: first 5 tasks − last {args.last}")
    chance = 1.0 / stream_config(name).model.num_outputs
    kind = "a collapse to chance" if np.mean(final) < chance + 0.05 else "gradual"
    return f"{c} ({kind}: last tasks {np.mean(final):.3f}, chance {chance:.2f})"


def acts_at_task_ends(name: str, method: str) -> bool:
    return stream_config(name).stream.kind in streams.TASK_FREE_KINDS and method == "fire"


# %% [markdown]
# ## Selection: each tuned method's λ per stream, on seeds that are never evaluated

# %%
chosen: dict[str, dict[str, float]] = {}
scores: dict[str, dict[str, dict[str, float]]] = {}
for name in names:
    if name in SELECTED_ON_ANOTHER:
        continue
    chosen[name], scores[name] = {}, {}
    for m in TUNED:
        per_lam = {lam: float(np.mean(train(name, f"{m}_{lam:g}", {**METHODS[m], "lam": lam},
                                            selection_seeds, out / "selection")))
                   for lam in lams}
        scores[name][m] = {f"{lam:g}": v for lam, v in per_lam.items()}
        chosen[name][m] = max(per_lam, key=per_lam.get)
for name, other in SELECTED_ON_ANOTHER.items():
    if name in names:
        chosen[name] = chosen[other]
frozen = chosen[args.frozen_on]
(out / "selection.json").write_text(json.dumps(
    {"selection_seeds": selection_seeds, "last": args.last, "scores": scores,
     "chosen": {n: {m: f"{v:g}" for m, v in c.items()} for n, c in chosen.items()},
     "frozen_on": args.frozen_on}, indent=1) + "\n")
print("λ chosen per stream:", {n: {m: f"{v:g}" for m, v in c.items()} for n, c in chosen.items()})

# %% [markdown]
# ## Evaluation on seeds 0 … R−1: every method, the tuned ones at the frozen and the tuned λ

# %%
results: dict[str, dict[str, np.ndarray]] = {}
for name in names:
    results[name] = {}
    run_methods = args.long_methods if name == "permuted_100" else args.methods
    for m in run_methods.split(","):
        if acts_at_task_ends(name, m):
            continue  # a task-free stream has no task ends to act at
        if m not in TUNED:
            results[name][m] = train(name, m, METHODS[m], seeds, out)
            continue
        for how, lam in (("frozen", frozen[m]), ("tuned", chosen[name][m])):
            label = f"{m}_{lam:g}"
            if how == "tuned" and lam == frozen[m]:
                results[name][f"{m} (tuned)"] = results[name][f"{m} (frozen)"]
                continue
            results[name][f"{m} ({how})"] = train(name, label, {**METHODS[m], "lam": lam},
                                                  seeds, out)

# %% [markdown]
# ## The four answers: paired contrasts against Adam, and tuned against frozen

# %%
groups: dict[str, list[stats.PairedContrast]] = {}
lines = [f"plasticity = mean plasticity score over the last {args.last} tasks; paired 95% "
         f"t-intervals over R = {len(seeds)} seeds; λ chosen on seeds {selection_seeds}"]
for name in names:
    adam = results[name]["adam"]
    lines.append(f"[{name}] Adam {adam.mean():.3f}; {decline(name, 'adam', out)}")
    lines.append(f"    λ frozen "
                 f"{ {m: f'{v:g}' for m, v in frozen.items()} }, tuned "
                 f"{ {m: f'{v:g}' for m, v in chosen[name].items()} }")
    groups[name] = [stats.paired_contrast(values, adam, label=f"{label} − adam")
                    for label, values in results[name].items()
                    if label != "adam" and "(tuned)" not in label]
    lines += [f"    {c}" for c in groups[name]]
    for m in TUNED:
        tuned, fixed = results[name].get(f"{m} (tuned)"), results[name].get(f"{m} (frozen)")
        if tuned is None or fixed is None:
            continue
        if chosen[name][m] == frozen[m]:
            lines.append(f"    {m} tuned − frozen: the same λ chosen ({frozen[m]:g})")
        else:
            groups[name].append(stats.paired_contrast(tuned, fixed, label=f"{m} tuned − frozen"))
            lines.append(f"    {groups[name][-1]}")
text = "\n".join(lines)
print(text)
(out / "answers.txt").write_text(text + "\n")
(out / "figures").mkdir(parents=True, exist_ok=True)
paths = figures.save(figures.paired_contrasts(
    groups, xlabel=f"Δ plasticity, last {args.last} tasks",
    title="Fashion-MNIST: each method − Adam (frozen λ), and tuned − frozen λ"),
    out / "figures" / "answers")
print("figure:", ", ".join(str(p) for p in paths))
