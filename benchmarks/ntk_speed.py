"""Structured NTK engine vs neural-tangents STRUCTURED_DERIVATIVES (Novak et al. 2022).

784–512–512–10 MLP or ntkplast's CNN (``--cnn``; ReLU unless ``--activation``/``--layer-norm``
say otherwise), float32, jit, symmetric kernel Θ(X, X), min of ``--repeats`` timed calls after
one warm-up call (compilation excluded for all). neural-tangents runs at its best: on its own
stax network of the same architecture (``ntk.to_stax``, its own parameter layout) and on
ntkplast's ``model.apply``; ``best_nt/ours`` uses the faster of the two. Prints, for traced
(N × N) and full (N × N × K × K) kernels, every time and the ratio to the FLOP floor:

    floor = FLOPs of the structured contraction plan (matmuls only, each symmetric Gram
            counted once per pair) / measured matmul rate,

where the rate is the best of several jit-compiled float32 2048³ matmuls in the same run, and
the FLOPs are counted from the model's shapes (see :func:`layerwise_flops`). The times printed
are seconds on this machine; compare only the ratios across machines.

    python benchmarks/ntk_speed.py              # N = 500
    python benchmarks/ntk_speed.py --n 500 2000 # also N = 2000
    python benchmarks/ntk_speed.py --series 50 --series-n 1000   # 50 checkpoints, one call
    python benchmarks/ntk_speed.py --matrix-free 20000           # top-20 + trace, no N×N
    python benchmarks/ntk_speed.py --dense 5000                  # dense route, for comparison
    python benchmarks/ntk_speed.py --activation groupsort        # GroupSort (groups of 2)
    python benchmarks/ntk_speed.py --layer-norm                  # ReLU MLP with LayerNorm
    python benchmarks/ntk_speed.py --cnn digits --n 300          # conv 32 → 64 on 8×8×1
    python benchmarks/ntk_speed.py --cnn cifar --n 100           # … on 32×32×3
    python benchmarks/ntk_speed.py --cnn split_cifar --n 100     # the Split-CIFAR config's CNN

The engines are timed interleaved (ours, nt, nt, ours, nt, nt, …) so that load from other processes
hits both alike. Without neural-tangents (core environment) only ntkplast's times and floor
ratios are printed (``--generic`` adds jax's own Jacobian contraction as the peer).
``--matrix-free``/``--dense`` print the process's peak resident memory, so
run each in its own process.
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models, ntk, spectra
from ntkplast.errors import NtkplastError
from ntkplast.ntk import _layerwise, _sorted, _tiles

CNN_SHAPES = {  # input shape, conv channels, dense widths
    "digits": ((8, 8, 1), (32, 64), ()),
    "cifar": ((32, 32, 3), (32, 64), ()),
    "split_cifar": ((32, 32, 3), (32, 64), (128,)),  # configs/split_cifar100_cnn.toml
}


def best_times(fns, repeats: int) -> list[float]:
    """Min wall time of each of ``fns`` over ``repeats`` interleaved rounds, after a warm-up."""
    for fn in fns:
        jax.block_until_ready(fn())
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]


def best_time(fn, repeats: int) -> float:
    """Min wall time of ``repeats`` calls after one warm-up (compile) call."""
    return best_times([fn], repeats)[0]


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (GiB; Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul rate in FLOP/s (2·size³ per product)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
    mm = jax.jit(jnp.matmul)
    return 2 * size ** 3 / best_time(lambda: mm(a, b), repeats)


def layerwise_flops(model: models.Model, input_shape: tuple[int, ...], n: int,
                    trace: bool) -> float:
    """Matmul FLOPs of the structured engine's plan for the symmetric Θ(X, X), X with n rows.

    Per weight layer with input a (d_in per point, or S positions of D = k²·C_in patch
    entries for a conv) and C outputs: forward 2n·d_in·C (conv 2n·S·D·C); the backward
    signals into every layer below the last hidden one, 2nK·d_in·C (conv 2nK·S·D·C); a conv
    layer's per-example weight gradients 2nK·S·D·C, or, where the engine contracts it over
    position pairs instead (``positions_cheaper``), n²·S²·(D + κ·(C + 1)) with κ = K traced,
    K² full, and no gradients. Grams are symmetric, so each counts
    n²·F (half of 2n²·F) for F columns: the Dense input Gram F = d_in; the backward Gram
    F = d (traced: the last hidden layer's diagonal shortcut, d·g for its GroupSort shortcut,
    K·d below it and for other blocks that are not elementwise), F = K²·d full (the (nK)²
    Gram of δ); a conv layer's gradient
    Gram F = K·D·C traced, K²·D·C full; an affine norm of width d adds two backward Grams
    (γ and β). The readout's backward Gram is the identity.
    """
    shapes = jax.eval_shape(lambda x: models.block_inputs(model, model.init(
        jax.random.PRNGKey(0), input_shape), x), jax.ShapeDtypeStruct((1,) + input_shape,
                                                                       jnp.float32))
    k = model.spec.num_outputs
    last = len(model.layers) - 1
    kk = k if trace else k * k
    diagonal = model.spec.kind == "mlp" and all(layer.elementwise for layer in model.layers)
    b = _tiles.tile_size(n, 1 if trace else k)
    pairing = _layerwise.Pairing(n, n, b, b)
    flops = 0.0
    for i, (layer, u) in enumerate(zip(model.layers, shapes, strict=True)):
        c = models.out_widths(model.spec)[i]
        if layer.kind == "conv":
            s, d = math.prod(u.shape[1:3]), model.spec.kernel_size ** 2 * u.shape[-1]
            mac = s * d * c
            flops += 2 * n * mac * (1 + k * (0 < i < last))
            if _layerwise.positions_cheaper(pairing, s, d, c, k, trace):
                flops += n * n * s * s * (d + kk * (c + 1))
                continue
            flops += 2 * n * k * mac + n * n * kk * d * c
            flops += n * n * kk * c if model.spec.use_bias else 0
            continue
        d_in = math.prod(u.shape[1:])
        flops += 2 * n * d_in * c * (1 + k * (0 < i < last))
        flops += n * n * d_in
        if i < last:
            shortcut = trace and i == last - 1 and (
                diagonal or _sorted.sorts_into_readout(model))
            flops += n * n * (c * (1 if diagonal else layer.group_size) if shortcut else kk * c)
            if layer.has_norm and model.spec.layer_norm_affine:
                flops += 2 * n * n * kk * c
    return float(flops)


def peer_fns(model, params, x, trace: bool, nt):
    """neural-tangents STRUCTURED_DERIVATIVES at its best: on its own stax network of the same
    architecture with its own parameter layout, and on ntkplast's ``model.apply``."""
    impl = nt.NtkImplementation.STRUCTURED_DERIVATIVES
    axes = (-1,) if trace else ()
    on_apply = jax.jit(nt.empirical_ntk_fn(model.apply, trace_axes=axes, vmap_axes=0,
                                           implementation=impl))
    fns = {"nt_apply": lambda: on_apply(x, None, params)}
    try:
        _, stax_apply, _ = ntk.to_stax(model.spec)
        stax_params = ntk.to_stax_params(model, params)
    except NtkplastError:  # no stax form (GroupSort, affine LayerNorm): apply only
        return fns
    on_stax = jax.jit(nt.empirical_ntk_fn(stax_apply, trace_axes=axes, vmap_axes=0,
                                          implementation=impl))
    fns["nt_stax"] = lambda: on_stax(x, None, stax_params)
    return fns


