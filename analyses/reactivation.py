# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Experiment 3: do the isometry step and AdamO revive dead ReLU units?
#
# A dead ReLU unit gets no task gradient (paper_notes.md, "Why the isometry gradient moves dead
# units"); the isometry gradient 2·M(MᵀM − s'I) moves its incoming column anyway. Starting from
# a network with many dead units we train with each arm of `ntkplast.reactivation.ARMS` —
# plain Adam (the control), the isometry step alone (no task gradient), AdamO, Adam + L2 and
# Adam + ReDo — and record the fraction of the initially dead units that fire again on the
# task's training inputs. Three starting points:
#
# * **planted, bias**: a fresh MLP, 50% of each hidden layer killed by a negative bias
#   b_i = −(max_x u_i(x) + 0.1) (biases are not touched by the isometry step);
# * **planted, sign**: a fresh MLP, 50% killed by w_i ← −|w_i|, b_i = −0.1 (inputs are ≥ 0, so
#   the unit is dead whatever the layers below do; only a change of w_i itself revives it);
# * **baseline**: the units that a long plain-Adam run on permuted digits leaves dead, trained on
#   the next task of the stream.
#
# Runtime on 2 shared CPU cores, measured: `--quick` (3×64 MLP, 300 steps, 3 seeds, baseline 20
# tasks × 300 steps) 45 s; full mode (3×100, 2,000 steps, 5 seeds, baseline 20 tasks × 1,000
# steps, as in the demo) 213 s, with other jobs on the same cores (the last line printed).

# %%
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import jax
import numpy as np

from ntkplast import dormancy, models, training
from ntkplast.data import streams
from ntkplast.experiments import grid as experiment
from ntkplast.experiments import reactivation
from ntkplast.experiments.scripts import script_args
from ntkplast.figures import _style
from ntkplast.figures.reactivation import reactivation_curves
from ntkplast.runs import checkpoints

parser = argparse.ArgumentParser(description="Reactivation of dead ReLU units per method.")
parser.add_argument("--quick", action="store_true", help="small and fast (about a minute)")
parser.add_argument("--out", default="runs/reactivation")
parser.add_argument("--seeds", type=int, default=None)
parser.add_argument("--width", type=int, default=None)
parser.add_argument("--depth", type=int, default=3)
parser.add_argument("--steps", type=int, default=None, help="training steps per curve")
parser.add_argument("--every", type=int, default=None, help="measure every this many steps")
parser.add_argument("--fraction", type=float, default=0.5, help="planted dead fraction")
parser.add_argument("--baseline-tasks", type=int, default=20)
parser.add_argument("--baseline-steps", type=int, default=None, help="steps per baseline task")
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--iso-lam", type=float, default=0.1, help="λ of the isometry step / AdamO")
parser.add_argument("--l2-lam", type=float, default=1e-4)
parser.add_argument("--redo-every", type=int, default=None, help="default: steps // 4")
args = script_args(parser)
quick = dict(seeds=3, width=64, steps=300, every=25, baseline_steps=300)
full = dict(seeds=5, width=100, steps=2000, every=100, baseline_steps=1000)
for k, v in (quick if args.quick else full).items():
    if getattr(args, k) is None:
        setattr(args, k, v)
