"""Checkpoint series: a run folder with ``manifest.json`` and one ``.npz`` per checkpoint.

Format (version 1) — any program can write it::

    RUN_DIR/
      manifest.json        {"format": "ntkplast-run", "format_version": 1,
                            "model": {ArchSpec fields}, "input_shape": [H, W, C] or [D],
                            "checkpoints": [{"file": "ckpt_000000.npz", "step": 0, "task": 0,
                                             "kind": "init", "metrics": {...}}, ...],
                            ... optional: "stream", "train", "seed", "num_classes",
                            "tasks", "complete"}
      ckpt_000000.npz      arrays "params/<layer>/W" and "params/<layer>/b" (ntkplast layout:
                           Dense W is d_in × d_out, Conv W is HWIO), "ln_scale" and
                           "ln_bias" for a LayerNorm's γ, β, optionally
                           "opt_state/<j>" (the optimizer state's leaves, for exact resume)

Only ``format``, ``format_version``, ``model``, ``input_shape`` and each checkpoint's ``file``
and ``step`` are required. Files are read with ``allow_pickle=False``; checkpoint file names must
be plain names inside the run folder. Every write goes to a temporary name in the same folder,
is flushed to disk, and is renamed over the final name, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.files import atomic_write_bytes, load_arrays, remove_stale_temporaries, save_arrays
from ntkplast.validate import expected_param_shapes, param_shapes

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "CheckpointInfo", "Run", "arrays_to_opt_state",
           "arrays_to_params", "atomic_write_bytes", "checkpoint_name", "load_arrays",
           "open_run", "opt_state_to_arrays", "params_to_arrays", "read_manifest",
           "remove_stale_temporaries", "save_arrays", "write_manifest"]

FORMAT = "ntkplast-run"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PARAM_KEY = re.compile(r"^params/([0-9]{1,6})/(W|b|ln_scale|ln_bias)$")
_OPT_KEY = re.compile(r"^opt_state/([0-9]{1,9})$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def params_to_arrays(params: models.Params) -> dict[str, np.ndarray]:
    """Flatten a params tuple to ``{"params/<layer>/<W|b|ln_scale|ln_bias>": array}``."""
    return {f"params/{i}/{name}": np.asarray(v)
            for i, layer in enumerate(params) for name, v in layer.items()}


def arrays_to_params(arrays: Mapping[str, np.ndarray], source: str = "arrays") -> models.Params:
    """Inverse of :func:`params_to_arrays` (other keys are ignored)."""
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        m = _PARAM_KEY.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not layers or sorted(layers) != list(range(len(layers))):
        raise NtkplastError(f"{source}: expected arrays named params/0/W, params/1/W, ... "
                            f"(consecutive layers); found {sorted(arrays)[:8]}")
    for i, layer in layers.items():
        if "W" not in layer:
            raise NtkplastError(f"{source}: layer {i} has no weight array params/{i}/W")
        for name, v in layer.items():
            if v.dtype.kind != "f" or not np.all(np.isfinite(v)):
                raise NtkplastError(f"{source}: params/{i}/{name} must be finite floats "
                                    f"(dtype {v.dtype})")
    return tuple({k: jax.numpy.asarray(v) for k, v in sorted(layers[i].items())}
                 for i in range(len(layers)))


def opt_state_to_arrays(opt_state: Any) -> dict[str, np.ndarray]:
    """Flatten an optimizer state pytree to ``{"opt_state/<j>": leaf}``."""
    return {f"opt_state/{j}": np.asarray(v)
            for j, v in enumerate(jax.tree_util.tree_leaves(opt_state))}


def arrays_to_opt_state(arrays: Mapping[str, np.ndarray], template: Any, source: str) -> Any:
    """Rebuild an optimizer state with the structure of ``template`` from its saved leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    saved = {int(m.group(1)): v for k, v in arrays.items() if (m := _OPT_KEY.match(k))}
    if sorted(saved) != list(range(len(leaves))):
        raise NtkplastError(f"{source}: optimizer state has {len(saved)} arrays, expected "
                            f"{len(leaves)}; the run's optimizer settings changed")
    out = []
    for j, ref in enumerate(leaves):
        v = saved[j]
        if v.shape != np.shape(ref):
            raise NtkplastError(f"{source}: opt_state/{j} has shape {v.shape}, expected "
                                f"{np.shape(ref)}")
        out.append(jax.numpy.asarray(v, dtype=jax.numpy.asarray(ref).dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One manifest entry: file name, global step, task index, kind, and stored metrics."""

    file: str
    step: int
    task: int
    kind: str
    metrics: dict[str, Any]


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Load and validate ``RUN_DIR/manifest.json``."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise NtkplastError(f"{run_dir} is not a folder; give the path of a run folder "
                            f"(one holding {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NtkplastError(f"{run_dir} is not a run folder: it has no {MANIFEST} "
                            f"(write one as described in the README, or train into it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NtkplastError(f"{path} is not readable JSON ({e}); restore it from a copy") from None
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
    shape = m.get("input_shape")
    need(isinstance(shape, list) and bool(shape)
         and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape),
         '"input_shape" must be a list of positive integers')
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
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                 f"checkpoints[{i}].{key} must be a non-negative integer")
        need(isinstance(c.get("kind", ""), str), f"checkpoints[{i}].kind must be a string")
        need(isinstance(c.get("metrics", {}), dict), f"checkpoints[{i}].metrics must be an object")


class Run:
    """A run folder opened for reading: manifest, model, and lazy access to each checkpoint.

    ``run[i]`` is the :class:`CheckpointInfo` of checkpoint ``i``; ``run.params(i)`` loads its
    parameters (``i`` may be negative); iterating ``run.iter_params()`` streams them one at a
    time so memory stays at one checkpoint.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self.spec = models.ArchSpec.from_dict(manifest["model"], where=f"{path / MANIFEST}: model")
        self.model = models.build(self.spec)
        self.input_shape = tuple(manifest["input_shape"])
        self.checkpoints = [CheckpointInfo(c["file"], c["step"], c.get("task", 0),
                                           c.get("kind", "periodic"), c.get("metrics", {}))
                            for c in manifest["checkpoints"]]

    def __len__(self) -> int:
        return len(self.checkpoints)

    def __getitem__(self, i: int) -> CheckpointInfo:
        return self.checkpoints[i]

    @property
    def complete(self) -> bool:
        """Whether training finished (runs written by other tools count as complete)."""
        return bool(self.manifest.get("complete", True))

    def arrays(self, i: int) -> dict[str, np.ndarray]:
        """Every array stored in checkpoint ``i``."""
        path = self.path / self.checkpoints[i].file
        if path.is_symlink() and not path.resolve().is_relative_to(self.path.resolve()):
            raise NtkplastError(f"{path} is a link to {path.resolve()}, outside the run folder; "
                                f"a manifest may only name files inside it (copy the file in)")
        return load_arrays(path)

    def params(self, i: int) -> models.Params:
        """Parameters of checkpoint ``i``: finite floats whose shapes are the run's architecture's
        (:func:`ntkplast.validate.expected_param_shapes` on the manifest's input shape)."""
        path = self.path / self.checkpoints[i].file
        params = arrays_to_params(self.arrays(i), source=str(path))
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


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint at global step ``step``."""
    return f"ckpt_{step:08d}.npz"
