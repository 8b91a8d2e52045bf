"""Seeds per second: S seeds trained as one vectorised program (jax.vmap) against S separate runs.

Measured at two levels, same total work in both arms:

* **step kernel** — the compiled chunk (a ``lax.scan`` over ``--steps`` steps) of
  ``train.make_trainer``: ``run_chunk`` once per seed against ``run_chunks`` (vmapped over the
  stacked parameters, optimizer states, minibatch indices and step keys of all S seeds), both
  compiled before timing, best of ``--repeats``. Settings: the depth-4 width-512 ReLU MLP
  (784–512×4–10, orthogonal init, Adam 1e-4) at batch 16 on a synthetic MNIST-shaped task (the
  target: 16 vectorised seeds ≥ 4× 16 sequential), and the demo's 3×100 MLP on 64 inputs
  at batch 32.
* **end to end** — what a sweep pays: ``train.train_seeds`` of S seeds into S folders against
  S ``train.train_run`` calls (each builds and compiles its own trainer), 2 tasks of
  ``--run-steps`` steps with checkpoints and evaluations, wall clock including compilation, one
  repeat after a warm-up run: the 4×512 MLP on a synthetic 784-input stream at batch 16, and the
  demo's MLP on permuted digits at batch 32.

    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/sweep_throughput.py [--steps 100]
        [--repeats 3] [--run-steps 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from ntkplast import models, training  # noqa: E402
from ntkplast.data import custom, streams  # noqa: E402

SETTINGS = {  # name -> (ArchSpec, input dim, batch, learning rate)
    "4x512 MLP, batch 16": (models.ArchSpec(widths=(512,) * 4, num_outputs=10,
                                            init="orthogonal"), 784, 16, 1e-4),
    "3x100 MLP (demo), batch 32": (models.ArchSpec(widths=(100,) * 3, num_outputs=10), 64, 32,
                                   1e-3),
}
SEEDS = (1, 4, 16)


def best_time(fn, repeats):
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def kernel(spec, d_in, batch, lr, seeds, steps, repeats):
    """(sequential, vectorised) seconds for one chunk of ``steps`` steps of every seed."""
    model = models.build(spec)
    tx = optax.adam(lr)
    trainer = training.make_trainer(model, tx, training.Hooks(), key=jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2000, d_in)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 2000))
    idx = jnp.asarray(rng.integers(0, 2000, (seeds, steps, batch)))
    keys = jax.random.split(jax.random.PRNGKey(1), seeds)
    states = []
    for s in range(seeds):
        params = model.init(jax.random.PRNGKey(s), (d_in,))
        states.append(training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32)))
    stacked = training.TrainState(jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                                         *[s.params for s in states]),
                                  jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                                         *[s.opt_state for s in states]),
                                  states[0].step)

    def sequential():
        return [trainer.run_chunk_keyed(states[s], x, y, idx[s], keys[s]) for s in range(seeds)]

    return (best_time(sequential, repeats),
            best_time(lambda: trainer.run_chunks(stacked, x, y, idx, keys), repeats))


def end_to_end(spec, stream, batch, lr, seeds, run_steps, folder: Path):
    """(sequential, vectorised) wall seconds to train ``seeds`` runs of 2 tasks into folders."""
    cfg = training.RunConfig(model=spec, train=training.TrainConfig(
        batch_size=batch, learning_rate=lr, steps_per_task=run_steps,
        checkpoint_every=run_steps // 2))
    seed_list = list(range(seeds))
    t0 = time.perf_counter()
    for s in seed_list:
        training.train_run(dataclasses.replace(cfg, seed=s), folder / f"seq{s}", stream=stream,
                           progress=False)
    seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    training.train_seeds(cfg, seed_list, [folder / f"vec{s}" for s in seed_list], stream=stream,
                         progress=False)
    return seq, time.perf_counter() - t0


def streams_for_runs():
    """name -> (ArchSpec, stream, batch, learning rate) of the end-to-end arm."""
    rng = np.random.default_rng(0)
    synthetic = custom.ArrayStream(
        [(rng.standard_normal((2000, 784), np.float32), rng.integers(0, 10, 2000),
          rng.standard_normal((500, 784), np.float32), rng.integers(0, 10, 500))
         for _ in range(2)], num_classes=10, name="synthetic-784")
    digits = streams.make_stream(streams.StreamSpec(kind="permuted", dataset="digits",
                                                    num_tasks=2))
    big, _, big_batch, big_lr = SETTINGS["4x512 MLP, batch 16"]
    small, _, small_batch, small_lr = SETTINGS["3x100 MLP (demo), batch 32"]
    return {"4x512 MLP runs, batch 16": (big, synthetic, big_batch, big_lr),
            "3x100 MLP (demo) runs, batch 32": (small, digits, small_batch, small_lr)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--run-steps", type=int, default=200)
    args = ap.parse_args()
    print(f"jax {jax.__version__}, devices {jax.devices()}, {os.cpu_count()} CPUs")
    header = (f"{'setting':<34} {'S':>3} {'sequential seeds/s':>19} {'vmap seeds/s':>13} "
              f"{'ratio':>6}")
    print(f"step kernel: {args.steps}-step chunks, best of {args.repeats}\n{header}")
    for name, (spec, d_in, batch, lr) in SETTINGS.items():
        for seeds in SEEDS:
            seq, vec = kernel(spec, d_in, batch, lr, seeds, args.steps, args.repeats)
            print(f"{name:<34} {seeds:>3} {seeds / seq:19.2f} {seeds / vec:13.2f} "
                  f"{seq / vec:6.2f}", flush=True)
    print(f"end to end: train_run × S vs train_seeds, 2 tasks × {args.run_steps} steps, "
          f"compile included\n{header}")
    for name, (spec, stream, batch, lr) in streams_for_runs().items():
        for seeds in SEEDS:
            folder = Path(tempfile.mkdtemp(prefix="ntkplast-sweep-bench-"))
            try:
                if seeds == SEEDS[0]:  # warm up: data loading, first-call costs
                    end_to_end(spec, stream, batch, lr, 1, 2, folder / "warm")
                seq, vec = end_to_end(spec, stream, batch, lr, seeds, args.run_steps, folder)
            finally:
                shutil.rmtree(folder)
            print(f"{name:<34} {seeds:>3} {seeds / seq:19.2f} {seeds / vec:13.2f} "
                  f"{seq / vec:6.2f}", flush=True)


if __name__ == "__main__":
    main()
