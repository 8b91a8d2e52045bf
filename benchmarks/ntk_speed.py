"""Layerwise NTK engine vs neural-tangents STRUCTURED_DERIVATIVES (Novak et al. 2022).

784–512–512–10 MLP (ReLU unless ``--activation``/``--layer-norm`` say otherwise), float32, jit,
symmetric kernel Θ(X, X), min of ``--repeats`` timed calls after one warm-up call (compilation
excluded for both). Prints, for traced (N × N) and full
(N × N × K × K) kernels: both times, their ratio, and each time's ratio to the FLOP floor:

    floor = FLOPs of the layerwise contraction plan (matmuls only) / measured matmul rate,

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

The two engines are timed interleaved (ours, nt, ours, nt, …) so that load from other processes
hits both alike. Without neural-tangents (core environment) only ntkplast's times and floor
ratios are printed. ``--matrix-free``/``--dense`` print the process's peak resident memory, so
run each in its own process.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models, ntk, spectra


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


def layerwise_flops(dims: list[int], num_out: int, n: int, trace: bool,
                    diagonal: bool = True, norms: int = 0) -> float:
    """Matmul FLOPs of the layerwise engine for Θ(X, X), X with n rows.

    ``dims`` = [d_0, d_1, …, d_L] (input, hidden widths, K = d_L). Forward 2n·Σ d_{l-1}d_l;
    backward signals 2nK·d_l·d_{l-1} for the layers below the last hidden one; activation Grams
    2n²·d_{l-1} per layer; backward Grams: traced 2n²·d_{L-1} for the last hidden layer and
    2n²·K·d_l below it, full 2n²K²·d_l for every hidden layer (the readout's is the identity).
    Blocks that are not ``diagonal`` (GroupSort, LayerNorm) take the last hidden layer's
    traced Gram over K·d_{L-1} too; each of ``norms`` affine norms (of width d) adds two more
    backward Grams (γ and β), 2·2n²K·d traced, 2·2n²K²·d full.
    """
    hidden = dims[1:-1]
    f = 2 * n * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
    f += 2 * n * num_out * sum(a * b for a, b in zip(hidden[:-1], hidden[1:], strict=True))
    f += 2 * n * n * sum(dims[:-1])
    k_gram = num_out if trace else num_out ** 2
    if trace:
        f += 2 * n * n * ((hidden[-1] if diagonal else num_out * hidden[-1])
                          + num_out * sum(hidden[:-1]))
    else:
        f += 2 * n * n * num_out ** 2 * sum(hidden)
    f += norms * 2 * 2 * n * n * k_gram * hidden[-1]
    return float(f)


def kernel_speed(model, params, dims, nt, args) -> None:
    """Layerwise vs STRUCTURED_DERIVATIVES on Θ(X, X), with FLOP-floor ratios."""
    rate = matmul_rate()
    print(f"measured float32 matmul rate: {rate / 1e9:.1f} GFLOP/s (2048^3, best of 5)")
    print(f"{'N':>5} {'kernel':>6} {'GFLOP':>7} {'floor_s':>8} {'ntkplast_s':>10} "
          f"{'nt_sd_s':>8} {'sd/ours':>8} {'ours/floor':>10} {'sd/floor':>8} "
          f"{'max_rel_diff':>12}")
    for n in args.n:
        x = jax.random.normal(jax.random.PRNGKey(1), (n, dims[0]), jnp.float32)
        for trace in ([True] if args.no_full else [True, False]):
            ours_fn = ntk.kernel_fn(model, trace_outputs=trace, engine="layerwise")
            fns = [lambda f=ours_fn, x=x: f(params, x)]
            if nt is not None:
                sd = jax.jit(nt.empirical_ntk_fn(
                    model.apply, trace_axes=(-1,) if trace else (), vmap_axes=0,
                    implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))
                fns.append(lambda f=sd, x=x: f(x, None, params))
            times = best_times(fns, args.repeats)
            t_ours, t_sd, diff = times[0], float("nan"), float("nan")
            if nt is not None:
                t_sd = times[1]
                ref = np.asarray(fns[1]()) * (dims[-1] if trace else 1)  # nt: mean over k
                got = np.asarray(fns[0]())
                diff = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
            norms = sum(layer.has_norm for layer in model.layers) \
                if model.spec.layer_norm_affine else 0
            flops = layerwise_flops(dims, dims[-1], n, trace,
                                    all(layer.elementwise for layer in model.layers), norms)
            floor = flops / rate
            print(f"{n:>5} {'traced' if trace else 'full':>6} {flops / 1e9:>7.2f} {floor:>8.4f} "
                  f"{t_ours:>10.4f} {t_sd:>8.4f} {t_sd / t_ours:>8.2f} {t_ours / floor:>10.2f} "
                  f"{t_sd / floor:>8.2f} {diff:>12.2e}")


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
    args = parser.parse_args()

    dims = [784, 512, 512, 10]
    spec = models.ArchSpec(widths=tuple(dims[1:-1]), num_outputs=dims[-1],
                           activation=args.activation, layer_norm=args.layer_norm)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (dims[0],))
    try:
        import neural_tangents as nt
    except ImportError:
        nt = None
    print(f"jax {jax.__version__} on {platform.machine()} {jax.devices()[0].device_kind}, "
          f"{jax.device_count()} device(s); neural-tangents "
          f"{nt.__version__ if nt else 'not installed'}; 784-512-512-10 {args.activation} MLP"
          f"{' with LayerNorm' if args.layer_norm else ''}, float32")
    if args.series:
        params_list = [model.init(jax.random.PRNGKey(s), (dims[0],)) for s in range(args.series)]
        series_speed(model, params_list, dims, nt, args)
    elif args.matrix_free:
        matrix_free(model, params, dims, args)
    elif args.dense:
        dense(model, params, dims, args)
    else:
        kernel_speed(model, params, dims, nt, args)


if __name__ == "__main__":
    main()
