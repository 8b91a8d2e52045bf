"""Checkpoint series: a run folder with ``manifest.json`` and one ``.npz`` per checkpoint.

Format (version 1) — any program can write it::

    RUN_DIR/
      manifest.json        {"format": "ntkplast-run", "format_version": 1,
                            "model": {ArchSpec fields}, "input_shape": [H, W, C] or [D],
                            "checkpoints": [{"file": "ckpt_000000.npz", "step": 0, "task": 0,
                                             "kind": "init", "metrics": {...},
                                             "sha256": "<hex digest of the file>"}, ...],
                            ... optional: "stream", "train", "seed", "num_classes",
                            "tasks", "complete", "group": {"method", "seed"}}
      ckpt_000000.npz      arrays "params/<layer>/W" and "params/<layer>/b" (ntkplast layout:
                           Dense W is d_in × d_out, Conv W is HWIO), "ln_scale" and
                           "ln_bias" for a LayerNorm's γ, β, optionally
                           "opt_state/<j>" (the optimizer state's leaves, for exact resume)
                           with "resume/…" (the entry's step, task, kind and in-task
                           counters, :mod:`ntkplast.runs.arrays`)

Only ``format``, ``format_version``, ``model``, ``input_shape`` and each checkpoint's ``file``
and ``step`` are required. ``sha256`` (optional, so every earlier version-1 folder stays
readable and older readers skip it) is the checkpoint file's SHA-256, which ntkplast writes with
every checkpoint and checks whenever it reads one (:func:`checkpoint_arrays`, :meth:`Run.digest`):
a file swapped, mixed in from another run or corrupted is refused by name. Steps and tasks are
integers below 2**63, the steps strictly increasing; a metric is a number, null, a string, a
boolean or a list of numbers and nulls, and the literals NaN and Infinity are refused (ntkplast
writes JSON without them). A checkpoint that training resumes from records its own step, task,
kind and in-task counters, and a manifest entry that disagrees with them is refused. Files are
read with ``allow_pickle=False``, from regular files only, with size and nesting bounds
(:mod:`ntkplast.io.safe_read`); checkpoint file names must be plain names inside the run folder,
and links out of it are refused. Every write goes to a temporary name in the same
folder, is flushed to disk, and is renamed over the final name, so a reader never sees half a
file; writers hold the folder's lock (:func:`ntkplast.io.lock.folder_lock`).

ntkplast writes run folders in one place: :func:`new_manifest` starts a manifest (its keys in
one order), :func:`append_checkpoint` writes a checkpoint and lists it, and training and the
importers (:mod:`ntkplast.runs.interop`, :mod:`ntkplast.runs.jax_import`) call nothing else to
write one. :func:`upgrade_config` reads a configuration stored by an older ntkplast as today's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.io.files import atomic_write_bytes, load_arrays, remove_stale_temporaries, save_arrays
from ntkplast.io.safe_read import array_file_bytes, open_regular, read_bytes, read_json
from ntkplast.runs.arrays import (
    RESUME_METRICS,
    arrays_to_opt_state,
    arrays_to_params,
    arrays_to_tree,
    check_resume_arrays,
    opt_state_to_arrays,
    params_to_arrays,
    resume_to_arrays,
)
from ntkplast.runs.function_models import FunctionSpec, spec_from_dict
from ntkplast.runs.function_models import build as build_model
from ntkplast.validate import expected_param_shapes, param_shapes

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "RESUME_METRICS", "CheckpointInfo", "Run",
           "append_checkpoint", "arrays_to_opt_state", "arrays_to_params", "atomic_write_bytes",
           "check_group", "checkpoint_arrays", "checkpoint_name", "checkpoint_state", "file_digest",
           "load_arrays", "new_manifest", "open_run", "opt_state_to_arrays", "params_to_arrays",
           "read_manifest", "remove_stale_temporaries", "save_arrays", "upgrade_config",
           "write_manifest"]

FORMAT = "ntkplast-run"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_INT64 = 2**63


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One manifest entry: file name, global step, task index, kind, stored metrics, and the
    file's SHA-256 (None for folders written before digests were recorded)."""

    file: str
    step: int
    task: int
    kind: str
    metrics: dict[str, Any]
    sha256: str | None = None


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Load and validate ``RUN_DIR/manifest.json``."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise NtkplastError(f"{run_dir} is not a folder; give the path of a run folder "
                            f"(one holding {MANIFEST})")
    try:
        manifest = read_json(path, within=run_dir, finite=True)
    except FileNotFoundError:
        raise NtkplastError(f"{run_dir} is not a run folder: it has no {MANIFEST} (write one "
                            "as docs/guides/reliability.md describes, or train into it)") from None
    _validate_manifest(manifest, path)
    return manifest


