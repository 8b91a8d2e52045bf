"""Training steps per second: ntkplast (jit + scan) against an equivalent PyTorch CPU loop.

Same MLP (784–100–100–100–10 ReLU), Adam (lr 1e-3), cross-entropy, same minibatch indices drawn
from one MNIST-shaped synthetic task (60,000 × 784), both on the CPU, measured in this run.
Prints steps/s of each and the ratio ntkplast / PyTorch (target ≥ 2 at batch 16 and 32).

    .venv/bin/python benchmarks/train_throughput.py [--steps 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ntkplast import models, training  # noqa: E402

WIDTHS = (100, 100, 100)


def ntkplast_steps_per_s(x, y, idx, repeats):
    model = models.build(models.ArchSpec(widths=WIDTHS, num_outputs=10))
    cfg = training.TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=idx.shape[1])
    tx = training.make_optimizer(cfg)
    trainer = training.make_trainer(model, tx, training.Hooks(), key=jax.random.PRNGKey(1))
    params = model.init(jax.random.PRNGKey(0), (784,))
    state = training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
    xd, yd, idxd = jnp.asarray(x), jnp.asarray(y), jnp.asarray(idx)
    jax.block_until_ready(trainer.run_chunk(state, xd, yd, idxd))  # compile
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out, _ = trainer.run_chunk(state, xd, yd, idxd)
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    return len(idx) / best


def torch_steps_per_s(x, y, idx, repeats):
    import torch

    torch.manual_seed(0)
    xt, yt, it = torch.from_numpy(x), torch.from_numpy(y).long(), torch.from_numpy(idx).long()
    best = np.inf
    for _ in range(repeats + 1):  # the first pass warms up
        layers, d = [], 784
        for w in WIDTHS:
            layers += [torch.nn.Linear(d, w), torch.nn.ReLU()]
            d = w
        net = torch.nn.Sequential(*layers, torch.nn.Linear(d, 10))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        t0 = time.perf_counter()
        for b in it:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[b]), yt[b])
            loss.backward()
            opt.step()
        best = min(best, time.perf_counter() - t0)
    return len(idx) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    args = ap.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    x = rng.random((60_000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60_000).astype(np.int32)
    print(f"jax {jax.__version__}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
          f"{args.steps} steps, best of {args.repeats}")
    print(f"{'batch':>5} {'ntkplast steps/s':>17} {'torch steps/s':>14} {'ratio':>7}")
    for b in args.batch_sizes:
        idx = training.minibatch_indices(0, 0, len(y), b, 0, args.steps)
        ours = ntkplast_steps_per_s(x, y, idx, args.repeats)
        theirs = torch_steps_per_s(x, y, idx, args.repeats)
        print(f"{b:>5} {ours:>17.0f} {theirs:>14.0f} {ours / theirs:>6.2f}x")


if __name__ == "__main__":
    main()
