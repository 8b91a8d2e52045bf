# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Plasticity over long task sequences, and what predicts it
#
# Every method of `ntkplast.regularizers` plus plain Adam trains the same stream of tasks under
# several seeds; each run is analysed at every task end (empirical NTK on a probe set, layer
# Jacobian spectra, dormancy). The script draws, per stream:
#
# 1. **plasticity**: test accuracy on each new task at the end of its training, online accuracy
#    during it, and the running average of the online accuracy (Dohare et al. 2024);
# 2. **theory vs observation**: NTK condition number, effective rank, trace and decay exponent,
#    isometry deviation and dead-unit fraction per task, and the head-to-head test of the paper's
#    claim (does NTK conditioning at the end of task t predict plasticity on task t+1 better than
#    NTK scale, isometry deviation or dormancy?);
# 4. **leaving the kernel regime**: kernel distance from initialisation and from the
#    infinite-width NTK (full environment only: the latter needs neural-tangents).
#
# Shared output head, no task identity. Runs resume and analyses are cached, so re-running
# after an interruption only does what is missing.
#
# ```
# python analyses/plasticity_sweep.py --quick      # 20 tasks, 2 seeds, permuted digits
# python analyses/plasticity_sweep.py              # full: 100 tasks, 5 seeds, three streams
# ```
#
# Measured runtime (2 CPU cores shared with other jobs, 2026-11-26): `--quick` (11 methods × 2
# seeds × 20 tasks × 100 steps) 176 s from scratch, with a CI run on the same cores;
# `--tasks 20 --steps 500 --seeds 3 --streams permuted,shuffled_labels` (66 runs) about 15
# minutes, 14 s per run. Full mode (3 streams × 11 methods × 5 seeds × 100 tasks × 500 steps,
# 101 checkpoints per run: five times the steps and checkpoints of that run, 165 runs) was not
# run to the end here; at the measured cost it needs
# about 3 hours, and resumes where it stopped.

# %%
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from ntkplast import analysis, figures, models, stats, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.experiments import grid as experiment
from ntkplast.experiments.scripts import script_args

METHODS = {  # name -> [method] table; strengths are each constructor's documented default
    "adam": {},  # first: the baseline, drawn in black
    "adamo": {"name": "adamo"},
    "isometry": {"name": "isometry"},
    "l2": {"name": "l2"},
    "l2_init": {"name": "l2_init"},
    "shrink_perturb": {"name": "shrink_perturb"},
    "spectral": {"name": "spectral"},
    "parseval": {"name": "parseval"},
    "srip": {"name": "srip"},
    "redo": {"name": "redo"},
    "cbp": {"name": "cbp"},
}

parser = argparse.ArgumentParser(description="Plasticity of every method over long streams.")
parser.add_argument("--quick", action="store_true", help="20 tasks, 2 seeds, permuted only")
parser.add_argument("--out", default=None,
                    help="experiment folder (default runs/plasticity[-quick])")
parser.add_argument("--streams", default=None, help="comma list of stream kinds")
parser.add_argument("--methods", default=",".join(METHODS), help="comma list of methods")
parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
parser.add_argument("--tasks", type=int, default=None, help="tasks per stream")
parser.add_argument("--steps", type=int, default=None, help="training steps per task")
parser.add_argument("--probe-size", type=int, default=None, help="analysis probe inputs")
parser.add_argument("--data-dir", default=None, help="MNIST/CIFAR folder (default: digits)")
parser.add_argument("--dataset", default="digits", help="digits (built in), mnist, ...")
parser.add_argument("--vectorise-seeds", action="store_true",
                    help="train each method's seeds in one vmapped program")
args = script_args(parser, notebook=["--quick"])

quick = args.quick
stream_kinds = (args.streams.split(",") if args.streams else
                ["permuted"] if quick else ["permuted", "shuffled_labels", "split"])