def kernel_speed(model, params, input_shape, nt, args) -> None:
    """Structured engine vs STRUCTURED_DERIVATIVES at its best on Θ(X, X), with floor ratios."""
    rate = matmul_rate()
    print(f"measured float32 matmul rate: {rate / 1e9:.1f} GFLOP/s (2048^3, best of 5)")
    print(f"{'N':>5} {'kernel':>6} {'GFLOP':>7} {'floor_s':>8} {'ntkplast_s':>10} "
          f"{'nt_stax_s':>9} {'nt_apply_s':>10} {'best_nt/ours':>12} {'ours/floor':>10} "
          f"{'max_rel_diff':>12} {'generic/ours':>12}")
    for n in args.n:
        x = jax.random.normal(jax.random.PRNGKey(1), (n,) + input_shape, jnp.float32)
        for trace in ([True] if args.no_full else [True, False]):
            ours_fn = ntk.kernel_fn(model, trace_outputs=trace, engine="layerwise")
            fns = {"ours": lambda f=ours_fn, x=x: f(params, x)}
            if nt is not None:
                fns.update(peer_fns(model, params, x, trace, nt))
            if args.generic:
                gen_fn = ntk.kernel_fn(model, trace_outputs=trace, engine="generic")
                fns["generic"] = lambda f=gen_fn, x=x: f(params, x)
            times = dict(zip(fns, best_times(list(fns.values()), args.repeats), strict=True))
            t_ours = times["ours"]
            t_stax, t_apply = times.get("nt_stax", math.nan), times.get("nt_apply", math.nan)
            best_nt, diff = float(np.nanmin([t_stax, t_apply])), math.nan
            if nt is not None:
                ref = np.asarray(fns["nt_apply"]()) * (model.spec.num_outputs if trace else 1)
                got = np.asarray(fns["ours"]())  # nt's traced kernel is the mean over k
                diff = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
            flops = layerwise_flops(model, input_shape, n, trace)
            floor = flops / rate
            print(f"{n:>5} {'traced' if trace else 'full':>6} {flops / 1e9:>7.2f} "
                  f"{floor:>8.4f} {t_ours:>10.4f} {t_stax:>9.4f} {t_apply:>10.4f} "
                  f"{best_nt / t_ours:>12.2f} {t_ours / floor:>10.2f} {diff:>12.2e} "
                  f"{times.get('generic', math.nan) / t_ours:>12.2f}")


