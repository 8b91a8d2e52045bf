"""Seeds per second: S seeds trained as one vectorised program (jax.vmap) against S separate runs.

Issue 7's measurement: the depth-4 width-512 ReLU MLP (784–512×4–10, orthogonal init, Adam 1e-4)
at batch 16 on one synthetic MNIST-shaped task, and the demo's 3×100 MLP on 64 inputs at batch 32.
Both arms run ``train.make_trainer``'s compiled chunk (a ``lax.scan`` over ``--steps`` steps):
sequentially once per seed, or ``jax.vmap``-ed over the stacked parameters, optimizer states and
minibatch indices of all S seeds in one call. Same total work; both compiled before timing; best
of ``--repeats``.

    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/sweep_throughput.py [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from ntkplast import models, train  # noqa: E402

SETTINGS = {  # name -> (ArchSpec, input dim, batch, learning rate)
    "4x512 MLP, batch 16": (models.ArchSpec(widths=(512,) * 4, num_outputs=10,
                                            init="orthogonal"), 784, 16, 1e-4),
    "3x100 MLP (demo), batch 32": (models.ArchSpec(widths=(100,) * 3, num_outputs=10), 64, 32,
                                   1e-3),
}


def best_time(fn, repeats):
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(spec, d_in, batch, lr, seeds, steps, repeats):
    model = models.build(spec)
    tx = optax.adam(lr)
    trainer = train.make_trainer(model, tx, train.Hooks(), jax.random.PRNGKey(0))
    vectorised = jax.jit(jax.vmap(trainer.run_chunk, in_axes=(0, None, None, 0)))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2000, d_in)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 2000))
    idx = jnp.asarray(rng.integers(0, 2000, (seeds, steps, batch)))
    states = []
    for s in range(seeds):
        params = model.init(jax.random.PRNGKey(s), (d_in,))
        states.append(train.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32)))
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)

    def sequential():
        return [trainer.run_chunk(states[s], x, y, idx[s]) for s in range(seeds)]

    return (best_time(sequential, repeats),
            best_time(lambda: vectorised(stacked, x, y, idx), repeats))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"jax {jax.__version__}, devices {jax.devices()}, {os.cpu_count()} CPUs, "
          f"{args.steps}-step chunks, best of {args.repeats}")
    print(f"{'setting':<28} {'S':>3} {'sequential seeds/s':>19} {'vmap seeds/s':>13} "
          f"{'ratio':>6}")
    for name, (spec, d_in, batch, lr) in SETTINGS.items():
        for seeds in (1, 4, 16):
            seq, vec = measure(spec, d_in, batch, lr, seeds, args.steps, args.repeats)
            # seeds per second: seed-chunks of `steps` steps finished per second
            print(f"{name:<28} {seeds:>3} {seeds / seq:19.2f} {seeds / vec:13.2f} "
                  f"{seq / vec:6.2f}", flush=True)


if __name__ == "__main__":
    main()
