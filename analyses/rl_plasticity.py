# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Does a continual PPO agent lose plasticity, and do the isometry methods keep it?
#
# PPO (`ntkplast.rl`) on a stream of MinAtar tasks (`configs/rl/permuted_breakout.toml`:
# Breakout whose pixel positions are re-permuted every task, 30 tasks of 65,536 environment
# steps). On every third task a fresh agent is trained on that task alone, with the same budget
# and keys; the plasticity loss at that task is the fresh agent's final return minus the
# continual agent's (positive: the continual agent learns it worse). Per seed, the loss is
# averaged over the reference tasks in the stream's last third; the baseline's interval is a
# Student t over the R seeds. The isometry methods (the coupled penalty and AdamO, at the λ the
# supervised demo chose on held-out seeds: 2e-3 and 2e-2, not tuned here) are compared with the
# baseline paired over the same seeds, on their final returns over the last third (every task)
# and on their plasticity loss; each method's loss is also given against a fresh *plain-PPO*
# agent (the common baseline), since a method's own fresh agent may learn slower. Results,
# whatever they show, go to paper_notes.md ("Continual reinforcement learning").
#
#     python analyses/rl_plasticity.py [--seeds 5] [--out runs/rl] [--set section.key=value]

# %%
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ntkplast import figures, stats, training
from ntkplast.experiments.scripts import repository_root, script_args
from ntkplast.rl import config as rl_config
from ntkplast.rl import loop

ROOT = repository_root(globals())
METHODS = {"ppo": {}, "isometry": {"name": "isometry", "lam": 2e-3},
           "adamo": {"name": "adamo", "lam": 2e-2}}

p = argparse.ArgumentParser()
p.add_argument("--config", default=str(ROOT / "configs" / "rl" / "permuted_breakout.toml"))
p.add_argument("--seeds", type=int, default=5)
p.add_argument("--methods", default=",".join(METHODS))
p.add_argument("--out", default="runs/rl")
p.add_argument("--set", action="append", default=[], dest="overrides")
args = script_args(p)
out = Path(args.out)

# %% [markdown]
# ## Train (resumable: a finished run is left alone, an interrupted one continues)

# %%
base = training.read_toml(args.config)
runs: dict[str, list[Path]] = {}
for method in args.methods.split(","):
    runs[method] = []
    for seed in range(args.seeds):
        d = training.apply_overrides(base, [*args.overrides, f"seed={seed}"], rl_config.SECTIONS)
        if METHODS[method]:
            d["method"] = METHODS[method]
        cfg, stream = rl_config.agent_config_from_dict(d, where=args.config)
        folder = out / method / f"seed{seed}"
        loop.train_agent(cfg, stream, folder, resume=True, progress=False)
        runs[method].append(folder)
    print(f"[{method}] trained {args.seeds} seeds", flush=True)

# %% [markdown]
# ## Plasticity loss against a fresh agent, and final returns