def series_speed(model, params_list, dims, nt, args) -> None:
    """T checkpoints: one series_ntk call (+ spectra) vs T separate neural-tangents calls."""
    n, t = args.series_n, args.series
    x = jax.random.normal(jax.random.PRNGKey(1), (n, dims[0]), jnp.float32)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params_list)
    fns = [lambda: ntk.series_ntk(model, stacked, x)]
    if nt is not None:
        sd = jax.jit(nt.empirical_ntk_fn(model.apply, trace_axes=(-1,), vmap_axes=0,
                                         implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))
        fns.append(lambda: [sd(x, None, p) for p in params_list])
    times = best_times(fns, args.repeats)
    kernels = np.asarray(fns[0]())
    t0 = time.perf_counter()
    rows = [spectra.summary(k) for k in kernels]
    t_spec = time.perf_counter() - t0
    ratio = times[1] / times[0] if nt is not None else float("nan")
    print(f"series: T={t} checkpoints x N={n} traced; ntkplast series_ntk {times[0]:.3f} s, "
          f"{t} x nt STRUCTURED_DERIVATIVES "
          f"{times[1] if nt is not None else float('nan'):.3f} s, ratio {ratio:.2f}; "
          f"spectra.summary of all {len(rows)} kernels {t_spec:.3f} s "
          f"(first: trace {rows[0].trace:.4g}, eff. rank {rows[0].effective_rank:.2f})")


def matrix_free(model, params, dims, args) -> None:
    """Top-k eigenvalues (Lanczos) and trace (Hutchinson; exact diagonal) with no N × N matrix."""
    n, k = args.matrix_free, args.top_k
    x = jax.random.normal(jax.random.PRNGKey(1), (n, dims[0]), jnp.float32)
    t0 = time.perf_counter()
    mv = ntk.ntk_matvec(model, params, x)
    top = np.asarray(spectra.top_eigenvalues(mv, n, k, key=jax.random.PRNGKey(2)))
    t_lanczos = time.perf_counter() - t0
    t0 = time.perf_counter()
    est = spectra.hutchinson_trace(mv, n, args.hutchinson, key=jax.random.PRNGKey(3), chunk=1)
    jax.block_until_ready(est)
    t_hutch = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = float(ntk.ntk_diagonal(model, params, x).sum())
    t_diag = time.perf_counter() - t0
    print(f"matrix-free N={n}: top-{k} Lanczos ({max(2 * k + 20, 40)} products, incl. factors "
          f"and compile) {t_lanczos:.1f} s; Hutchinson {args.hutchinson} samples {t_hutch:.1f} s "
          f"-> {float(est.mean):.6g} +- {float(est.stderr):.2g}; exact trace (ntk_diagonal) "
          f"{exact:.6g} in {t_diag:.2f} s; peak RSS {peak_rss_gib():.2f} GiB")
    print(f"  top eigenvalues: {np.array2string(top[:5], precision=6)} ...")


