r"""Onsets: where a metric first moves, and which of several metrics moves first in how many runs.

For a hypothesis such as "isometry loss precedes NTK rank loss precedes plasticity loss":
:func:`onset` finds the first checkpoint where one metric of one run has moved a given fraction of
its total change (or past a relative or absolute level), relative to its first value v₀;
:func:`onset_order` does so for several metrics in several runs and counts, for every pair, the
runs in which one metric's onset comes strictly earlier. Ordering by the fraction of the total
change is scale-free, so metrics in different units compare. A metric is ``"metric"`` (layer
``"all"``) or ``("metric", "layer<l>")``; ``at="task_end"`` looks only at task-end checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.stats._inputs import At, MetricRef
from ntkplast.stats._inputs import name as _name
from ntkplast.stats._inputs import ref as _ref
from ntkplast.stats._inputs import series as _series
from ntkplast.stats._inputs import tables as _tables
from ntkplast.table import Table

__all__ = ["Onset", "OnsetOrder", "onset", "onset_order"]


class Onset(NamedTuple):
    """Where one metric first crosses its criterion (``checkpoint``/``step`` None if never)."""

    metric: str
    layer: str
    checkpoint: int | None
    step: int | None
    direction: str
    baseline: float
    crossing: float
    n_points: int

    def __str__(self) -> str:
        when = "never" if self.step is None else f"step {self.step} (checkpoint {self.checkpoint})"
        return (f"{self.metric}[{self.layer}] {self.direction} past {self.crossing:.4g} "
                f"(baseline {self.baseline:.4g}): {when}; n_points = {self.n_points}")


class OnsetOrder(NamedTuple):
    """Onsets of several metrics in several runs, and how often each precedes each other.

    ``steps[r, i]``: onset step of metric i in run r (NaN: never). ``precedes[i, j]``: runs in
    which metric i's onset is strictly earlier than j's (a never-crossing metric comes last).
    ``order``: metric indices by median onset step (never-crossing last).
    """

    refs: tuple[tuple[str, str], ...]
    onsets: tuple[tuple[Onset, ...], ...]
    steps: np.ndarray
    precedes: np.ndarray
    order: tuple[int, ...]
    criterion: str

    def __str__(self) -> str:
        n_runs = len(self.onsets)
        lines = [f"onset order ({self.criterion}), n_runs = {n_runs}, n_points per run = "
                 + "/".join(str(o[0].n_points) for o in self.onsets) + ":"]
        for rank, i in enumerate(self.order, 1):
            col = self.steps[:, i]
            med = "never" if np.all(np.isnan(col)) else f"median step {np.nanmedian(col):g}"
            runs = ", ".join("never" if np.isnan(s) else f"{s:g}" for s in col)
            lines.append(f"  {rank}. {_name(self.refs[i])}: {med} (runs: {runs})")
        for a, b in zip(self.order, self.order[1:]):
            lines.append(f"  {_name(self.refs[a])} before {_name(self.refs[b])} in "
                         f"{self.precedes[a, b]}/{n_runs} runs (after in "
                         f"{self.precedes[b, a]}/{n_runs})")
        return "\n".join(lines)


def onset(table: Table, metric: str, layer: str = "all", *,
          by: Literal["fraction", "relative", "absolute"] = "fraction", level: float = 0.5,
          direction: Literal["auto", "up", "down"] = "auto", persist: int = 1,
          at: At = "all") -> Onset:
    r"""First checkpoint at which a metric has crossed a criterion, relative to its first value v₀.

    Crossing value c (for ``direction="up"``; mirrored for ``"down"``):

    * ``by="fraction"``: c = v₀ + level·(max_t v_t − v₀), the point where the metric has made
      ``level`` of its total change (scale-free, so metrics in different units compare);
    * ``by="relative"``: c = v₀ + level·|v₀| (needs v₀ ≠ 0);
    * ``by="absolute"``: c = level.

    The onset is the first checkpoint t (t ≥ 1 for the first two) with v_s ≥ c for s = t …
    t + persist − 1 (``persist`` guards against a single noisy checkpoint). ``direction="auto"``
    picks ``"up"`` when the mean of the later values exceeds v₀ (for ``"absolute"``: when v₀ < c).
    """
    ref = _ref((metric, layer), "metric")
    ckpt, step, v = _series(_tables(table, "onset")[0], ref, at)
    if by not in ("fraction", "relative", "absolute"):
        raise NtkplastError(f"by: expected 'fraction', 'relative' or 'absolute', got {by!r}")
    if direction not in ("auto", "up", "down"):
        raise NtkplastError(f"direction: expected 'auto', 'up' or 'down', got {direction!r}")
    if not isinstance(persist, int | np.integer) or persist < 1:
        raise NtkplastError(f"persist: expected a positive integer, got {persist!r}")
    if by == "fraction" and not 0 < level <= 1:
        raise NtkplastError(f"level: with by='fraction' expected a fraction in (0, 1], got {level}")
    if len(v) < 2:
        raise NtkplastError(f"onset: {_name(ref)} has {len(v)} finite checkpoint(s); at least 2 "
                            "are needed")
    v0 = float(v[0])
    if by == "relative" and v0 == 0:
        raise NtkplastError(f"onset: {_name(ref)} starts at 0, so a relative change is undefined;"
                            " use by='fraction' or by='absolute'")
    if direction == "auto":
        direction = ("up" if v0 < level else "down") if by == "absolute" else (
            "up" if np.mean(v[1:]) > v0 else "down")
    sign = 1.0 if direction == "up" else -1.0
    if by == "fraction":
        extreme = float(v.max() if sign > 0 else v.min())
        c = v0 + level * (extreme - v0)
        beyond = sign * (v - c) >= 0 if extreme != v0 else np.zeros(len(v), bool)
    else:
        c = v0 + sign * level * abs(v0) if by == "relative" else float(level)
        beyond = sign * (v - c) >= 0
    if by != "absolute":
        beyond[0] = False
    run = np.convolve(beyond.astype(int), np.ones(int(persist), int), "valid") == persist
    hit = np.flatnonzero(run)
    t = int(hit[0]) if len(hit) else None
    return Onset(metric, layer, None if t is None else int(ckpt[t]),
                 None if t is None else int(step[t]), direction, v0, float(c), len(v))


def onset_order(tables: Table | Sequence[Table], metrics: Sequence[MetricRef], *,
                by: Literal["fraction", "relative", "absolute"] = "fraction",
                level: float = 0.5, direction: str | Sequence[str] = "auto", persist: int = 1,
                at: At = "all") -> OnsetOrder:
    """:func:`onset` of each metric in each run, and which comes first.

    E.g. ``onset_order(runs, [("jac_isometry_index", "layer2"), "ntk_effective_rank",
    "plasticity_loss"], at="task_end")`` asks whether isometry loss precedes NTK rank loss
    precedes plasticity loss. ``direction`` is one value for all or one per metric; ``by`` and
    ``level`` apply to all (``"fraction"`` compares metrics of different scales).
    """
    runs = _tables(tables, "onset_order")
    refs = tuple(_ref(m, f"metrics[{i}]") for i, m in enumerate(metrics))
    if len(refs) < 2:
        raise NtkplastError(f"metrics: expected at least 2 metrics to order, got {len(refs)}")
    dirs = [direction] * len(refs) if isinstance(direction, str) else list(direction)
    if len(dirs) != len(refs):
        raise NtkplastError(f"direction: expected one value or {len(refs)} (one per metric), "
                            f"got {len(dirs)}")
    onsets = tuple(tuple(onset(t, m, layer, by=by, level=level, direction=d, persist=persist,
                               at=at) for (m, layer), d in zip(refs, dirs)) for t in runs)
    steps = np.array([[np.nan if o.step is None else o.step for o in row] for row in onsets],
                     float)
    s = np.where(np.isnan(steps), np.inf, steps)
    precedes = (s[:, :, None] < s[:, None, :]).sum(0)
    med = np.array([np.median(s[:, i]) for i in range(len(refs))])
    order = tuple(int(i) for i in np.argsort(med, kind="stable"))
    criterion = {"fraction": f"{level:g} of the total change", "relative":
                 f"relative change {level:g}", "absolute": f"level {level:g}"}[by]
    return OnsetOrder(refs, onsets, steps, precedes,
                      order, f"{criterion}, persist {persist}" + (", task ends" if at ==
                                                                  "task_end" else ""))
