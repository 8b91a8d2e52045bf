"""How a checkpoint's parameters and optimizer state are laid out as named arrays in its ``.npz``.

* an ntkplast model's parameters (a tuple of per-layer dicts): ``params/<layer>/<name>`` with
  ``name`` in ``W``, ``b``, ``ln_scale``, ``ln_bias`` (:func:`params_to_arrays`,
  :func:`arrays_to_params`);
* any other model's parameters, a nested dict of arrays such as Flax variables
  ``{"params": …, "batch_stats": …}``: ``tree/<key>/<key>/…`` (:func:`tree_to_arrays`,
  :func:`arrays_to_tree`; a key holds no ``/``);
* the optimizer state's leaves in flattening order: ``opt_state/<j>``
  (:func:`opt_state_to_arrays`, :func:`arrays_to_opt_state`);
* with the optimizer state, what resuming from the checkpoint trusts: its global step, task
  index and kind and the in-task counters :data:`RESUME_METRICS` of its manifest entry, as
  ``resume/step``, ``resume/task``, ``resume/kind`` and ``resume/metrics/<name>``
  (:func:`resume_to_arrays`). The checkpoint's SHA-256 covers them, so an entry edited in the
  manifest alone is caught (:func:`check_resume_arrays`).

Every array read back must be finite floats (integer leaves of a tree are allowed: step
counters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from ntkplast import models
from ntkplast.errors import NtkplastError

__all__ = ["RESUME_METRICS", "arrays_to_opt_state", "arrays_to_params", "arrays_to_tree",
           "check_resume_arrays", "opt_state_to_arrays", "params_to_arrays", "resume_to_arrays",
           "tree_to_arrays"]

RESUME_METRICS = ("task_step", "online_score_sum", "online_correct", "online_loss_sum")
"""Metrics of a checkpoint's manifest entry that resuming continues from: the step within the
task and the task's summed online score and loss so far (``online_correct``: format v1's name
for the score)."""

_PARAM_KEY = re.compile(r"^params/([0-9]{1,6})/(W|b|ln_scale|ln_bias)$")
_OPT_KEY = re.compile(r"^opt_state/([0-9]{1,9})$")
_TREE = "tree/"


def params_to_arrays(params: models.Params | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flatten a params tuple to ``{"params/<layer>/<W|b|ln_scale|ln_bias>": array}``, or a
    nested dict of arrays (another model's parameters) by :func:`tree_to_arrays`."""
    if isinstance(params, Mapping):
        return tree_to_arrays(params)
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


def resume_to_arrays(step: int, task: int, kind: str,
                     metrics: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{"resume/step", "resume/task", "resume/kind", "resume/metrics/<name>"}``: the manifest
    entry's fields that resuming trusts (:data:`RESUME_METRICS` among ``metrics``)."""
    out = {"resume/step": np.asarray(step, np.int64), "resume/task": np.asarray(task, np.int64),
           "resume/kind": np.asarray(kind, np.str_)}
    out.update({f"resume/metrics/{k}": np.asarray(metrics[k], np.float64)
                for k in RESUME_METRICS if k in metrics})
    return out


def check_resume_arrays(arrays: Mapping[str, np.ndarray], entry: Mapping[str, Any],
                        source: str) -> None:
    """Refuse a manifest ``entry`` whose step, task, kind or resume metrics differ from what the
    checkpoint's own ``resume/…`` arrays record (:func:`resume_to_arrays`); a checkpoint written
    before they were recorded has none and is not checked."""
    if "resume/step" not in arrays:
        return
    metrics = entry.get("metrics", {})
    fields = {"step": entry.get("step"), "task": entry.get("task", 0), "kind": entry.get("kind"),
              **{k: metrics.get(k) for k in RESUME_METRICS}}
    stored = {k.rsplit("/", 1)[1]: v.item() for k, v in arrays.items()
              if k.startswith("resume/")}
    for name, want in fields.items():
        got = stored.get(name)
        if got != want and not (got is None and want is None):
            raise NtkplastError(f"{source}: the manifest's {name} ({want!r:.40}) is not what "
                                f"the checkpoint itself records ({got!r:.40}); the manifest was "
                                f"edited: restore it from a copy, or re-train")


def tree_to_arrays(tree: Mapping[str, Any], prefix: str = _TREE) -> dict[str, np.ndarray]:
    """Flatten a nested dict of arrays to ``{"tree/<key>/…/<key>": array}``."""
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        if not isinstance(k, str) or not k or "/" in k:
            raise NtkplastError(f"parameter tree: key {k!r} under {prefix!r} must be a non-empty "
                                f"string without '/'")
        if isinstance(v, Mapping):
            out.update(tree_to_arrays(v, f"{prefix}{k}/"))
        elif isinstance(v, np.ndarray | jax.Array | np.generic):
            out[f"{prefix}{k}"] = np.asarray(v)
        else:
            raise NtkplastError(f"parameter tree: {prefix}{k} is a {type(v).__name__}; only "
                                f"nested dicts of arrays are stored")
    return out


def arrays_to_tree(arrays: Mapping[str, np.ndarray], source: str = "arrays") -> dict[str, Any]:
    """Inverse of :func:`tree_to_arrays` (other keys are ignored); leaves as jax arrays."""
    tree: dict[str, Any] = {}
    for key, value in arrays.items():
        if not key.startswith(_TREE):
            continue
        if value.dtype.kind not in "fiu" or (value.dtype.kind == "f"
                                            and not np.all(np.isfinite(value))):
            raise NtkplastError(f"{source}: {key} must be finite numbers (dtype {value.dtype})")
        *path, leaf = key[len(_TREE):].split("/")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise NtkplastError(f"{source}: {key} is both a leaf and a subtree")
        node[leaf] = jax.numpy.asarray(value)
    if not tree:
        raise NtkplastError(f"{source}: expected arrays named tree/<key>/…; found "
                            f"{sorted(arrays)[:8]}")
    return tree
