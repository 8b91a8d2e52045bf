"""Every diagnostic over a checkpoint series, into one tidy table.

``analyze(run_dir)`` draws one probe set (:mod:`~ntkplast.analysis.probes`), then for each
checkpoint in order computes the metric families asked for (``ntk``, ``isometry``,
``dormancy``, ``plasticity``: :mod:`~ntkplast.analysis.families`, which defines every metric)
and writes rows ``(checkpoint, step, task, layer, metric, value)`` of a
:class:`~ntkplast.table.Table`.

Each checkpoint is validated once: its parameters as they are read (``Run.params``), then
with the probe set by one :func:`ntkplast.validate.check_probe_set`; the families call the
diagnostics' unchecked cores, ``<name>_unchecked`` (the public functions run the same checks
on every call).
Results are cached per checkpoint under ``<out>/cache/<key>/`` (``key`` hashes the settings and
the probe set), each written atomically, so re-running skips finished checkpoints and a killed
analysis resumes. Each entry's name carries a hash of everything else its rows depend on: the
checkpoint file's SHA-256 (checked against the manifest's,
:meth:`~ntkplast.runs.checkpoints.Run.digest`), its manifest entry, and the digests of the
initial and previous checkpoints the kernel is compared with (and the previous step), so a
checkpoint that was missing, repaired or replaced is recomputed together with the neighbour
compared with it. A checkpoint that cannot be read, differs from its
digest or holds NaN/Inf parameters is skipped with a warning and one row ``checkpoint_skipped`` =
1 (and is not cached). The output folder is locked while it is written
(:func:`ntkplast.io.lock.folder_lock`); ``settings.json`` is removed before the new outputs are
written and written last, so a folder holding it holds one finished analysis. The table goes
to ``<out>/metrics.csv`` and ``metrics.jsonl`` (:func:`ntkplast.table.table_writer`), the raw
spectra to ``<out>/spectra.npz`` (``ntk_eigenvalues/<ckpt>``,
``ntk_layer_eigenvalues/<layer>/<ckpt>``, once ``ntk_infinite_eigenvalues``,
``jac_sv/<layer>/<ckpt>``, ``io_sv/<ckpt>``, ``weight_sv/<layer>/<ckpt>``,
``dormancy_scores/<layer>/<ckpt>``), all three streamed to disk checkpoint by checkpoint into
temporaries renamed into place once every checkpoint is done (an interrupted analysis leaves
none of them half-written under its name, and any previous version intact), so memory holds one
checkpoint's rows and arrays and the two kernels it is compared with, however long the series;
the probe set goes to ``<out>/probe.npz``. ``<out>`` defaults to ``RUN_DIR/analysis``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ntkplast import spectra
from ntkplast.analysis import probes
from ntkplast.analysis.families import (
    FAMILIES,
    KernelHistory,
    Rows,
    Settings,
    analyze_checkpoint,
    infinite_kernel,
    possible_families,
)
from ntkplast.errors import NtkplastError
from ntkplast.io import files
from ntkplast.io.lock import folder_lock
from ntkplast.runs import checkpoints
from ntkplast.table import Table, stored_table, table_writer

__all__ = ["CACHE_VERSION", "FAMILIES", "Settings", "analyze", "analyze_checkpoint",
           "parse_metrics"]

CACHE_VERSION = 9  # bump when the rows of ntkplast.analysis.families change
_NOT_EXPORTED = ("raw/ntk_kernel", "raw/ntk_top_eigenvectors")  # cached, not in spectra.npz


def _settings_key(run: checkpoints.Run, settings: Settings, probe: probes.Probe) -> str:
    numbers = {k: v for k, v in dataclasses.asdict(settings).items() if k != "device_count"}
    blob = json.dumps([CACHE_VERSION, numbers, probe.fingerprint(),
                       run.manifest["model"], run.manifest["input_shape"]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cache_name(info: checkpoints.CheckpointInfo, digest: str, history: KernelHistory) -> str:
    """``<checkpoint>.<entry key>.npz``: the key hashes the checkpoint file's digest, its manifest
    entry, and the digests (and the previous step) of the checkpoints it is compared with."""
    blob = json.dumps([digest, dataclasses.asdict(info), history.init_digest,
                       history.prev_digest, history.prev_step], sort_keys=True, default=str)
    return f"{Path(info.file).stem}.{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"


def _to_arrays(rows: Rows, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {f"raw/{k}": v for k, v in raw.items()}
    out["layer"] = np.array([r[0] for r in rows], dtype=str)
    out["metric"] = np.array([r[1] for r in rows], dtype=str)
    out["value"] = np.array([r[2] for r in rows], dtype=np.float64)
    return out


def _checkpoint_arrays(run: checkpoints.Run, i: int, probe: probes.Probe, settings: Settings,
                       history: KernelHistory, cache: Path
                       ) -> tuple[dict[str, np.ndarray], str | None]:
    """Checkpoint ``i``'s rows and raw arrays, from the cache or computed and cached, and its
    file's digest (None when skipped).

    A checkpoint that fails its checks is skipped with a warning (one bad file must not sink
    the series) and not cached, so a repaired file is analysed on the next call.
    """
    info = run[i]
    try:
        digest = run.digest(i)
        path = cache / _cache_name(info, digest, history)
        if path.exists():
            return checkpoints.load_arrays(path, within=cache), digest
        rows, raw = analyze_checkpoint(run, i, probe, settings, history)
    except NtkplastError as e:
        warnings.warn(f"skipping checkpoint {i} ({info.file}): {e}", stacklevel=3)
        return _to_arrays([("all", "checkpoint_skipped", 1.0)], {}), None
    arrays = _to_arrays(rows, raw)
    checkpoints.save_arrays(path, arrays)
    return arrays, digest


def analyze(run_dir: str | os.PathLike, settings: Settings | None = None, *,
            out_dir: str | os.PathLike | None = None, data_dir: str | None = None,
            progress: bool = True, checkpoints_subset: Sequence[int] | None = None) -> Table:
    """Run every diagnostic in ``settings`` over the checkpoints of ``run_dir``.

    Args:
      run_dir: a run folder (:mod:`ntkplast.runs.checkpoints` format).
      settings: what to compute (:class:`Settings`; defaults for everything).
      out_dir: where results and the cache go (default ``RUN_DIR/analysis``).
      data_dir: dataset folder used to rebuild the stream for the probe set.
      progress: show a progress bar over checkpoints.
      checkpoints_subset: analyse only these checkpoint indices (default: all).

    Returns:
      The :class:`~ntkplast.table.Table` of every analysed checkpoint (module docstring). The
      rows went to disk checkpoint by checkpoint; the table holds ``<out>/metrics.csv``'s
      bytes as written and builds its columns on first use
      (:func:`ntkplast.table.stored_table`), so a caller that only needs the files (the CLI
      prints ``len(table)``) never holds the rows as columns.
    """
    settings = settings or Settings()
    run = checkpoints.open_run(run_dir)
    if len(run) == 0:
        raise NtkplastError(f"{run_dir}: the run has no checkpoints to analyse")
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "analysis"
    with folder_lock(out, "analyze"):  # one writer: two analyses never mix their outputs
        return _analyze_into(run, out, settings, data_dir, progress, checkpoints_subset)


def _analyze_into(run: checkpoints.Run, out: Path, settings: Settings, data_dir: str | None,
                  progress: bool, checkpoints_subset: Sequence[int] | None) -> Table:
    """:func:`analyze` once the output folder ``out`` is locked."""
    probe = probes.build_probe(run, settings.probe, settings.probe_size, settings.seed, data_dir)
    skipped = [f for f in settings.metrics if f not in possible_families(run)]
    if skipped:
        warnings.warn(f"{run.path}: its model ({run.spec.apply}) names no layer functions; "
                      f"skipped: {', '.join(skipped)} (give layers= to compute them)",
                      stacklevel=3)
    unlabeled = {"curvature", "gradient"} & set(settings.metrics)
    if unlabeled and np.any(np.asarray(probe.y) < 0):
        warnings.warn(f"{run.path}: the probe set has no labels (regression, or a probe file "
                      f"without y): the loss Hessian and gradient rows are skipped (the "
                      f"Gauss–Newton rows are kept)", stacklevel=3)
    cache = out / "cache" / _settings_key(run, settings, probe)
    cache.mkdir(parents=True, exist_ok=True)
    for folder in (out, cache):  # what a killed analysis left half-written
        checkpoints.remove_stale_temporaries(folder)
    indices = list(range(len(run))) if checkpoints_subset is None else sorted(checkpoints_subset)
    history = KernelHistory(infinite_kernel(run, probe) if "ntk" in settings.metrics else None)
    rows = 0
    # both streamed, one checkpoint at a time, into temporaries renamed when the loop is done
    with files.array_writer(out / "spectra.npz") as add_spectrum, table_writer(out) as add_rows:
        if history.infinite is not None:
            add_spectrum("ntk_infinite_eigenvalues", spectra.eigenvalues(history.infinite))
        for i in tqdm(indices, disable=not progress, unit="ckpt", desc="analyze"):
            arrays, digest = _checkpoint_arrays(run, i, probe, settings, history, cache)
            info = run[i]
            if not np.any(arrays["metric"] == "checkpoint_skipped"):
                kernel = arrays.get("raw/ntk_kernel")
                history.push(None if kernel is None else np.asarray(kernel, np.float64),
                             arrays.get("raw/ntk_top_eigenvectors"), info.step, digest, i)
            n = len(arrays["value"])
            add_rows(Table({"checkpoint": np.full(n, i), "step": np.full(n, info.step),
                            "task": np.full(n, info.task), "layer": arrays["layer"],
                            "metric": arrays["metric"], "value": arrays["value"]}))
            rows += n
            for k, v in arrays.items():
                if k.startswith("raw/") and k not in _NOT_EXPORTED:
                    add_spectrum(f"{k[4:]}/{i}", v)
        (out / "settings.json").unlink(missing_ok=True)  # from here on: not a finished set
    checkpoints.save_arrays(out / "probe.npz", {"x": probe.x, "y": probe.y})
    settings_doc = {"settings": dataclasses.asdict(settings), "cache_key": cache.name,
                    "probe": {"source": probe.source, "size": len(probe.y), "seed": probe.seed,
                              "fingerprint": probe.fingerprint()},
                    "checkpoints": indices}
    checkpoints.atomic_write_bytes(out / "settings.json",
                                   json.dumps(settings_doc, indent=1).encode())
    return stored_table(out / "metrics.csv", rows)


def parse_metrics(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"ntk,isometry"`` → ``("ntk", "isometry")`` (validated by :class:`Settings`)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(s.strip() for s in items if s.strip())
