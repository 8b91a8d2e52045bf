"""What the accuracy matrix (``train.eval_previous``) costs on a long stream.

After task t, ``eval_previous`` evaluates the network on the test sets of tasks 0 … t: a stream
of T tasks costs T(T + 1)/2 test passes. This script times, on a permuted mnist5k stream of T
tasks (the paper's 4×512 MLP by default), what one visit costs: building an earlier task's test
set (the stream permutes the test images again) and the test pass itself, each averaged over
``--sample`` tasks spread over the stream; then it extrapolates to the whole stream for
``train.eval_previous_every`` = 1, 10 and 50 and ``train.eval_previous_max`` = 0 (every earlier
task) and 20, beside the stream's training time (one task timed, one online pass at batch 16)
for scale.

    .venv/bin/python benchmarks/eval_previous_cost.py [--tasks 500] [--widths 512 512 512 512]
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
from ntkplast.data import streams  # noqa: E402


def passes(num_tasks: int, every: int, most: int) -> int:
    """Test passes of the whole stream when the row is computed every ``every`` tasks over at
    most ``most`` earlier tasks (0: all)."""
    rows = [t for t in range(num_tasks) if (t + 1) % every == 0 or t == num_tasks - 1]
    return sum(len(training.previous_tasks(t, most)) for t in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 512, 512, 512])
    parser.add_argument("--sample", type=int, default=40, help="tasks timed per way")
    args = parser.parse_args()

    stream = streams.make_stream(streams.StreamSpec(kind="permuted", dataset="mnist5k",
                                                    num_tasks=args.tasks, train_size=512))
    model = models.build(models.ArchSpec(widths=tuple(args.widths), num_outputs=10,
                                         init="orthogonal"))
    cfg = training.TrainConfig(learning_rate=1e-4, batch_size=16, online=True)
    tx = training.make_optimizer(cfg)
    trainer = training.make_trainer(model, tx, training.Hooks(), key=jax.random.PRNGKey(1))
    params = model.init(jax.random.PRNGKey(0), stream.input_shape)
    x0, y0 = stream.test_set(0)
    jax.block_until_ready(trainer.evaluate(params, jnp.asarray(x0), jnp.asarray(y0)).score)

    tasks = [int(t) for t in np.linspace(0, args.tasks - 1, args.sample)]
    t0 = time.perf_counter()
    sets = [stream.test_set(t) for t in tasks]
    build = (time.perf_counter() - t0) / len(tasks)
    sets = [(jnp.asarray(x), jnp.asarray(y)) for x, y in sets]
    t0 = time.perf_counter()
    for x, y in sets:
        trainer.evaluate(params, x, y)
    evaluate = (time.perf_counter() - t0) / len(tasks)

    data = stream[0]
    idx = jnp.asarray(training.online_indices(len(data.y_train), 16, 0, len(data.y_train) // 16))
    state = training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
    xd, yd = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    jax.block_until_ready(trainer.run_chunk(state, xd, yd, idx))
    t0 = time.perf_counter()
    jax.block_until_ready(trainer.run_chunk(state, xd, yd, idx))
    task_s = time.perf_counter() - t0

    print(f"device {jax.devices()[0].platform}; {args.tasks} permuted mnist5k tasks, test set "
          f"{len(y0)} images, MLP {'x'.join(map(str, args.widths))}")
    print(f"one visit: build the test set {build * 1e3:.2f} ms, test pass {evaluate * 1e3:.2f} ms; "
          f"one task's training ({len(idx)} steps) {task_s * 1e3:.1f} ms")
    print("every  max   passes  eval_previous_s  training_s (whole stream)")
    for every, most in ((1, 0), (10, 0), (50, 0), (1, 20), (10, 20)):
        n = passes(args.tasks, every, most)
        print(f"{every:5d} {most:4d} {n:8d} {n * (build + evaluate):16.1f} "
              f"{args.tasks * task_s:12.1f}")


if __name__ == "__main__":
    main()
