"""Time `analyze` on a 30-task, 61-checkpoint run of a 784–256–256–256–10 MLP, probe N = 1,000.

Trains the run on random MNIST-shaped data (a permuted stream over a synthetic dataset), then
times the analysis family by family and all together (wall time and peak resident memory of the
process), and compares the NTK family with computing the same traced NTKs one checkpoint at a
time with neural-tangents' STRUCTURED_DERIVATIVES (its fastest implementation) in the same run.
Targets on 2 cores: the four original families (ntk, isometry, dormancy, plasticity) at most
0.6 s per checkpoint (issue 16), every family with the rival explanations (curvature,
gradient, churn) at most 1.5 s per checkpoint (issue 32). CPU seconds
(``time.process_time``, every thread) are printed beside wall time: on a shared machine they
move less with the load than wall time does.

    .venv/bin/python benchmarks/analyze_speed.py [--tasks 30] [--probe 1000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ntkplast import analysis, data, models, training  # noqa: E402
from ntkplast.data import streams  # noqa: E402
from ntkplast.runs import checkpoints  # noqa: E402


def synthetic_mnist(seed: int = 0, n_train: int = 2000, n_test: int = 1000) -> data.Dataset:
    rng = np.random.default_rng(seed)
    return data.Dataset("synthetic_mnist",
                        rng.random((n_train, 28, 28, 1), dtype=np.float32),
                        rng.integers(0, 10, n_train).astype(np.int32),
                        rng.random((n_test, 28, 28, 1), dtype=np.float32),
                        rng.integers(0, 10, n_test).astype(np.int32), 10)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def nt_series_seconds(run: checkpoints.Run, x: np.ndarray) -> float:
    import neural_tangents as nt

    fn = jax.jit(nt.empirical_ntk_fn(
        run.model.apply, trace_axes=(-1,), vmap_axes=0,
        implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))
    jax.block_until_ready(fn(x, None, run.params(0)))  # compile
    t0 = time.perf_counter()
    for i in range(len(run)):
        jax.block_until_ready(fn(x, None, run.params(i)))
    return time.perf_counter() - t0


def ntkplast_series_seconds(run: checkpoints.Run, x: np.ndarray, per_layer: bool) -> float:
    from ntkplast import ntk

    jax.block_until_ready(ntk.empirical_ntk(run.model, run.params(0), x, per_layer=per_layer))
    t0 = time.perf_counter()
    for i in range(len(run)):
        jax.block_until_ready(ntk.empirical_ntk(run.model, run.params(i), x, per_layer=per_layer))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--probe", type=int, default=1000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ntkplast-bench-"))
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    ds = synthetic_mnist()
    cfg = training.RunConfig(
        seed=0, model=models.ArchSpec(widths=(256, 256, 256), num_outputs=10),
        stream=streams.StreamSpec(kind="permuted", dataset="mnist", num_tasks=args.tasks),
        train=training.TrainConfig(steps_per_task=20, checkpoint_every=10, batch_size=32))
    training.train_run(cfg, run_dir, stream=streams.make_stream(cfg.stream, ds), progress=False)
    run = checkpoints.open_run(run_dir)
    probe_file = work / "probe.npz"
    checkpoints.save_arrays(probe_file, {"x": ds.x_test[:args.probe], "y": ds.y_test[:args.probe]})
    print(f"jax {jax.__version__}; run: {len(run)} checkpoints, probe N={args.probe}, "
          f"{os.cpu_count()} CPU cores")

    def timed(metrics: tuple[str, ...], name: str) -> tuple[float, float]:
        """Wall and CPU seconds (all threads) of one uncached analysis."""
        s = analysis.Settings(metrics=metrics, probe=str(probe_file), probe_size=args.probe)
        shutil.rmtree(work / name, ignore_errors=True)  # time it, not the cache
        t0, c0 = time.perf_counter(), time.process_time()
        analysis.analyze(run_dir, s, out_dir=work / name, progress=False)
        return time.perf_counter() - t0, time.process_time() - c0

    times = {family: timed((family,), f"an_{family}") for family in analysis.FAMILIES}
    original = ("ntk", "isometry", "dormancy", "plasticity")
    for families, name, target in [(original, "the original four families", 0.6),
                                   (analysis.FAMILIES, "all families", 1.5)]:
        total, cpu = timed(families, "an_all")
        print(f"{name} together: {total:.1f} s wall ({total / len(run):.2f} s/checkpoint), "
              f"{cpu / len(run):.2f} CPU s/checkpoint, peak RSS {peak_rss_mib():.0f} MiB "
              f"(target ≤ {target} s/checkpoint); load average {os.getloadavg()[0]:.1f}")
    wall_sum = sum(t for t, _ in times.values())
    for family, (t, c) in times.items():
        print(f"  {family:<11} alone {t:6.1f} s  ({100 * t / wall_sum:4.1f}% of the sum of "
              f"families), {c / len(run):.3f} CPU s/checkpoint")
    try:
        nt_time = nt_series_seconds(run, ds.x_test[:args.probe])
    except ImportError:
        print("neural-tangents not installed: no comparison")
        return
    x = ds.x_test[:args.probe]
    ours = ntkplast_series_seconds(run, x, per_layer=False)
    ours_layers = ntkplast_series_seconds(run, x, per_layer=True)
    print(f"traced NTK at all {len(run)} checkpoints, one call each (loading included):")
    print(f"  neural-tangents STRUCTURED_DERIVATIVES   {nt_time:6.1f} s")
    print(f"  ntkplast layerwise                       {ours:6.1f} s   nt/ntkplast = "
          f"{nt_time / ours:.2f}")
    print(f"  ntkplast layerwise + per-layer parts     {ours_layers:6.1f} s   nt/ntkplast = "
          f"{nt_time / ours_layers:.2f}")
    print(f"  ntkplast ntk family (kernels, 5 spectra, comparisons) {times['ntk'][0]:6.1f} s")


if __name__ == "__main__":
    main()