# %%
num_tasks = len(loop.read_tasks(runs["ppo"][0]))
last = range(num_tasks - max(1, num_tasks // 3), num_tasks)


def value(task: dict, key: str):
    """A task record's ``key``; plain PPO's own fresh agent is its common baseline."""
    if key == "plasticity_loss_baseline" and key not in task:
        return task.get("plasticity_loss") if "baseline_final_return" not in task else None
    return task.get(key)


def per_seed(method: str, key: str) -> np.ndarray:
    """Per seed, the mean of a task record's ``key`` over the stream's last third (tasks
    without a value skipped)."""
    values = []
    for folder in runs[method]:
        v = [value(t, key) for t in loop.read_tasks(folder) if t["task"] in last]
        v = [x for x in v if isinstance(x, int | float)]
        values.append(np.mean(v) if v else np.nan)
    return np.asarray(values)


def curve(method: str, key: str) -> np.ndarray:
    """Seeds × tasks of ``key`` (NaN where a task has none)."""
    return np.asarray([[t.get(key) if isinstance(t.get(key), int | float) else np.nan
                        for t in loop.read_tasks(f)] for f in runs[method]], float)


lines = []
loss = per_seed("ppo", "plasticity_loss")
mean, low, high = stats.t_interval(loss)
lines.append(f"PPO's plasticity loss over tasks {last.start}-{last.stop - 1} (fresh agent's final "
             f"return − continual agent's; positive: plasticity lost): {mean:+.3f} "
             f"[{low:+.3f}, {high:+.3f}] (95% t-interval, R = {np.isfinite(loss).sum()})")
first = np.nanmean(curve("ppo", "plasticity_loss")[:, :max(1, num_tasks // 3)], axis=1)
c = stats.paired_contrast(loss, first, label="PPO: loss in the last third − in the first third")
lines.append(str(c))
for method in runs:
    v = per_seed(method, "plasticity_loss_baseline")
    if np.isfinite(v).sum() >= 2:
        m, lo, hi = stats.t_interval(v)
        lines.append(f"{method}: loss against a fresh plain-PPO agent (the common baseline), "
                     f"last third: {m:+.3f} [{lo:+.3f}, {hi:+.3f}] (95% t-interval, "
                     f"R = {np.isfinite(v).sum()})")
contrasts = {"plasticity loss": [], "final return": []}
for method in runs:
    if method == "ppo":
        continue
    for what, key in (("plasticity loss", "plasticity_loss"), ("final return", "final_return")):
        c = stats.paired_contrast(per_seed(method, key), per_seed("ppo", key),
                                  label=f"{method} − ppo")
        contrasts[what].append(c)
        lines.append(f"{what}: {c}")
text = "\n".join(lines)
print(text)
out.mkdir(parents=True, exist_ok=True)
(out / "answers.txt").write_text(text + "\n")

# %% [markdown]
# ## The figure: loss per task (mean over seeds with its t-interval) and the paired contrasts

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for i, method in enumerate(runs):
    for ax, key in ((axes[0], "plasticity_loss"), (axes[1], "final_return")):
        v = curve(method, key)
        tasks = np.flatnonzero(np.isfinite(v).all(axis=0))
        if len(tasks) == 0:
            continue
        m = v[:, tasks].mean(axis=0)
        half = np.asarray([stats.t_interval(v[:, t])[2] - stats.t_interval(v[:, t])[0]
                           for t in tasks]) if v.shape[0] > 1 else np.zeros(len(tasks))
        ax.plot(tasks, m, "o-", ms=3, color=figures.PALETTE[i], label=f"{method} (R = "
                f"{v.shape[0]})")
        ax.fill_between(tasks, m - half, m + half, color=figures.PALETTE[i], alpha=0.15)
axes[0].axhline(0, color="grey", lw=0.8)
axes[0].set(xlabel="task", ylabel="fresh − continual final return",
            title="plasticity loss (reference tasks)")
axes[1].set(xlabel="task", ylabel="final return", title="continual agent's final return")
axes[0].legend(fontsize=8)
all_c = contrasts["final return"] + contrasts["plasticity loss"]
if all_c:
    labels = [f"{c.label}\n({w})" for w in ("final return", "loss")
              for c in contrasts["final return" if w == "final return" else "plasticity loss"]]
    axes[2].errorbar([c.diff for c in all_c], range(len(all_c)),
                     xerr=[[c.diff - c.ci_low for c in all_c], [c.ci_high - c.diff for c in all_c]],
                     fmt="o", color="black")
    axes[2].set_yticks(range(len(all_c)), labels, fontsize=7)
    axes[2].axvline(0, color="grey", lw=0.8)
    axes[2].set(title=f"paired contrasts, last third (R = {all_c[0].n_pairs})",
                xlabel="method − ppo")
fig.tight_layout()
(out / "figures").mkdir(exist_ok=True)
for path in figures.save(fig, out / "figures" / "rl_plasticity"):
    print("wrote", path)
(out / "summary.json").write_text(json.dumps(
    {m: {"plasticity_loss": per_seed(m, "plasticity_loss").tolist(),
         "final_return": per_seed(m, "final_return").tolist()} for m in runs}, indent=1))
