# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Your own task stream: non-stationary regression
#
# A stream is anything with `len`, `stream[t]` (a `streams.Task`), `test_set(t)`, `input_shape`
# and `num_classes` (`ntkplast.data.custom.Stream`); `ArrayStream` builds one from arrays.
# Here each task fits a different random sine map y = sin(x W_t + c_t) from 4 inputs to 2 outputs;
# float targets make it a regression stream, trained with `train.loss = "mse"`, and the run
# records test / online mean squared errors and a plasticity loss = run error − reset-reference
# error. The analysis needs an explicit probe file, since a custom stream cannot be rebuilt from
# the run's manifest. About 15 s on 2 cores (`--tasks 10`).

# %%
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ntkplast import analysis, figures, models, training
from ntkplast.data import custom
from ntkplast.experiments import grid as experiment
from ntkplast.experiments.scripts import script_args
from ntkplast.runs import checkpoints

parser = argparse.ArgumentParser(description="Regression on a user-defined task stream.")
parser.add_argument("--tasks", type=int, default=10)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--out", default="runs/custom-regression")
args = script_args(parser)

# %%
rng = np.random.default_rng(0)
tasks = []
for _ in range(args.tasks):
    w, c = rng.standard_normal((4, 2)) * 1.5, rng.uniform(0, np.pi, 2)
    x = rng.uniform(-1, 1, (600, 4)).astype(np.float32)
    y = np.sin(x @ w + c).astype(np.float32)
    tasks.append((x[:500], y[:500], x[500:], y[500:]))
stream = custom.ArrayStream(tasks, name="random-sine-maps")
print(stream)

# %%
out = Path(args.out)
tables = {}
for name, method in {"adam": {}, "adamo": {"name": "adamo", "lam": 0.1}}.items():
    cfg = training.RunConfig(
        seed=0, model=models.ArchSpec(widths=(64, 64), num_outputs=2), method=method,
        train=training.TrainConfig(loss="mse", learning_rate=1e-3, batch_size=32,
                                   steps_per_task=args.steps, reference_tasks="every:3"))
    run_dir = out / name
    training.train_run(cfg, run_dir, stream=stream, progress=False,
                       resume=(run_dir / checkpoints.MANIFEST).exists())
    probe = out / "probe.npz"
    checkpoints.save_arrays(probe, {"x": np.concatenate([t[2][:16] for t in tasks])})
    tables[name] = [analysis.analyze(run_dir, analysis.Settings(
        metrics=("ntk", "dormancy", "plasticity"), probe=str(probe)), progress=False)]

# %%
for name, runs in tables.items():
    mse = experiment.per_task(runs, "test_mse")[0]
    print(f"{name:6} test MSE per task: {np.round(mse, 4)}")
fig = figures.per_task_panels(tables, [
    ("test_mse", "all", "test MSE on the new task", True),
    ("online_mse", "all", "online MSE during the task", True),
    ("dormant_fraction_tau0", "mean", "dead-unit fraction", False)], title=str(stream))
print("wrote", figures.save(fig, out / "regression")[0])