def _validate_manifest(m: Any, path: Path) -> None:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise NtkplastError(f"{path}: {what}")

    need(isinstance(m, dict), "the top level must be a JSON object")
    need(m.get("format") == FORMAT, f'"format" must be "{FORMAT}"')
    version = m.get("format_version")
    need(isinstance(version, int) and not isinstance(version, bool),
         '"format_version" must be an integer')
    need(version >= 1, f"format_version must be at least 1, got {version}")
    need(version <= FORMAT_VERSION, f"format_version {version} is newer than this ntkplast "
         f"reads ({FORMAT_VERSION}); upgrade ntkplast")
    need(isinstance(m.get("model"), dict), '"model" must be an object of ArchSpec fields')
    for key in ("config", "stream"):
        need(isinstance(m.get(key, {}), dict | None), f'"{key}" must be an object')
    shape = m.get("input_shape")
    need(isinstance(shape, list) and bool(shape)
         and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape),
         '"input_shape" must be a list of positive integers')
    group = m.get("group", {})
    need(isinstance(group, dict) and set(group) <= {"method", "seed"},
         '"group" must be an object with "method" and/or "seed"')
    check_group(**group, where=f'{path}: "group"')
    ckpts = m.get("checkpoints")
    need(isinstance(ckpts, list), '"checkpoints" must be a list')
    for i, c in enumerate(ckpts):
        need(isinstance(c, dict), f"checkpoints[{i}] must be an object")
        f = c.get("file")
        need(isinstance(f, str) and bool(_SAFE_NAME.match(f)) and f not in (".", ".."),
             f"checkpoints[{i}].file must be a plain file name inside the run folder "
             f"(no '/', '..' or absolute paths), got {f!r}")
        need("step" in c, f"checkpoints[{i}] has no \"step\" (the global training step)")
        for key in ("step", "task"):
            v = c.get(key, 0)
            need(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _INT64,
                 f"checkpoints[{i}].{key} must be an integer in [0, 2**63)")
        need(isinstance(c.get("kind", ""), str), f"checkpoints[{i}].kind must be a string")
        need(c.get("sha256") is None or bool(_DIGEST.match(str(c["sha256"]))),
             f"checkpoints[{i}].sha256 must be 64 lowercase hex digits")
        metrics = c.get("metrics", {})
        need(isinstance(metrics, dict), f"checkpoints[{i}].metrics must be an object")
        for k, v in metrics.items():
            need(_metric_value(v) if k not in RESUME_METRICS else _is_number(v) and (
                 k != "task_step" or (isinstance(v, int) and 0 <= v < _INT64)),
                 f"checkpoints[{i}].metrics.{k} must be " + (
                     "a number (task_step: a step count)" if k in RESUME_METRICS else
                     "a number, null, a string, a boolean or a list of numbers and nulls")
                 + f", got {v!r:.60}")
    steps = [c["step"] for c in ckpts]
    bad = next((i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), None)
    need(bad is None, f"checkpoint steps must be strictly increasing, but checkpoints[{bad}] has "
         f"step {steps[bad] if bad else ''} after {steps[bad - 1] if bad else ''}; the manifest "
         f"was edited or assembled wrongly")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _metric_value(v: Any) -> bool:
    if isinstance(v, list):
        return all(x is None or _is_number(x) for x in v)
    return v is None or isinstance(v, int | float | str | bool)


