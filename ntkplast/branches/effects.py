r"""What an intervention did: its paired effect on plasticity and the diagnostics it moved.

For parent run s (a seed), branch point k and intervention I, let y_I(s, k) be the branch's
plasticity over the tasks it trained, the mean of the runs' ``plasticity_score`` (the task-end
value of the run's plasticity measure, e.g. the training accuracy reached on a random-label
task) over tasks k+1 … k+n. The branches of one (s, k) share everything but I, so the effect
of I is the paired difference

    d_I(s, k) = y_I(s, k) − y_none(s, k).

Branch points of one seed are not independent (one network, one history), so the headline
contrast averages over the branch points first, d̄_I(s) = mean_k d_I(s, k), and takes the
paired Student-t interval over the R seeds (:func:`ntkplast.stats.paired_contrast`); each
branch point also gets its own interval over the seeds. With a single parent run the pairs are
its branch points (stated beside the interval).

"Did it move what it should, and only that?": the branches' first checkpoints (the state right
after the intervention; the control's is the parent's own) are measured on one probe set, the
test inputs of task k+1 (``task:<k+1>``, seeded, the same for every branch of (s, k)), with the
analysis families ``ntk``, ``isometry`` and ``dormancy``
(:func:`ntkplast.analysis.families.analyze_checkpoint`): NTK trace and condition number,
effective rank, the mean over hidden layers of the dead fraction and of the layer Jacobians'
isometry deviation, and the weight norm. :data:`DIAGNOSTICS` lists them; each is reported as
the control's and the intervention's mean over seeds × branch points.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ntkplast import stats
from ntkplast.analysis import probes
from ntkplast.analysis.driver import CACHE_VERSION
from ntkplast.analysis.families import KernelHistory, Settings, analyze_checkpoint
from ntkplast.errors import NtkplastError
from ntkplast.io.files import atomic_write_bytes
from ntkplast.io.safe_read import read_json
from ntkplast.runs import checkpoints

__all__ = ["DIAGNOSTICS", "BranchComparison", "BranchEffect", "BranchRow", "branch_contrast",
           "compare_branches", "read_branches", "write_comparison"]

DIAGNOSTICS: dict[str, tuple[str, str]] = {
    "ntk_trace": ("ntk_trace", "all"),
    "ntk_condition": ("ntk_condition", "all"),
    "ntk_effective_rank": ("ntk_effective_rank", "all"),
    "dead_fraction": ("dead_fraction", "layers"),
    "jac_isometry_deviation": ("jac_isometry_deviation", "layers"),
    "weight_norm": ("weight_norm", "all"),
}
"""Name → (analysis metric, ``"all"`` row or ``"layers"``: the mean of its per-layer rows)."""

_CACHE = "start_diagnostics.json"


class BranchRow(NamedTuple):
    """One branch: its parent's label and seed, branch point, intervention, folder, plasticity
    measure, its mean over the branch's tasks (``plasticity``), and the first checkpoint's
    :data:`DIAGNOSTICS`."""

    parent: str
    seed: int
    at: int
    intervention: str
    path: Path
    measure: str
    plasticity: float
    diagnostics: dict[str, float]


class BranchEffect(NamedTuple):
    """One intervention against the control: the headline paired contrast (None with fewer
    than 2 pairs), the per-branch-point contrasts, and each diagnostic's (control,
    intervention) mean at the first checkpoint."""

    intervention: str
    overall: stats.PairedContrast | None
    per_point: dict[int, stats.PairedContrast]
    moved: dict[str, tuple[float, float]]


class BranchComparison(NamedTuple):
    """Every branch of an output folder and every intervention's effect."""

    rows: list[BranchRow]
    effects: list[BranchEffect]
    measure: str
    pairs_over: str

    def lines(self) -> list[str]:
        """The comparison as text, one intervention per paragraph."""
        out = [f"next-task plasticity ({self.measure}, mean over the tasks each branch "
               f"trained), intervention − control (none), paired over {self.pairs_over}:"]
        for e in self.effects:
            head = (str(e.overall) if e.overall is not None
                    else f"{e.intervention} − none: fewer than 2 pairs, no interval")
            out.append(head)
            for k, c in e.per_point.items():
                out.append(f"    at task {k}: {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                           f" (R = {c.n_pairs})")
            moved = ", ".join(f"{name} {a:.3g} → {b:.3g}" for name, (a, b) in e.moved.items())
            out.append(f"    first checkpoint, control → intervention (means): {moved}")
        return out


def _layer_mean(rows: Sequence[tuple[str, str, float]], metric: str, scope: str) -> float:
    values = [v for layer, m, v in rows if m == metric
              and (layer == "all" if scope == "all" else layer.startswith("layer"))]
    return float(np.mean(values)) if values else float("nan")


def _start_diagnostics(path: Path, at: int, settings: Settings, data_dir: str | None,
                       cache: dict[str, Any]) -> dict[str, float]:
    """:data:`DIAGNOSTICS` of the branch's first checkpoint, from ``cache`` when its digest,
    the settings and the analysis version agree."""
    run = checkpoints.open_run(path)
    key = {"sha256": run.digest(0), "probe_size": settings.probe_size, "seed": settings.seed,
           "engine": settings.engine, "version": CACHE_VERSION}
    entry = cache.get(str(path))
    if isinstance(entry, dict) and entry.get("key") == key:
        return {k: float(v) for k, v in entry["values"].items()}
    probe = probes.build_probe(run, f"task:{at + 1}", settings.probe_size, settings.seed,
                               data_dir)
    rows, _ = analyze_checkpoint(run, 0, probe, settings, KernelHistory(None))
    values = {name: _layer_mean(rows, metric, scope)
              for name, (metric, scope) in DIAGNOSTICS.items()}
    cache[str(path)] = {"key": key, "values": values}
    return values


def read_branches(out: str | os.PathLike, *, probe_size: int = 128, seed: int = 0,
                  data_dir: str | None = None) -> list[BranchRow]:
    """Every finished branch folder below ``out`` (a ``branch`` manifest entry), with its
    plasticity and its first checkpoint's diagnostics (cached in ``out/start_diagnostics.json``
    by the checkpoint's digest)."""
    out = Path(out)
    settings = Settings(metrics=("ntk", "isometry", "dormancy"), probe_size=probe_size,
                        seed=seed)
    cache_path = out / _CACHE
    cache = read_json(cache_path, within=out) if cache_path.is_file() else {}
    rows = []
    for manifest_path in sorted(out.rglob(checkpoints.MANIFEST)):
        path = manifest_path.parent
        manifest = checkpoints.read_manifest(path)
        record = manifest.get("branch")
        if not isinstance(record, dict) or not manifest.get("complete"):
            continue
        at = int(record["at_task"])
        tasks = [t for t in manifest.get("tasks", []) if t.get("task", -1) > at]
        if not tasks:
            continue
        values = [t.get("plasticity_score") for t in tasks]
        plasticity = float(np.mean([v if v is not None else np.nan for v in values]))
        label = path.parent.parent.relative_to(out).as_posix()
        rows.append(BranchRow(label, int(manifest["config"]["seed"]), at,
                              record["intervention"], path,
                              str(tasks[0].get("plasticity_measure", "plasticity_score")),
                              plasticity, _start_diagnostics(path, at, settings, data_dir,
                                                             cache)))
    if not rows:
        raise NtkplastError(f"{out}: no finished branch below it; run `ntkplast branch` first")
    atomic_write_bytes(cache_path, json.dumps(cache, indent=1).encode())
    return rows


def branch_contrast(rows: Sequence[BranchRow], intervention: str, control: str = "none", *,
                    level: float = 0.95) -> BranchEffect:
    """``intervention`` against ``control`` (by default the recorded continuation, ``none``;
    another intervention asks which of two restores more) over the (seed, branch point) pairs
    both have: the headline and per-point paired contrasts and the diagnostics' means (module
    docstring)."""
    other = control
    control = {(r.parent, r.at): r for r in rows if r.intervention == other}
    mine = {(r.parent, r.at): r for r in rows if r.intervention == intervention}
    pairs = sorted(set(control) & set(mine))
    parents = sorted({p for p, _ in pairs})
    points = sorted({k for _, k in pairs})
    per_point = {}
    for k in points:
        at_k = [(mine[(p, k)].plasticity, control[(p, k)].plasticity)
                for p in parents if (p, k) in mine and (p, k) in control]
        if len(at_k) >= 2:
            a, b = zip(*at_k, strict=True)
            per_point[k] = stats.paired_contrast(a, b, level=level, label=f"at {k}")
    label = f"{intervention} − {other}"
    if len(parents) >= 2:  # per seed: the mean over its branch points, then pairs over seeds
        a = [np.mean([mine[(p, k)].plasticity for k in points if (p, k) in mine]) for p in parents]
        b = [np.mean([control[(p, k)].plasticity for k in points if (p, k) in mine])
             for p in parents]
        overall = stats.paired_contrast(a, b, level=level, label=label)
    elif len(pairs) >= 2:  # one run: its branch points are the pairs
        overall = stats.paired_contrast([mine[q].plasticity for q in pairs],
                                        [control[q].plasticity for q in pairs], level=level,
                                        label=label)
    else:
        overall = None
    moved = {name: (float(np.mean([control[q].diagnostics[name] for q in pairs])),
                    float(np.mean([mine[q].diagnostics[name] for q in pairs])))
             for name in DIAGNOSTICS} if pairs else {}
    return BranchEffect(intervention, overall, per_point, moved)


def compare_branches(out: str | os.PathLike, *, level: float = 0.95, probe_size: int = 128,
                     seed: int = 0, data_dir: str | None = None) -> BranchComparison:
    """The paired effect of every intervention below ``out`` on plasticity, and the
    diagnostics it moved (module docstring).

    Args:
      out: a ``branch`` output folder.
      level: the intervals' coverage.
      probe_size: the size of the probe set of the first-checkpoint diagnostics
        (``task:<k+1>``).
      seed: the seed of that probe set.
      data_dir: where the stream's dataset is, if not where the runs were trained.

    Returns:
      A :class:`BranchComparison` (``.lines()`` prints it).
    """
    rows = read_branches(out, probe_size=probe_size, seed=seed, data_dir=data_dir)
    names = list(dict.fromkeys(r.intervention for r in rows if r.intervention != "none"))
    parents = {r.parent for r in rows}
    pairs_over = ("seeds (R = number of seeds; each seed's branch points averaged first)"
                  if len(parents) >= 2 else "the branch points of one run")
    return BranchComparison(rows, [branch_contrast(rows, n, level=level) for n in names],
                            rows[0].measure, pairs_over)


def write_comparison(out: str | os.PathLike, comparison: BranchComparison) -> list[Path]:
    """Write ``out/effects.txt`` (the lines) and ``out/branches.csv`` (one row per branch)."""
    out = Path(out)
    text = out / "effects.txt"
    atomic_write_bytes(text, ("\n".join(comparison.lines()) + "\n").encode())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["parent", "seed", "at", "intervention", "folder", "measure", "plasticity",
                     *DIAGNOSTICS])
    for r in comparison.rows:
        writer.writerow([r.parent, r.seed, r.at, r.intervention,
                         r.path.relative_to(out).as_posix(), r.measure, repr(r.plasticity),
                         *(repr(r.diagnostics[n]) for n in DIAGNOSTICS)])
    table = out / "branches.csv"
    atomic_write_bytes(table, buf.getvalue().encode())
    return [text, table]
