# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Rival explanations in the same table
#
# The paper explains plasticity loss by NTK conditioning and layer-Jacobian isometry. The field
# offers rivals: curvature (the loss Hessian and Gauss–Newton spectra, sharpness; Lyle et al.
# 2023, Lewandowski et al. 2024), gradient signal (gradient norm, signal-to-noise, optimization
# readiness; Wang et al. 2026), churn and drift (output change between checkpoints, distance from
# initialisation), and dead units. This script puts them all in one predictor test on the same
# checkpoints, with the same trend-controlled statistics, on the demo stream (random labels on
# 256 digits, 30 tasks, a 3×100 ReLU MLP), and compares the newer baselines (FIRE, head reset,
# plasticity injection) with the isometry penalty and AdamO, paired over the same seeds.
#
#     python analyses/rival_explanations.py [--seeds 5] [--out runs/demo] [--quick]
#
# The default folder is the demo's: its Adam, AdamO and isometry-penalty runs (same config, same
# seeds) are reused and the three newer methods added beside them. Every method is trained on
# the same seeds; the predictor test pools all of them (R = methods ×
# seeds runs). Results, whatever they show, go to paper_notes.md ("Rival explanations").

# %%
from __future__ import annotations

import argparse
from pathlib import Path

from ntkplast import analysis, figures, stats
from ntkplast.errors import NtkplastError
from ntkplast.experiments import demo, report
from ntkplast.experiments import grid as grid_lib
from ntkplast.experiments.scripts import repository_root, script_args

ROOT = repository_root(globals())
METHODS = {**demo.DEMO_METHODS,
           "fire": {"name": "fire"},
           "head_reset": {"name": "head_reset"},
           "plasticity_injection": {"name": "plasticity_injection"}}
FAMILIES = ("ntk", "isometry", "dormancy", "plasticity", "curvature", "gradient", "churn")

# %%
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--seeds", type=int, default=5)
parser.add_argument("--out", default=str(ROOT / "runs" / "demo"))
parser.add_argument("--quick", action="store_true", help="a smoke-test size (20 steps a task)")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the demo config, e.g. stream.num_tasks=6")
parser.add_argument("--probe-size", type=int, default=demo.DEMO_PROBE_SIZE)
args = script_args(parser, ["--quick", "--seeds", "2"])
out = Path(args.out)

base = demo.demo_config(quick=args.quick, overrides=args.set)
settings = analysis.Settings(metrics=FAMILIES, probe_size=args.probe_size)
grid = grid_lib.run_grid(base, METHODS, range(base.seed, base.seed + args.seeds), out,
                         settings=settings, vectorise_seeds=True)

# %% [markdown]
# ## Which quantity predicts the next task's plasticity? (old and new predictors together)

# %%
comparison = stats.compare_predictors(grid.tables, stats.PREDICTORS, target="plasticity_score",
                                      lag=1)
print(comparison.summary())
(out / "predictors.txt").write_text(comparison.summary() + "\n")
figures.save(figures.predictor_comparison(
    comparison, title="rival explanations: predictors of the next task's plasticity score"),
    out / "predictors")

# %% [markdown]
# ## The methods: plasticity loss against the common baseline, and paired contrasts

# %%
for line in report.verdict_lines(grid.tables, report.LAST_TASKS):
    print(line)
lines = []
for a, b in [("fire", "isometry"), ("fire", "adamo"), ("fire", "adam"),
             ("head_reset", "adam"), ("plasticity_injection", "adam")]:
    try:
        c = stats.method_contrast(grid.tables, a, b, last=report.LAST_TASKS)
    except NtkplastError as e:
        lines.append(f"{a} − {b}: not computed ({e})")
        continue
    lines.append(f"{a} − {b}, plasticity loss vs the common baseline over the last "
                 f"{report.LAST_TASKS} tasks: {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}] "
                 f"(95% paired t-interval, R = {c.n_pairs} seeds): {c.verdict}")
print("\n".join(lines))
(out / "contrasts.txt").write_text("\n".join(lines) + "\n")
print(f"report: {report.write_report(out)}")
