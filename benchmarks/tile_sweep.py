"""Tile sizes of the symmetric layerwise kernel: time per setting against the FLOP floor.

Times ``ntk.kernel_fn(..., engine="layerwise")`` on Θ(X, X) for the 784–512–512–10 MLP (and the
CIFAR-shaped CNN with ``--cnn``) at each ``--traced-rows`` / ``--full-rows`` value of
``ntkplast.ntk._tiles.TRACED_TILE_ROWS`` / ``FULL_TILE_ROWS`` (min of ``--repeats`` calls
after a compile call), and prints each as a ratio to the FLOP floor of ``ntk_speed.py``
measured in the same run. Used to choose the defaults; no neural-tangents needed. A value of 0
means one untiled product (``TILE_BACKENDS`` emptied); any other value tiles on every backend
(``TILE_BACKENDS`` widened), so the tiled loop can be compared with the untiled default on an
accelerator too.

    python benchmarks/tile_sweep.py --n 500 2000 --traced-rows 64 128 256 --full-rows 256 512 1024
"""

from __future__ import annotations

import argparse
import platform

import jax
import jax.numpy as jnp
from ntk_speed import CNN_SHAPES, best_times, layerwise_flops, matmul_rate

from ntkplast import models
from ntkplast.ntk import _layerwise, _tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500])
    parser.add_argument("--traced-rows", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--full-rows", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cnn", choices=sorted(CNN_SHAPES), default=None)
    args = parser.parse_args()
    if args.cnn:
        input_shape, widths, dense_widths = CNN_SHAPES[args.cnn]
        spec = models.ArchSpec(kind="cnn", widths=widths, dense_widths=dense_widths,
                               num_outputs=10)
    else:
        input_shape, spec = (784,), models.ArchSpec(widths=(512, 512), num_outputs=10)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), input_shape)
    rate = matmul_rate()
    print(f"jax {jax.__version__} on {platform.machine()} {jax.devices()[0].device_kind}; "
          f"{args.cnn or 'mlp'}; matmul {rate / 1e9:.1f} GFLOP/s")
    for n in args.n:
        x = jax.random.normal(jax.random.PRNGKey(1), (n,) + input_shape, jnp.float32)
        for trace, name, values in ((True, "TRACED_TILE_ROWS", args.traced_rows),
                                    (False, "FULL_TILE_ROWS", args.full_rows)):
            floor = layerwise_flops(model, input_shape, n, trace) / rate
            fns = []
            for v in values:
                setattr(_tiles, name, v)
                _tiles.TILE_BACKENDS = (jax.default_backend(),) if v else ()
                fn = jax.jit(lambda p, x, t=trace: _layerwise.layerwise_parts(
                    model, p, x, None, t, False))
                jax.block_until_ready(fn(params, x))  # compile with this tile size
                fns.append(lambda fn=fn, x=x: fn(params, x))
            times = best_times(fns, args.repeats)
            cells = "  ".join(f"{v}: {t:.4f} s ({t / floor:.2f}x)" for v, t in
                              zip(values, times, strict=True))
            print(f"N={n} {'traced' if trace else 'full'} floor {floor:.4f} s | {cells}")


if __name__ == "__main__":
    main()
