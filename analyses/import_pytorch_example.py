# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Analysing a PyTorch run with ntkplast
#
# A small PyTorch CNN (`Conv2d → ReLU → AvgPool2d(2)`, then `Flatten → Linear`) trains on the
# 8×8 digits with labels re-shuffled every task (a plasticity stream), saving a safetensors
# state dict after every task. `ntkplast import` turns that folder into a run folder, and
# `ntkplast analyze` computes the empirical NTK spectrum and unit dormancy at every checkpoint.
# Needs torch (the full environment); a few seconds on 2 cores.
#
# ```
# python analyses/import_pytorch_example.py [--out runs/pytorch_import]
# ```

# %%
import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits

from ntkplast import analysis
from ntkplast.experiments.scripts import script_args
from ntkplast.runs import checkpoints, interop

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="runs/pytorch_import")
parser.add_argument("--tasks", type=int, default=4)
args = script_args(parser)
out = Path(args.out)
shutil.rmtree(out, ignore_errors=True)
(out / "torch").mkdir(parents=True)

# %% [markdown]
# ## Train in PyTorch, one safetensors file per task

# %%
torch.manual_seed(0)
digits = load_digits()
x_nhwc = (digits.images / 16.0).astype(np.float32)[..., None]  # N × 8 × 8 × 1
x_nchw = torch.from_numpy(np.moveaxis(x_nhwc, -1, 1).copy())
net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                          torch.nn.Linear(16 * 4 * 4, 64), torch.nn.ReLU(),
                          torch.nn.Linear(64, 10))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
save_file(net.state_dict(), str(out / "torch" / "task_0.safetensors"))
for task in range(1, args.tasks + 1):
    y = torch.from_numpy(rng.permutation(10)[digits.target])  # labels shuffled per task
    for _ in range(300):
        idx = torch.randint(len(y), (64,))
        loss = torch.nn.functional.cross_entropy(net(x_nchw[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (net(x_nchw).argmax(1) == y).float().mean().item()
    print(f"task {task}: train accuracy {acc:.3f}")
    save_file(net.state_dict(), str(out / "torch" / f"task_{task}.safetensors"))
with torch.no_grad():  # the network's own outputs: the importer detects and checks the activation
    np.savez(out / "torch" / "probe.npz", x=x_nhwc[:64], outputs=net(x_nchw[:64]).numpy(),
             step=np.int64(args.tasks))

# %% [markdown]
# ## Import and analyse (the same as `ntkplast import … --number task` and `ntkplast analyze`)
#
# A state dict does not record the activation; `probe.npz` beside the checkpoints holds the
# network's outputs on 64 inputs, from which the importer detects ReLU (and would refuse a
# network it cannot reproduce).

# %%
run = interop.import_folder(out / "torch", out / "run", pattern=r"task_(\d+)",
                            input_shape=(8, 8, 1), number="task")
with torch.no_grad():
    gap = np.abs(np.asarray(run.model.apply(run.params(-1), x_nhwc[:64]))
                 - net(x_nchw[:64]).numpy()).max()
print(f"imported {len(run)} checkpoints; max |ntkplast − PyTorch| logit gap {gap:.2e}")
checkpoints.save_arrays(out / "probe.npz", {"x": x_nhwc[:128], "y": digits.target[:128]})
settings = analysis.Settings(metrics=("ntk", "dormancy"), probe=str(out / "probe.npz"),
                             probe_size=128)
table = analysis.analyze(out / "run", settings, progress=False)
cols = table.columns
for metric, layer in (("ntk_trace", "all"), ("ntk_effective_rank", "all"),
                      ("dead_fraction", "layer0")):
    keep = (cols["metric"] == metric) & (cols["layer"] == layer)
    print(f"{metric:20s} {layer:7s}", np.round(cols["value"][keep].astype(float), 3))
