"""Does the plain baseline lose plasticity on the benchmark streams? Train, then measure.

Usage::

    python benchmarks/plasticity_benchmarks.py [--seeds 5] [--out runs/benchmarks]
        [--only random_labels_digits,...] [--last 0.5] [--set train.learning_rate=3e-4 ...]

For every config in ``configs/benchmarks/`` (each at its quick size) it trains ``--seeds`` seeds
in one vectorised program (``train.train_seeds``; finished runs are reused), then reads each
run's ``plasticity_loss_baseline`` (its shortfall from a fresh network trained on that task
alone, on the stream's plasticity measure) on the reference tasks in the last ``--last``
fraction of the stream, averages them per run, and prints over the R runs the mean with a
Student-t 95% interval (mean ± t_{0.975, R−1} · s/√R; exact coverage for normal run means,
which the per-run averages of many tasks approach) and the wall time. Positive = plasticity lost.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

from ntkplast import training
from ntkplast.stats import t_interval

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "benchmarks"


def run_loss(run, last: float) -> tuple[float, float, float]:
    """Mean over the run's reference tasks in its last ``last`` fraction of: the plasticity
    loss against the baseline, the run's measure and the baseline's."""
    tasks = run.manifest["tasks"]
    start = int((1 - last) * len(tasks))
    recs = [r for r in tasks[start:] if "plasticity_loss_baseline" in r]
    return tuple(float(np.mean([r[k] for r in recs]))
                 for k in ("plasticity_loss_baseline", "plasticity_score", "baseline_score"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "runs" / "benchmarks"))
    p.add_argument("--only", default="")
    p.add_argument("--last", type=float, default=0.5)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or sorted(f.stem for f in
                                                             CONFIGS.glob("*.toml"))
    print(f"{'benchmark':28s} {'measure':18s} {'R':>2s}  {'loss vs baseline [95% t-CI]':32s} "
          f"{'run':>7s} {'baseline':>8s} {'time':>7s}")
    for name in names:
        cfg = training.load_config(CONFIGS / f"{name}.toml", args.overrides)
        seeds = list(range(cfg.seed, cfg.seed + args.seeds))
        dirs = [pathlib.Path(args.out) / name / f"seed{s}" for s in seeds]
        t0 = time.perf_counter()
        runs = training.train_seeds(cfg, seeds, dirs, resume=True, progress=False)
        elapsed = time.perf_counter() - t0
        per_run = np.array([run_loss(r, args.last) for r in runs])
        mean, lo, hi = t_interval(per_run[:, 0])
        measure = runs[0].manifest["tasks"][-1]["plasticity_measure"]
        print(f"{name:28s} {measure:18s} {len(runs):2d}  {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"
              f"{'':8s} {per_run[:, 1].mean():7.4f} {per_run[:, 2].mean():8.4f} "
              f"{elapsed:6.0f}s", flush=True)


if __name__ == "__main__":
    main()