class Run:
    """A run folder opened for reading: manifest, model, and lazy access to each checkpoint.

    ``run[i]`` is the :class:`CheckpointInfo` of checkpoint ``i``; ``run.params(i)`` loads its
    parameters (``i`` may be negative); iterating ``run.iter_params()`` streams them one at a
    time so memory stays at one checkpoint.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self.spec = spec_from_dict(manifest["model"], where=f"{path / MANIFEST}: model")
        self.input_shape = tuple(manifest["input_shape"])
        self.checkpoints = [CheckpointInfo(c["file"], c["step"], c.get("task", 0),
                                           c.get("kind", "periodic"), c.get("metrics", {}),
                                           c.get("sha256"))
                            for c in manifest["checkpoints"]]

    @functools.cached_property
    def model(self) -> Any:
        """The run's model, built on first use (:func:`ntkplast.runs.function_models.build`:
        a function model's code is imported only then)."""
        return build_model(self.spec)

    def __len__(self) -> int:
        return len(self.checkpoints)

    def __getitem__(self, i: int) -> CheckpointInfo:
        return self.checkpoints[i]

    @property
    def complete(self) -> bool:
        """Whether training finished (runs written by other tools count as complete)."""
        return bool(self.manifest.get("complete", True))

    def arrays(self, i: int) -> dict[str, np.ndarray]:
        """Every array of checkpoint ``i``, its digest checked (:func:`checkpoint_arrays`)."""
        info = self.checkpoints[i]
        return checkpoint_arrays(self.path, {"file": info.file, "sha256": info.sha256})

    def digest(self, i: int) -> str:
        """The SHA-256 of checkpoint ``i``'s file as it is now, checked against the manifest's.

        What the analysis cache keys its entries by. Raises :class:`NtkplastError` when the
        file is missing, not a regular file inside the run folder, or differs from the digest
        the manifest recorded.
        """
        info = self.checkpoints[i]
        return file_digest(self.path, info.file, info.sha256)

    def params(self, i: int) -> models.Params:
        """Parameters of checkpoint ``i``: finite floats whose shapes are the run's architecture's
        (:func:`ntkplast.validate.expected_param_shapes` on the manifest's input shape)."""
        path = self.path / self.checkpoints[i].file
        if isinstance(self.spec, FunctionSpec):  # a nested dict of arrays, checked when applied
            return arrays_to_tree(self.arrays(i), source=str(path))
        params = arrays_to_params(self.arrays(i), source=str(path))
        if len(params) != len(self.model.layers):  # before tracing the spec (deep specs: slow)
            raise NtkplastError(f"{path}: {len(params)} weight layers, but the manifest's model "
                                f"has {len(self.model.layers)}; the checkpoint belongs to another "
                                f"architecture")
        got = param_shapes(params)
        want = expected_param_shapes(self.model, self.input_shape)
        if got != want:
            raise NtkplastError(f"{path}: parameter shapes {got} do not match the manifest's "
                                f"model {want}; the checkpoint belongs to another architecture")
        return params

    def iter_params(self) -> Iterator[tuple[CheckpointInfo, models.Params]]:
        """Yield ``(info, params)`` for every checkpoint, loading one at a time."""
        for i, info in enumerate(self.checkpoints):
            yield info, self.params(i)


def open_run(run_dir: str | os.PathLike) -> Run:
    """Open a run folder for reading (see the module docstring for the format)."""
    return Run(Path(run_dir), read_manifest(run_dir))