num_seeds = args.seeds or (2 if quick else 5)
num_tasks = args.tasks or (20 if quick else 100)
steps = args.steps or (100 if quick else 500)
probe_size = args.probe_size or (128 if quick else 256)
out = Path(args.out or ("runs/plasticity-quick" if quick else "runs/plasticity"))
methods = {m: METHODS[m] for m in args.methods.split(",")}
settings = analysis.Settings(probe_size=probe_size)

# %%
def base_config(kind: str) -> training.RunConfig:
    """A 3×100 ReLU MLP, Adam 1e-3, batch 32; a reset reference on every 5th task."""
    return training.RunConfig(
        model=models.ArchSpec(widths=(100, 100, 100), activation="relu"),
        stream=streams.StreamSpec(kind=kind, dataset=args.dataset, num_tasks=num_tasks,
                                  data_dir=args.data_dir),
        train=training.TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=32,
                                   steps_per_task=steps, reference_tasks="every:5"))


# %%
started = time.perf_counter()
summary_rows = []
for kind in stream_kinds:
    grid = experiment.run_grid(base_config(kind), methods, range(num_seeds), out / kind,
                               settings=settings, progress=False, data_dir=args.data_dir,
                               vectorise_seeds=args.vectorise_seeds)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    title = f"{kind} {args.dataset}, {num_tasks} tasks × {steps} steps, {num_seeds} seeds"
    for name, draw in [("plasticity", figures.plasticity_curves),
                       ("theory", figures.theory_panels),
                       ("kernel_regime", figures.kernel_regime)]:
        figures.save(draw(grid.tables, title=title), fig_dir / f"{name}_{kind}")
    try:  # the picture behind the predictor test: NTK conditioning vs next task's accuracy
        figures.save(figures.kernel_vs_plasticity(grid.tables, "ntk_condition",
                                                  "online_accuracy", title=title),
                     fig_dir / f"kernel_vs_plasticity_{kind}")
    except NtkplastError as e:
        print(f"\n[{kind}] kernel_vs_plasticity not drawn: {e}")
    for name, runs in grid.tables.items():
        row = {"stream": kind, "method": name, "seeds": len(runs)}
        for metric in ("online_accuracy", "test_accuracy", "plasticity_loss"):
            # mean over the last quarter of the tasks (where plasticity loss shows), per seed
            mean, low, high = experiment.final_tasks_interval(
                figures.task_values(runs, metric), max(num_tasks // 4, 1))
            row.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
        summary_rows.append(row)
    # Experiment 2: which end-of-task quantity predicts the next task's online accuracy?
    try:
        comparison = stats.compare_predictors(grid.tables, stats.PREDICTORS,
                                              target="online_accuracy", lag=1)
    except NtkplastError as e:  # e.g. too few tasks, or a predictor constant over every run
        print(f"\n[{kind}] predictor test not run: {e}")
    else:
        print(f"\n[{kind}] predictors of the next task's online accuracy\n{comparison}")
        figures.save(figures.predictor_comparison(comparison, title=title),
                     fig_dir / f"predictors_{kind}")
        (out / f"predictors_{kind}.txt").write_text(comparison.summary() + "\n")

# %%
with open(out / "summary.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(summary_rows[0]))
    writer.writeheader()
    writer.writerows(summary_rows)
print(f"\nlast-quarter means over seeds [95% Student-t interval, R = "
      f"{num_seeds}] "
      f"({time.perf_counter() - started:.0f} s):")
print(f"{'stream':<16} {'method':<15} {'online acc':>22} {'plasticity loss':>24}")
for r in summary_rows:
    print(f"{r['stream']:<16} {r['method']:<15} "
          f"{r['online_accuracy']:.3f} [{r['online_accuracy_low']:.3f}, "
          f"{r['online_accuracy_high']:.3f}]   "
          f"{r['plasticity_loss']:+.3f} [{r['plasticity_loss_low']:+.3f}, "
          f"{r['plasticity_loss_high']:+.3f}]")
print(f"figures in {out / 'figures'}, table in {out / 'summary.csv'}")