def dense(model, params, dims, args) -> None:
    """Dense route at N: traced kernel (layerwise) then LAPACK eigvalsh, time and peak memory."""
    n = args.dense
    x = jax.random.normal(jax.random.PRNGKey(1), (n, dims[0]), jnp.float32)
    t0 = time.perf_counter()
    kernel = jax.block_until_ready(ntk.empirical_ntk(model, params, x))
    t_kernel = time.perf_counter() - t0
    t0 = time.perf_counter()
    lam = np.linalg.eigvalsh(np.asarray(kernel))[::-1]
    t_eig = time.perf_counter() - t0
    print(f"dense N={n}: kernel {t_kernel:.1f} s (incl. compile), eigvalsh {t_eig:.1f} s, "
          f"trace {lam.sum():.6g}, peak RSS {peak_rss_gib():.2f} GiB")
    print(f"  top eigenvalues: {np.array2string(lam[:5], precision=6)} ...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500], help="probe-set sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-full", action="store_true", help="traced kernels only")
    parser.add_argument("--generic", action="store_true",
                        help="also time ntkplast's generic engine (jax Jacobian contraction): "
                             "the peer where neural-tangents cannot be installed (newest jax)")
    parser.add_argument("--series", type=int, default=0, help="checkpoints T (series mode)")
    parser.add_argument("--series-n", type=int, default=1000)
    parser.add_argument("--matrix-free", type=int, default=0, help="N (matrix-free mode)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--hutchinson", type=int, default=30, help="Hutchinson samples")
    parser.add_argument("--dense", type=int, default=0, help="N (dense-route mode)")
    parser.add_argument("--activation", default="relu", choices=models.ACTIVATION_NAMES,
                        help="hidden activation (groupsort: groups of 2)")
    parser.add_argument("--layer-norm", action="store_true",
                        help="LayerNorm (with γ, β) after each hidden weight layer")
    parser.add_argument("--cnn", choices=sorted(CNN_SHAPES), default=None,
                        help="ntkplast's cnn kind instead of the MLP (kernel mode)")
    args = parser.parse_args()

    if args.cnn:
        input_shape, widths, dense_widths = CNN_SHAPES[args.cnn]
        spec = models.ArchSpec(kind="cnn", widths=widths, dense_widths=dense_widths,
                               num_outputs=10, activation=args.activation,
                               layer_norm=args.layer_norm)
        name = (f"{args.cnn} CNN {'x'.join(map(str, input_shape))} conv "
                f"{'-'.join(map(str, widths))} dense {list(dense_widths)}")
    else:
        input_shape, spec = (784,), models.ArchSpec(widths=(512, 512), num_outputs=10,
                                                    activation=args.activation,
                                                    layer_norm=args.layer_norm)
        name = "784-512-512-10 MLP"
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), input_shape)
    try:
        import neural_tangents as nt
    except ImportError:
        nt = None
    print(f"jax {jax.__version__} on {platform.machine()} {jax.devices()[0].device_kind}, "
          f"{jax.device_count()} device(s); neural-tangents "
          f"{nt.__version__ if nt else 'not installed'}; {name}, {args.activation}"
          f"{' with LayerNorm' if args.layer_norm else ''}, float32")
    dims = [784, 512, 512, 10]
    if args.series:
        params_list = [model.init(jax.random.PRNGKey(s), (dims[0],)) for s in range(args.series)]
        series_speed(model, params_list, dims, nt, args)
    elif args.matrix_free:
        matrix_free(model, params, dims, args)
    elif args.dense:
        dense(model, params, dims, args)
    else:
        kernel_speed(model, params, input_shape, nt, args)


if __name__ == "__main__":
    main()
