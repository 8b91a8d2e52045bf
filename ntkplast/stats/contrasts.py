r"""Paired method contrasts: does method A lose more plasticity than method B on the same seeds?

Two methods trained from the same seeds share their initialisation, data order and task
draws, so the seed-to-seed spread they have in common cancels in the per-seed difference.
Comparing the two methods' separate intervals by eye throws that away (and overlapping
intervals do not mean "no difference"). :func:`paired_contrast` is the paired Student-t
analysis of the per-seed differences d_s = a_s − b_s over the R seeds where both are finite
(Student 1908):

    d̄ = (1/R) Σ_s d_s,   d̄ ± t_{(1+level)/2, R−1} · s_d/√R,   t = d̄ / (s_d/√R),
    p = 2 P(T_{R−1} > |t|),

s_d the sample standard deviation of the d_s (divisor R − 1) — exactly ``scipy.stats.ttest_rel``
and its confidence interval. :func:`method_contrast` reads a per-seed value from each
method's run tables first: the mean of a task-end metric over the last ``last`` tasks (by
default the plasticity loss against the common baseline), :func:`last_tasks_means`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import check_level
from ntkplast.stats.intervals import t_interval
from ntkplast.table import Table, per_task

__all__ = ["PairedContrast", "last_tasks_means", "method_contrast", "paired_contrast"]


class PairedContrast(NamedTuple):
    """A paired difference a − b over seeds with its Student-t interval.

    Attributes:
      label: what was compared.  diff: mean per-seed difference d̄.
      ci_low, ci_high: the paired t-interval at ``level``.  p_value: two-sided paired t-test.
      n_pairs: seeds R with both values finite.  per_pair: the d_s.  level: coverage.
    """

    label: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_pairs: int
    per_pair: tuple[float, ...]
    level: float

    @property
    def verdict(self) -> str:
        """``"a > b"``, ``"a < b"`` (the interval excludes 0) or ``"not distinguishable"``."""
        return ("a > b" if self.ci_low > 0 else "a < b" if self.ci_high < 0
                else "not distinguishable")

    def __str__(self) -> str:
        return (f"{self.label}: paired difference {self.diff:+.3f} [{self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}] ({100 * self.level:g}% paired t-interval over seeds, "
                f"R = {self.n_pairs}), p = {self.p_value:.3g}")


def paired_contrast(a: ArrayLike, b: ArrayLike, *, level: float = 0.95,
                    label: str = "a − b") -> PairedContrast:
    """Paired Student-t contrast of per-seed values ``a[s]`` and ``b[s]`` (module docstring);
    seeds where either is not finite are left out.

    Raises:
      NtkplastError: a and b of different lengths, or fewer than 2 complete pairs.

    Examples:
      Three seeds, method a above method b on each by about 0.5:

      >>> from ntkplast import stats
      >>> res = stats.paired_contrast([1.0, 2.0, 3.0], [0.5, 1.4, 2.6], label="adam − adamo")
      >>> print(f"{res.diff:+.3f} [{res.ci_low:+.3f}, {res.ci_high:+.3f}], p = {res.p_value:.4f}")
      +0.500 [+0.252, +0.748], p = 0.0131
      >>> res.n_pairs, res.verdict
      (3, 'a > b')
    """
    from scipy import stats

    check_level(level)
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise NtkplastError(f"paired_contrast: {len(a)} values of a against {len(b)} of b; "
                            "pass one value per seed for both, in the same seed order")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if len(d) < 2:
        raise NtkplastError(f"paired_contrast: {len(d)} seed(s) with both values finite; at "
                            "least 2 pairs are needed")
    mean, low, high = t_interval(d, level)
    se = float(d.std(ddof=1)) / np.sqrt(len(d))
    p = (float(2 * stats.t.sf(abs(mean) / se, len(d) - 1)) if se > 0
         else float(mean == 0))
    return PairedContrast(label, mean, low, high, p, len(d), tuple(d.tolist()), float(level))


def last_tasks_means(runs: Sequence[Table], metric: str = "plasticity_loss_baseline", *,
                     last: int = 10, layer: str = "all") -> np.ndarray:
    """Per run (seed), the mean of ``metric`` at the end of its last ``last`` tasks, tasks
    without a value skipped (``(R,)``; NaN for a run with none there).

    Examples:
      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> def run(losses):       # one task-end checkpoint per task
      ...     return Table.from_rows([(t, 10 * t, t, "all", m, v) for t, loss in enumerate(losses)
      ...                             for m, v in (("test_accuracy", 0.9),
      ...                                          ("plasticity_loss_baseline", loss))])
      >>> means = stats.last_tasks_means([run([0.1, 0.2, 0.4]), run([0.0, 0.3, 0.5])], last=2)
      >>> print([f"{m:.2f}" for m in means])
      ['0.30', '0.40']
    """
    if not isinstance(last, int) or last < 1:
        raise NtkplastError(f"last: expected a positive number of tasks, got {last!r}")
    values = per_task(list(runs), metric, layer)[:, -last:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a run without values there: NaN
        return np.nanmean(values, axis=1)


def method_contrast(tables: Mapping[str, Sequence[Table]], a: str, b: str,
                    metric: str = "plasticity_loss_baseline", *, last: int = 10,
                    layer: str = "all", level: float = 0.95) -> PairedContrast:
    """Does method ``a`` lose more plasticity than method ``b`` on the same seeds?

    Per seed, :func:`last_tasks_means` of ``metric`` for each method, then
    :func:`paired_contrast` of a − b (> 0: a has more of ``metric``; for the default
    plasticity loss, a loses more). ``tables[a][s]`` and ``tables[b][s]`` must be the same seed
    (as :func:`ntkplast.experiments.grid.run_grid` returns them).

    Raises:
      NtkplastError: an unknown method, different numbers of seeds, fewer than 2 complete
        pairs, or a metric the tables do not have.

    Examples:
      >>> from ntkplast import stats
      >>> from ntkplast.table import Table
      >>> def run(losses):       # one task-end checkpoint per task
      ...     return Table.from_rows([(t, 10 * t, t, "all", m, v) for t, loss in enumerate(losses)
      ...                             for m, v in (("test_accuracy", 0.9),
      ...                                          ("plasticity_loss_baseline", loss))])
      >>> tables = {"adam": [run([0.1, 0.3, 0.5]), run([0.2, 0.3, 0.6]), run([0.0, 0.4, 0.4])],
      ...           "adamo": [run([0.1, 0.1, 0.2]), run([0.2, 0.1, 0.2]), run([0.0, 0.1, 0.2])]}
      >>> res = stats.method_contrast(tables, "adam", "adamo", last=2)
      >>> print(f"{res.diff:+.3f} [{res.ci_low:+.3f}, {res.ci_high:+.3f}] {res.verdict}")
      +0.267 [+0.195, +0.338] a > b
    """
    for name in (a, b):
        if name not in tables:
            raise NtkplastError(f"method_contrast: no method {name!r}; the tables hold "
                                f"{list(tables)}")
    if len(tables[a]) != len(tables[b]):
        raise NtkplastError(f"method_contrast: {a!r} has {len(tables[a])} seed(s), {b!r} "
                            f"{len(tables[b])}; a paired contrast needs the same seeds")
    values = [last_tasks_means(tables[m], metric, last=last, layer=layer) for m in (a, b)]
    return paired_contrast(*values, level=level,
                           label=f"{metric}, last {last} tasks: {a} − {b}")
