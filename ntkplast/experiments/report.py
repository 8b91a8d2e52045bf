"""One self-contained HTML page per run or per folder of runs: ``ntkplast report PATH``.

For a run folder (``manifest.json``): its config, the task table (each task's plasticity measure,
the reset references' scores and the plasticity losses), its verdict line and the figures of
:func:`ntkplast.figures.run_figure_set`. For a folder of runs (a demo, a grid, a sweep: every
analysed run below it, grouped by the folder above ``seed<k>``): each method's config, the verdict
lines the demo prints (plasticity loss against the common baseline over the last tasks, Student-t
interval over seeds, R, and each method's paired contrast with the first over the same seeds), each
method's average accuracy, backward transfer and forgetting after the last task
(:func:`forgetting_lines`), the predictor test's tables and the comparison figures, then the first
seed's run figures per method. An RL agent's folder (``agent.json``, :mod:`ntkplast.rl.loop`) is a
run: its task table is its actor's (returns, the fresh agent's, the plasticity losses) and its
figures are of both networks' rows. For the output of ``ntkplast branch`` (a folder with
``effects.txt`` and ``branches.csv``): the counterfactual branches' paired effects, their figure
and every branch's row (:func:`branch_section`). Figures are embedded as PNG data, so the one file
is what a researcher sends to a colleague; it is written atomically.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ntkplast import __version__, figures, forgetting, stats
from ntkplast.errors import NtkplastError
from ntkplast.io.files import atomic_write_bytes
from ntkplast.io.safe_read import MANIFEST_BYTES, read_bytes
from ntkplast.runs import checkpoints
from ntkplast.table import Table

__all__ = ["AGENT_TASK_COLUMNS", "LAST_TASKS", "TASK_COLUMNS", "branch_section", "contrast_lines",
           "find_runs", "forgetting_lines", "loss_summary", "predictor_test", "run_manifest",
           "verdict_lines", "write_report"]

LAST_TASKS = 10
"""Tasks at the end of a stream over which the verdict averages the plasticity loss."""

TASK_COLUMNS = ("task", "end_step", "plasticity_measure", "plasticity_score", "reference_score",
                "baseline_score", "plasticity_loss", "plasticity_loss_baseline")
AGENT_TASK_COLUMNS = ("task", "game", "online_return", "final_return", "reference_final_return",
                      "baseline_final_return", "plasticity_loss", "plasticity_loss_baseline",
                      "episodes", "env_steps")
_AGENT = "agent.json"  # an RL agent's folder (ntkplast.rl.loop): its actor's manifest holds
                       # the task records, its analysis both networks' rows


def run_manifest(run: Path) -> dict:
    """The manifest of a run folder, or of an RL agent's actor (which holds its task records)."""
    return checkpoints.read_manifest(run / "actor" if (run / _AGENT).is_file() else run)


def loss_summary(tables: Mapping[str, Sequence[Table]], last: int = LAST_TASKS
                 ) -> dict[str, tuple[float, float, float, int]]:
    """Per method: the plasticity loss against the common baseline, each seed's mean over its
    reference tasks among the last ``last`` tasks (:func:`ntkplast.stats.last_tasks_means`),
    then mean and Student-t interval over seeds (and R); methods with fewer than two finite
    seeds, or without reference tasks, are left out."""
    out = {}
    for name, runs in tables.items():
        try:
            per_seed = stats.last_tasks_means(list(runs), "plasticity_loss_baseline", last=last)
        except NtkplastError:  # no task ends, or no reference tasks: nothing to summarise
            continue
        if len(per_seed) >= 2 and np.isfinite(per_seed).all():
            out[name] = (*stats.t_interval(per_seed), len(per_seed))
    return out


