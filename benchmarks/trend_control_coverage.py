"""Coverage of the association tests' intervals under a shared trend, for each trend control.

R runs × T tasks; per trial x = a·f(t) + e_x and y = −a·f(t) + e_y (a ~ U(2, 4) noise standard
deviations per run, times ``--amplitude`` / 3), f one monotone shape (linear, saturating,
sigmoid), e AR(1) with coefficient φ. x and y share only the trend, so a 95% interval should
cover 0 in about 95% of trials. Prints, per (shape, φ, trend control), the fraction of trials
whose interval covers 0 for ``stats.spearman`` (lag 0) and ``compare_predictors`` (lag 1,
pooled / within-run). The acceptance criterion of the default (``trend="difference"``) is ≥ 90%
(``tests/stats/test_trend_control.py`` checks it on a mix of shapes):

    python benchmarks/trend_control_coverage.py [--trials 200] [--amplitude 3]
"""

from __future__ import annotations

import argparse

import numpy as np

from ntkplast import stats as hy
from ntkplast.table import Table

SHAPES = {"linear": lambda t, n: t / n, "saturating": lambda t, n: 1 - np.exp(-t / 8),
          "sigmoid": lambda t, n: 1 / (1 + np.exp(-(t - n / 2) / 3))}


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(size=n)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + np.sqrt(1 - phi * phi) * e[i]
    return e


def _run(x: np.ndarray, y: np.ndarray) -> Table:
    rows = [(t, t, t, "all", m, float(v[t])) for m, v in (("x", x), ("y", y))
            for t in range(len(x))]
    rows += [(t, t, t, "all", "test_accuracy", 0.5) for t in range(len(x))]
    return Table.from_rows(rows)


def coverage(shape: str, phi: float, trend: str, *, runs: int, tasks: int, trials: int,
             amplitude: float, seed: int = 0) -> np.ndarray:
    """Fractions of trials whose interval covers 0: spearman, pooled, within."""
    rng = np.random.default_rng(seed)
    f = SHAPES[shape](np.arange(tasks), tasks)
    out = []
    for _ in range(trials):
        tables = []
        for _ in range(runs):
            a = rng.uniform(2, 4) * amplitude / 3
            tables.append(_run(a * f + _ar1(rng, tasks, phi), -a * f + _ar1(rng, tasks, phi)))
        s = hy.spearman(tables, "x", "y", trend=trend)
        c = hy.compare_predictors(tables, {"x": "x"}, "y", trend=trend)
        out.append([r.ci_low <= 0 <= r.ci_high
                    for r in (s, c.pooled.stats[0], c.within.stats[0])])
    return np.mean(out, axis=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--tasks", type=int, default=30)
    p.add_argument("--amplitude", type=float, default=3.0)
    args = p.parse_args()
    print(f"coverage of 0 by the 95% interval, R = {args.runs} runs × {args.tasks} tasks, "
          f"{args.trials} trials each, trend amplitude ≈ {args.amplitude:g} noise sd")
    print(f"{'shape':<11} {'phi':>4}  {'trend':<10}  spearman  pooled  within")
    for shape in SHAPES:
        for phi in (0.0, 0.5, 0.9):
            for trend in ("difference", "task", "none"):
                c = coverage(shape, phi, trend, runs=args.runs, tasks=args.tasks,
                             trials=args.trials, amplitude=args.amplitude)
                print(f"{shape:<11} {phi:>4.1f}  {trend:<10}  {c[0]:>8.3f}  {c[1]:>6.3f}  "
                      f"{c[2]:>6.3f}", flush=True)


if __name__ == "__main__":
    main()
