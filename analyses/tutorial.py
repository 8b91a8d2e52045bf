# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # ntkplast in ten minutes
#
# Open this file as a notebook (`jupytext --to notebook analyses/tutorial.py`, or Jupyter with
# jupytext installed) or run it as a script. It walks through what a researcher does with a
# finished continual-learning run:
#
# 1. load the run (the demo's Adam runs, `bash scripts/demo.sh`; without them a small one is
#    trained here in seconds),
# 2. compute the empirical NTK at two checkpoints,
# 3. compare their spectra,
# 4. test one hypothesis over the seeds, with its interval and R,
# 5. draw a figure,
# 6. bring in a model written in Flax.
#
# ```
# python analyses/tutorial.py [--runs runs/demo] [--tiny]
# ```

# %%
import argparse
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # a script writes files; a notebook shows the figure as well

from ntkplast import adapters, analysis, figures, isometry, ntk, spectra, stats
from ntkplast.analysis import probes
from ntkplast.experiments import demo
from ntkplast.experiments import grid as grid_lib
from ntkplast.experiments.scripts import script_args
from ntkplast.runs import checkpoints
from ntkplast.table import Table

parser = argparse.ArgumentParser(description="ntkplast in ten minutes.")
parser.add_argument("--runs", default="runs/demo", help="a demo folder (ntkplast demo)")
parser.add_argument("--tiny", action="store_true", help="the smallest run that works (tests)")
parser.add_argument("--out", default="runs/tutorial", help="where the figure goes")
args = script_args(parser)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. A finished run
#
# A run folder holds `manifest.json` and one `.npz` checkpoint per task end;
# `checkpoints.open_run` reads it lazily. The demo trains a 3×100 ReLU MLP with Adam on random
# labels re-drawn every task, where plasticity is lost. If there is no demo yet, a smaller
# version of it (fewer tasks and steps) is trained and analysed now.

# %%
runs = Path(args.runs)
if not (runs / "adam").is_dir():
    size = (["stream.num_tasks=6", "train.steps_per_task=5", "model.widths=[16,16]"]
            if args.tiny else ["stream.num_tasks=9"])
    print(f"no demo in {runs}: training a small one (bash scripts/demo.sh makes the real one)")
    grid_lib.run_grid(demo.demo_config(quick=True, overrides=size), {"adam": {}}, range(3),
                      runs, settings=analysis.Settings(probe_size=16 if args.tiny else 64),
                      progress=False, vectorise_seeds=True)
seed_dirs = sorted((runs / "adam").glob("seed*"))
run = checkpoints.open_run(seed_dirs[0])
print(run.spec)
print(f"{len(run)} checkpoints at steps {[c.step for c in run]}")

# %% [markdown]
# ## 2. The empirical NTK at two checkpoints
#
# Θ(x, x') = Σ_p ∂f(x)/∂θ_p ∂f(x')/∂θ_p on a probe set drawn from the tasks the run has seen,
# at the first checkpoint and the last (output-traced: an N × N matrix).

# %%
x = probes.build_probe(run, "seen", 16 if args.tiny else 128, seed=0).x
first, last = 0, len(run) - 1
K_first = ntk.empirical_ntk(run.model, run.params(first), x)
K_last = ntk.empirical_ntk(run.model, run.params(last), x)
print(K_first.shape)

# %% [markdown]
# ## 3. Compare the spectra
#
# Condition number, effective rank (Roy & Vetterli) and the power-law decay of the eigenvalues,
# and how far the kernel moved (kernel distance, Fort et al. 2020: 0 = same up to scale).

# %%
s_first, s_last = spectra.summary(K_first), spectra.summary(K_last)
for name in ("trace", "lambda_max", "condition", "effective_rank", "decay_exponent"):
    print(f"{name:>18}: {getattr(s_first, name):10.4g} → {getattr(s_last, name):10.4g}")
print(f"kernel distance first → last: {float(spectra.kernel_distance(K_first, K_last)):.3f}")

# %% [markdown]
# ## 4. Test one hypothesis, with its interval
#
# Hypothesis: *the worse the NTK is conditioned at the end of a task, the less the network
# memorises that task.* `analysis.analyze` wrote one tidy table per run (also as a pandas
# DataFrame: `table.to_pandas()`); `stats.spearman` correlates the two within each run
# and reports the mean ρ with a Student-t interval over the R runs. Both quantities drift with
# the task index, so by default it correlates their task-to-task changes (first differences,
# the task position partialled out of their ranks): a trend they merely share does not count.
# `trend="none"` gives the raw correlation, for comparison — a shared trend alone inflates it.

# %%
tables = [Table.read_csv(d / "analysis" / "metrics.csv") for d in seed_dirs]
frame = tables[0].to_pandas()
print(frame[frame.metric == "train_accuracy"].head())
for trend in ("difference", "none"):
    result = stats.spearman(tables, x="ntk_condition", y="train_accuracy",
                            at="task_end", trend=trend)
    print(f"trend control {trend!r}: ρ = {result.rho:+.2f} [{result.ci_low:+.2f}, "
          f"{result.ci_high:+.2f}] ({result.level:.0%} interval over R = {result.n_runs} runs)")

# %% [markdown]
# ## 5. A figure
#
# Every figure is a function of the tables: here one run's diagnostics against the step.

# %%
fig = figures.diagnostics(tables[0], title="Adam, seed 0")
print("wrote", *figures.save(fig, out / "diagnostics"))

# %% [markdown]
# ## 6. Bring in a Flax model
#
# A Flax linen MLP (any Dense/Conv stack with one of ntkplast's activations) becomes an ntkplast
# network: `adapters.from_linen` reads its parameters and checks that the converted network
# computes the module's own outputs. Every diagnostic then applies, the fast layerwise NTK engine
# included. (`adapters.from_nnx`, `adapters.from_equinox` do the same for Flax nnx and
# Equinox; `adapters.FunctionModel` takes any `apply(params, x)`; `ntkplast import --framework
# flax` reads Orbax checkpoints.)


# %%
class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for width in (32, 32):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


module = MLP()
variables = module.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]))
flax_net = adapters.from_linen(module, variables, x)
print(flax_net.spec.widths, flax_net.spec.activation, f"max |Δf| = {flax_net.max_error:.1e}")
K_flax = ntk.empirical_ntk(flax_net.model, flax_net.params, x)
print(f"Flax MLP: NTK condition number {spectra.summary(K_flax).condition:.4g}")
for i, s in enumerate(isometry.layer_spectra(flax_net.model, flax_net.params, x).summaries):
    print(f"layer {i}: χ = {s.chi:.3f}, isometry index = {s.isometry_index:.3f}")