def contrast_lines(tables: Mapping[str, Sequence[Table]], last: int = LAST_TASKS, *,
                   methods: Sequence[str] | None = None) -> list[str]:
    """One line per method after the first: its plasticity loss against the common baseline
    minus the first method's, paired over the same seeds (:func:`ntkplast.stats.method_contrast`;
    95% paired t-interval, R pairs) — the tested form of "loses more / less than". ``methods``:
    the methods that have a loss summary (default: those of :func:`loss_summary`; a caller that
    has computed it passes its keys)."""
    names = list(loss_summary(tables, last) if methods is None else methods)
    lines = []
    for name in names[1:]:
        try:
            c = stats.method_contrast(tables, name, names[0], last=last)
        except NtkplastError:  # different seed counts: no pairing
            continue
        what = {"a > b": f"loses more than {names[0]}", "a < b": f"loses less than {names[0]}",
                "not distinguishable": f"not distinguishable from {names[0]}"}[c.verdict]
        lines.append(f"paired contrast, plasticity loss over the last {last} tasks: {name} − "
                     f"{names[0]} {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}] (95% paired "
                     f"t-interval over the same seeds, R = {c.n_pairs}): {name} {what}")
    return lines


def verdict_lines(tables: Mapping[str, Sequence[Table]], last: int = LAST_TASKS) -> list[str]:
    """One line per method: its plasticity loss against the common baseline over the last
    ``last`` tasks with the 95% t-interval over seeds, R, and the verdict — lost (interval above
    0), kept (below 0: better than a fresh network) or not distinguishable; then the paired
    contrasts of every method with the first (:func:`contrast_lines`)."""
    lines = []
    summary = loss_summary(tables, last)
    for name, (m, lo, hi, r) in summary.items():
        verdict = ("lost" if lo > 0 else "kept (better than a fresh network)" if hi < 0
                   else "not distinguishable from a fresh network")
        lines.append(f"plasticity loss vs the common baseline, last {last} tasks: {name} "
                     f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] (95% t-interval, R = {r}): plasticity "
                     f"{verdict}")
    return lines + contrast_lines(tables, last, methods=list(summary))


def forgetting_lines(groups: Mapping[str, Sequence[Path]]) -> list[str]:
    """One line per method whose runs record an accuracy matrix: the average accuracy (ACC),
    backward transfer (BWT) and forgetting after each run's last recorded task
    (:func:`ntkplast.forgetting.summary`), each the mean over seeds with its 95% Student-t
    interval (:func:`ntkplast.stats.t_interval`) and R, the seeds with a finite value (one
    seed: its value, no interval). ``groups``: method → run folders (:func:`find_runs`)."""
    lines = []
    for name, runs in groups.items():
        per_seed = []
        for run in runs:
            try:
                summary = forgetting.summary(run_manifest(run))
            except NtkplastError:  # a malformed task record: that seed is left out
                continue
            if summary is not None:
                per_seed.append(summary)
        parts = []
        for key, label in zip(forgetting.NAMES, ("ACC", "BWT", "forgetting")):
            v = np.array([s[key] for s in per_seed if s[key] is not None], float)
            if len(v) >= 2:
                m, lo, hi = stats.t_interval(v)
                parts.append(f"{label} {m:.3f} [{lo:.3f}, {hi:.3f}] (R = {len(v)})")
            elif len(v) == 1:
                parts.append(f"{label} {v[0]:.3f} (R = 1: no interval)")
        if parts:
            lines.append(f"after the last task: {name} " + ", ".join(parts)
                         + " (mean [95% t-interval] over seeds)")
    return lines


def _single_run_verdict(table: Table, last: int = LAST_TASKS) -> list[str]:
    """One run (R = 1, so no interval): its mean plasticity loss against the common baseline
    over its reference tasks among the last ``last`` tasks."""
    try:
        values = figures.task_values([table], "plasticity_loss_baseline")[0, -last:]
    except NtkplastError:
        return []
    values = values[np.isfinite(values)]
    if not len(values):
        return []
    return [f"plasticity loss vs the common baseline, last {last} tasks: "
            f"{float(values.mean()):+.3f} (mean of {len(values)} reference task(s); one run, "
            "R = 1: no interval)"]