def write_manifest(run_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` atomically."""
    text = json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False)
    atomic_write_bytes(Path(run_dir) / MANIFEST, text.encode("utf-8"))


def new_manifest(model: models.ArchSpec, input_shape: Sequence[int], *,
                 about: Mapping[str, Any] | None = None, tasks: bool = False,
                 complete: bool = False, origin: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """A run folder's manifest without checkpoints yet, its keys in the one order ntkplast writes.

    The keys are ``format``, ``format_version``, ``model`` (``model.to_dict()``),
    ``input_shape``, the entries of ``about``, ``checkpoints`` (empty: :func:`append_checkpoint`
    fills it), ``tasks`` (an empty list, only with ``tasks``), ``complete``, then the entries of
    ``origin``. Training passes ``about = {"num_classes", "num_tasks", "config"}``,
    ``tasks=True`` and as ``origin`` a custom stream's ``stream`` and ``vectorised_seeds``; the
    importers pass ``complete=True`` and ``origin = {"imported_from": …}``.

    Args:
      model: the run's architecture.
      input_shape: the shape of one input, ``[H, W, C]`` or ``[D]``.
      about: what the run was trained on, placed before ``checkpoints`` (default: nothing).
      tasks: whether the run records per-task results under ``tasks`` (default False).
      complete: whether the run is finished (default False: training sets it at its end).
      origin: where the run came from, placed last (default: nothing).

    Returns:
      The manifest as a plain dict, for :func:`append_checkpoint` and :func:`write_manifest`.
    """
    manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                                "model": model.to_dict(), "input_shape": list(input_shape),
                                **(about or {}), "checkpoints": []}
    if tasks:
        manifest["tasks"] = []
    manifest["complete"] = complete
    manifest.update(origin or {})
    return manifest


def append_checkpoint(run_dir: str | os.PathLike, manifest: dict[str, Any],
                      params: models.Params, *, step: int, task: int, kind: str,
                      metrics: Mapping[str, Any] | None = None, opt_state: Any = None,
                      source: str | None = None, save_manifest: bool = True) -> dict[str, Any]:
    """Write the checkpoint at global step ``step`` into ``run_dir`` and list it in ``manifest``.

    The file, :func:`checkpoint_name` of ``step``, holds :func:`params_to_arrays` of ``params``
    and, given ``opt_state``, :func:`opt_state_to_arrays` of it (for exact resume); it is
    written atomically and its SHA-256 ends the new entry ``{"file", "step", "task", "kind",
    "metrics", "source" (only when given), "sha256"}`` appended to ``manifest["checkpoints"]``.
    With ``save_manifest`` the manifest is then rewritten atomically, after the file: a crash in
    between leaves a file that the manifest does not list (resuming writes it again), never an
    entry without its file. The importers, which move a finished folder into place, pass
    ``save_manifest=False`` and write the manifest once (:func:`write_manifest`).

    Args:
      run_dir: the run folder (its writer holds its lock).
      manifest: the run's manifest (:func:`new_manifest`), changed in place.
      params: the checkpoint's parameters.
      step: the global step.
      task: the task index.
      kind: the kind (``"init"``, ``"periodic"``, ``"task_end"``, ``"imported"``).
      metrics: what the entry records about the checkpoint (default: nothing).
      opt_state: the optimizer state to store with the parameters (default: none).
      source: the file the checkpoint was imported from (default: not recorded).
      save_manifest: rewrite ``manifest.json`` after the file (default True).

    Returns:
      The new manifest entry.
    """
    name = checkpoint_name(step)
    arrays = params_to_arrays(params)
    if opt_state is not None:
        arrays.update(opt_state_to_arrays(opt_state))
        arrays.update(resume_to_arrays(step, task, kind, metrics or {}))
    digest = save_arrays(Path(run_dir) / name, arrays)
    entry = {"file": name, "step": step, "task": task, "kind": kind,
             "metrics": dict(metrics or {})}
    if source is not None:
        entry["source"] = source
    entry["sha256"] = digest
    manifest["checkpoints"].append(entry)
    if save_manifest:
        write_manifest(run_dir, manifest)
    return entry


def check_group(method: str | None = None, seed: int | None = None, *,
                where: str = "group") -> dict[str, Any]:
    """A run's ``group``, ``{"method": …, "seed": …}`` (either may be absent): the method and the
    seed a report puts the run under instead of reading them from the folder layout
    (``<method>/seed<k>``). A method is a non-empty name without ``/``; a seed an integer ≥ 0."""
    if method is not None and (not isinstance(method, str) or not method.strip() or "/" in method):
        raise NtkplastError(f"{where}: method must be a non-empty name without '/', got {method!r}")
    if seed is not None and (not _is_number(seed) or not isinstance(seed, int) or seed < 0):
        raise NtkplastError(f"{where}: seed must be an integer >= 0, got {seed!r}")
    return {k: v for k, v in (("method", method), ("seed", seed)) if v is not None}


def upgrade_config(stored: Any) -> Any:
    """A run folder's stored ``config`` as this ntkplast writes it: the architecture fields added
    since the run was written (LayerNorm, residual, GroupSort, weight constraints) read at their
    defaults, so that a run written before them equals its configuration and resumes.

    Anything that is not a config with a readable ``model`` object comes back unchanged (and
    then differs from every configuration).
    """
    if not isinstance(stored, dict) or not isinstance(stored.get("model"), dict):
        return stored
    try:
        model = models.ArchSpec.from_dict(stored["model"]).to_dict()
    except NtkplastError:
        return stored
    return {**stored, "model": model}


def _digest_mismatch(path: Path, got: str, want: str) -> NtkplastError:
    return NtkplastError(f"{path}: its content (sha256 {got[:12]}…) is not what the manifest "
                         f"recorded (sha256 {want[:12]}…); the file was replaced, mixed in from "
                         f"another run or corrupted: restore it from a copy, or re-train")


def file_digest(run_dir: str | os.PathLike, file: str, expected: str | None = None) -> str:
    """SHA-256 (hex) of the checkpoint ``file`` in ``run_dir``, read as a regular file inside the
    folder; raises :class:`NtkplastError` if ``expected`` is given and differs."""
    path = Path(run_dir) / file
    h = hashlib.sha256()
    try:
        with open_regular(path, limit=array_file_bytes(), within=run_dir) as f:
            while block := f.read(1 << 20):
                h.update(block)
    except FileNotFoundError:
        raise NtkplastError(f"file {path} does not exist; the run folder is incomplete (was "
                            f"it moved or partly copied?)") from None
    got = h.hexdigest()
    if expected is not None and got != expected:
        raise _digest_mismatch(path, got, expected)
    return got


def checkpoint_arrays(run_dir: str | os.PathLike, entry: Mapping[str, Any]
                      ) -> dict[str, np.ndarray]:
    """Every array of the checkpoint that manifest entry ``entry`` names, read once from a
    regular file inside ``run_dir`` and checked against the entry's ``sha256`` when it has one
    (training's resume and the analysis read checkpoints through this)."""
    path = Path(run_dir) / entry["file"]
    try:
        data = read_bytes(path, limit=array_file_bytes(), within=run_dir)
    except FileNotFoundError:
        raise NtkplastError(f"file {path} does not exist; the run folder is incomplete (was "
                            f"it moved or partly copied?)") from None
    want = entry.get("sha256")
    if want is not None and (got := hashlib.sha256(data).hexdigest()) != want:
        raise _digest_mismatch(path, got, want)
    return load_arrays(io.BytesIO(data), source=path)


def checkpoint_state(run_dir: str | os.PathLike, entry: Mapping[str, Any],
                     opt_template: Any) -> tuple[models.Params, Any]:
    """(parameters, optimizer state) of the checkpoint ``entry`` names (:func:`checkpoint_arrays`,
    digest checked), the state in the structure of ``opt_template`` (``tx.init(params)``) —
    what resuming and branching continue training from. The entry's step, task, kind and
    in-task counters must agree with what the checkpoint records of itself
    (:func:`ntkplast.runs.arrays.check_resume_arrays`)."""
    path = Path(run_dir) / entry["file"]
    arrays = checkpoint_arrays(run_dir, entry)
    if not any(k.startswith("opt_state/") for k in arrays):
        raise NtkplastError(f"{path} holds no optimizer state (written by an importer or another "
                            f"program?); training continues only from a checkpoint ntkplast "
                            f"trained")
    check_resume_arrays(arrays, entry, str(path))
    return (arrays_to_params(arrays, source=str(path)),
            arrays_to_opt_state(arrays, opt_template, source=str(path)))


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint at global step ``step``."""
    return f"ckpt_{step:08d}.npz"