if args.redo_every is None:
    args.redo_every = max(args.steps // 4, 1)
t_start = time.time()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
spec = models.ArchSpec(widths=(args.width,) * args.depth)
model = models.build(spec)
stream = streams.make_stream(streams.StreamSpec(kind="permuted", dataset="digits",
                                                num_tasks=args.baseline_tasks + 1))
steps = np.arange(0, args.steps + 1, args.every)
arm_options = dict(learning_rate=args.lr, iso_lam=args.iso_lam, l2_lam=args.l2_lam,
                   redo_every=args.redo_every)
print(f"{args.depth}×{args.width} ReLU MLP, {args.seeds} seeds, {args.steps} steps per curve; "
      f"η = {args.lr}, λ_iso = {args.iso_lam}, λ_L2 = {args.l2_lam}, ReDo τ = 0.1 every "
      f"{args.redo_every} steps")

# %% [markdown]
# ## Starting points: planted dead units, and the ones a long Adam run leaves


# %%
def baseline_start(seed: int):
    """Params after a plain-Adam run over ``baseline_tasks`` tasks, and its dead units on the
    next task's training inputs."""
    cfg = training.RunConfig(
        seed=seed, model=spec, stream=streams.StreamSpec(kind="permuted", dataset="digits",
                                                         num_tasks=args.baseline_tasks),
        train=training.TrainConfig(learning_rate=args.lr, steps_per_task=args.baseline_steps,
                                   eval_previous=False))
    run_dir = out / "baseline" / f"seed{seed}"
    run = training.train_run(cfg, run_dir, progress=False,
                             resume=(run_dir / checkpoints.MANIFEST).exists())
    x = stream[args.baseline_tasks].x_train
    params = run.params(-1)
    masks = tuple(layer.dead_mask for layer in dormancy.unit_scores(model, params, x))
    return params, masks


def planted_start(seed: int, how: str):
    """A fresh initialisation with ``fraction`` of each hidden layer planted dead on task 0."""
    x = stream[0].x_train
    k_init, k_plant = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(k_init, x.shape[1:])
    return reactivation.plant_dead_units(model, params, x, args.fraction, how=how, key=k_plant)


SETTINGS = {
    "planted_bias": (f"{args.fraction:.0%} planted dead by bias", 0,
                     lambda s: planted_start(s, "bias")),
    "planted_sign": (f"{args.fraction:.0%} planted dead by sign", 0,
                     lambda s: planted_start(s, "sign")),
    "baseline": (f"dead after Adam, {args.baseline_tasks} tasks × {args.baseline_steps} steps",
                 args.baseline_tasks, baseline_start),
}

# %% [markdown]
# ## Every arm from every starting point

# %%
results = {}  # setting -> arm -> seeds × points × (layers + 1)
dead_counts = {}  # setting -> seeds × layers
for setting, (_, task, start) in SETTINGS.items():
    data = stream[task]
    results[setting] = {arm: [] for arm in reactivation.ARMS}
    dead_counts[setting] = []
    for seed in range(args.seeds):
        params, masks = start(seed)
        dead_counts[setting].append([int(np.sum(m)) for m in masks])
        for i, arm in enumerate(reactivation.ARMS):
            tx, hooks = reactivation.make_arm(arm, model, data.x_train.shape[1:], **arm_options)
            key = jax.random.fold_in(jax.random.PRNGKey(seed), 100 + i)
            results[setting][arm].append(reactivation.reactivation_curve(
                model, params, dead_masks=masks, tx=tx, hooks=hooks, x=data.x_train,
                y=data.y_train, probe_x=data.x_train, steps=args.steps, every=args.every,
                per_layer=True, key=key))
    results[setting] = {arm: np.stack(c) for arm, c in results[setting].items()}
    dead_counts[setting] = np.asarray(dead_counts[setting])

# %% [markdown]
# ## Figures and the table of final revived fractions

# %%
fig, axes = _style.subplots(1, len(SETTINGS), figsize=(4.4 * len(SETTINGS), 3.3), sharey=True)
for ax, (setting, (title, _, _)) in zip(np.atleast_1d(axes), SETTINGS.items()):
    reactivation_curves({arm: c[..., -1] for arm, c in results[setting].items()}, steps,
                        title=title, ax=ax)
paths = _style.save(fig, out / "reactivation")

rows = []
for setting, by_arm in results.items():
    dead = dead_counts[setting]
    for arm, c in by_arm.items():
        mean, low, high = experiment.mean_interval(c[:, -1, -1][:, None])
        layer_means = [experiment.mean_interval(c[:, -1, li][:, None])[0][0]
                       for li in range(args.depth)]
        rows.append({"setting": setting, "arm": arm, "seeds": len(c),
                     "dead_units_mean": float(dead.sum(axis=1).mean()),
                     "dead_per_layer_mean": [float(v) for v in dead.mean(axis=0)],
                     "final_revived": float(mean[0]), "low": float(low[0]),
                     "high": float(high[0]),
                     "final_revived_per_layer": [float(v) for v in layer_means]})
(out / "summary.json").write_text(json.dumps(
    {"config": vars(args), "steps": steps.tolist(), "rows": rows}, indent=1, default=str))
with open(out / "summary.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["setting", "arm", "seeds", "dead_units_mean", "final_revived", "low", "high"])
    for r in rows:
        w.writerow([r["setting"], r["arm"], r["seeds"], f"{r['dead_units_mean']:.1f}",
                    f"{r['final_revived']:.4f}", f"{r['low']:.4f}", f"{r['high']:.4f}"])

# %% [markdown]
# ## Summary in words


# %%
def verdict(a: dict, b: dict) -> str:
    """'more' / 'less' when the 95% intervals are disjoint, else 'no clear difference'."""
    if np.isnan(a["final_revived"]) or np.isnan(b["final_revived"]):
        return "no data"
    if a["low"] > b["high"]:
        return "more"
    if a["high"] < b["low"]:
        return "less"
    return "no clear difference"


print(f"\nfraction of the initially dead units firing again after {args.steps} steps "
      f"(mean over seeds [95% Student-t interval, R = {args.seeds}]; per hidden layer "
      "in brackets):")
for setting, (title, _, _) in SETTINGS.items():
    sel = {r["arm"]: r for r in rows if r["setting"] == setting}
    dead = dead_counts[setting]
    print(f"\n{title}: dead units per seed {dead.sum(axis=1).tolist()} of "
          f"{args.depth * args.width} (per layer, mean: "
          f"{np.round(dead.mean(axis=0), 1).tolist()})")
    if not dead.sum():
        print("  no unit is dead at this starting point in any seed: nothing to revive "
              "(the baseline run was too short for units to die)")
        continue
    for arm, r in sel.items():
        per_layer = ", ".join("—" if np.isnan(v) else f"{v:.2f}"
                              for v in r["final_revived_per_layer"])
        print(f"  {arm:14s} {r['final_revived']:.3f} [{r['low']:.3f}, {r['high']:.3f}]  "
              f"({per_layer})")
    iso, adamo = sel["isometry_step"], sel["adamo"]
    print(f"  isometry step alone revives {iso['final_revived']:.1%} of the dead units "
          f"({'none' if iso['final_revived'] == 0 else 'some'}); vs Adam: "
          f"{verdict(iso, sel['adam'])}")
    for other in ("adam", "l2", "redo"):
        print(f"  AdamO vs {other}: {verdict(adamo, sel[other])} "
              f"({adamo['final_revived']:.3f} vs {sel[other]['final_revived']:.3f})")
print(f"\nwrote {paths[0]}, {out / 'summary.csv'}, {out / 'summary.json'}")
print(f"runtime {time.time() - t_start:.0f} s ({'quick' if args.quick else 'full'} mode)")