def find_runs(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """Analysed runs at or below ``folder`` (a ``manifest.json`` and ``analysis/metrics.csv``),
    grouped by method: the manifest's ``group.method`` when it records one (an import's
    ``--method``), else the folder holding ``seed<k>`` folders (relative to ``folder``; ``folder``
    itself when the seeds sit directly in it), else the run's own; seeds in numeric order (the
    manifest's ``group.seed``, else the folder's). A seed is never shown as a method. A sweep's
    selection runs (``selection/`` beside its ``selection.json``) are left out: they chose
    hyper-parameters and are not evaluated."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NtkplastError(f"report: {folder} is not a folder; give a run folder or a folder "
                            "of runs (a demo, grid or sweep output)")
    selection = folder / "selection"  # a sweep's selection runs: not evaluated, not reported
    skip = selection if (folder / "selection.json").is_file() else None
    found = sorted((p.parent for name in (checkpoints.MANIFEST, _AGENT)
                    for p in folder.rglob(name)
                    if (p.parent / "analysis" / "metrics.csv").is_file()
                    and (skip is None or skip not in p.parents)),
                   key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)",
                                                                                str(p))])
    if not found:
        raise NtkplastError(f"report: no analysed run in {folder}; run `ntkplast analyze` (or "
                            "the demo / sweep) first")
    groups: dict[str, list[tuple[int, Path]]] = {}
    for run in found:
        group = run_manifest(run).get("group", {})
        seed_folder = run != folder and re.fullmatch(r"seed\d+", run.name) is not None
        seed = group.get("seed", int(run.name[4:]) if seed_folder else 0)
        if "method" in group:
            method = group["method"]
        else:
            method = (run.parent if seed_folder else run).relative_to(folder).as_posix()
            method = folder.resolve().name if method == "." else method
        groups.setdefault(method, []).append((seed, run))
    return {m: [r for _, r in sorted(runs, key=lambda sr: sr[0])] for m, runs in groups.items()}


def predictor_test(tables: Mapping[str, Sequence[Table]], target: str = "plasticity_score",
                   predictors: Mapping[str, stats.PredictorSpec] | None = None,
                   ) -> tuple[stats.PredictorComparison | None, dict[str, str]]:
    """:func:`ntkplast.stats.compare_predictors` of ``predictors`` (default
    :data:`ntkplast.stats.PREDICTORS`) for the next task's ``target``, leaving out each
    predictor that cannot be tested on these runs (a family not analysed, a value — or, under
    the default trend control, a task-to-task change — constant over every point); returns the
    comparison (None when no predictor is left) and the left-out predictors with the reason."""
    predictors = stats.PREDICTORS if predictors is None else predictors
    dropped: dict[str, str] = {}
    for name, ref in predictors.items():
        try:
            stats.compare_predictors(tables, {name: ref}, target=target, lag=1)
        except NtkplastError as e:
            dropped[name] = str(e)
    kept = {n: r for n, r in predictors.items() if n not in dropped}
    try:
        return (stats.compare_predictors(tables, kept, target=target, lag=1) if kept else None,
                dropped)
    except NtkplastError as e:  # each alone works, together too few complete points
        return None, {**dropped, "all together": str(e)}


def _img(fig: Any, caption: str) -> str:
    png = figures.render(fig, "png")
    plt.close(fig)
    return _png(png, caption)


def _png(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(c in r for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("" if v is None else str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _run_section(run_dir: Path, heading: str) -> list[str]:
    manifest = run_manifest(run_dir)
    columns = AGENT_TASK_COLUMNS if (run_dir / _AGENT).is_file() else TASK_COLUMNS
    parts = [f"<h2>{html.escape(heading)}</h2>",
             "<details><summary>config</summary>"
             + _pre(json.dumps(manifest.get("config"), indent=1)) + "</details>",
             "<h3>tasks</h3>", _table(manifest.get("tasks", []), (
                 *columns, *manifest.get("task_scores", {}).get("columns", ())))]
    for name, fig in figures.run_figure_set(run_dir / "analysis", title=heading).items():
        parts.append(_img(fig, f"{heading}: {name}"))
    return parts


def branch_section(folder: str | os.PathLike) -> list[str]:
    """The HTML of the counterfactual branches ``ntkplast branch`` wrote into ``folder``
    (``effects.txt``, ``branch_effects.png``, ``branches.csv``); empty where there are none."""
    folder = Path(folder)
    effects, rows_file = folder / "effects.txt", folder / "branches.csv"
    if not (effects.is_file() and rows_file.is_file()):
        return []
    parts = ["<h2>counterfactual branches</h2>",
             _pre(read_bytes(effects, limit=MANIFEST_BYTES, within=folder).decode())]
    if (folder / "branch_effects.png").is_file():
        parts.append(_png(read_bytes(folder / "branch_effects.png", limit=MANIFEST_BYTES,
                                     within=folder),
                          "each intervention's paired effect and what it moved"))
    text = read_bytes(rows_file, limit=MANIFEST_BYTES, within=folder).decode()
    rows = list(csv.DictReader(text.splitlines()))
    if rows:
        parts.append("<details><summary>every branch</summary>" + _table(rows, list(rows[0]))
                     + "</details>")
    return parts


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#111}
table{border-collapse:collapse;font-size:0.8em}td,th{border:1px solid #ccc;padding:2px 6px}
img{max-width:100%}figure{margin:1em 0}figcaption{font-size:0.8em;color:#555}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.8em}"""


def write_report(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``report.html`` for the run or folder of runs ``folder`` (module docstring) to
    ``out`` (default ``folder/report.html``); returns its path."""
    folder = Path(folder)
    branched = branch_section(folder) if folder.is_dir() else []
    try:
        groups = find_runs(folder)
    except NtkplastError:
        if not branched:
            raise
        groups = {}  # a branch output alone: its branches are not analysed runs
    tables = {m: [Table.read_csv(r / "analysis" / "metrics.csv") for r in runs]
              for m, runs in groups.items()}
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>ntkplast report: {html.escape(folder.resolve().name)}</h1>",
             f"<p>{sum(map(len, groups.values()))} analysed run(s) of {len(groups)} "
             f"method(s); written {now} by ntkplast {__version__}.</p>"]
    verdicts = verdict_lines(tables)
    if not verdicts and len(groups) == 1 and len(tables[next(iter(tables))]) == 1:
        verdicts = _single_run_verdict(next(iter(tables.values()))[0])
    if verdicts:
        parts += ["<h2>verdicts</h2>", _pre("\n".join(verdicts))]
    transfer = forgetting_lines(groups)
    if transfer:
        parts += ["<h2>forgetting and transfer</h2>", _pre("\n".join(transfer))]
    if len(groups) > 1 or any(len(v) > 1 for v in groups.values()):
        parts.append("<h2>comparison</h2>")
        for name, draw in (("plasticity", figures.plasticity_curves),
                           ("theory", figures.theory_panels),
                           ("kernel regime", figures.kernel_regime),
                           ("NTK condition vs next task's plasticity",
                            figures.kernel_vs_plasticity)):
            try:
                parts.append(_img(draw(tables), name))
            except NtkplastError as e:  # a family the analysis left out
                parts.append(f"<p>{html.escape(name)}: not drawn ({html.escape(str(e))})</p>")
        comparison, dropped = predictor_test(tables)
        if dropped:
            parts.append("<p>left out of the predictor test: " + "; ".join(
                html.escape(f"{name} ({why})") for name, why in dropped.items()) + "</p>")
        if comparison is not None:
            parts += ["<h3>predictor test</h3>", _pre(comparison.summary()),
                      _img(figures.predictor_comparison(comparison), "predictor test")]
    for method, runs in groups.items():
        heading = method if len(runs) == 1 else f"{method}, {runs[0].name}"
        parts += _run_section(runs[0], heading)
    parts += branched
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>ntkplast report: {html.escape(folder.resolve().name)}</title>"
            f"<style>{_STYLE}</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    path = Path(out) if out is not None else folder / "report.html"
    atomic_write_bytes(path, page.encode())
    return path
