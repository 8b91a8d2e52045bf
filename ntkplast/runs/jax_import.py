"""Import JAX checkpoints written by other code: Orbax folders, Flax msgpack, safetensors.

Each checkpoint in the source folder is one of

* an **Orbax** checkpoint folder (``CheckpointManager``'s ``<step>/<item>/`` or a
  ``Checkpointer.save`` folder): checked by :func:`check_orbax_item` (no FIFO, device or link
  out of it; array shapes within a memory budget), then restored by ``orbax.checkpoint``
  without a target, which reads JSON/msgpack metadata and tensorstore arrays only;
* a **Flax msgpack** file (``.msgpack``, ``flax.serialization.to_bytes``): read by
  ``flax.serialization.msgpack_restore``, plain msgpack with ndarray extension types;
* a **safetensors** file of a flattened pytree (keys joined by ``.`` or ``/``).

Files are read through :func:`ntkplast.io.safe_read.read_bytes`: a FIFO, a device (a link to
``/dev/zero``) or a file larger than :func:`ntkplast.io.safe_read.array_file_bytes` (physical
memory) is refused before it is read.

Nothing in a file can run code: pickle-based files (``.pkl``, ``.pickle``, ``.dill``,
``.joblib``, ``.pt``/``.pth`` are the PyTorch importer's, through ``weights_only``) are refused
with the reason. The checkpoint's step is ``"step"`` in Orbax's ``_CHECKPOINT_METADATA`` when
it is recorded there, else the number in the folder or file name (``pattern``); folders of
unfinished Orbax saves (``*.orbax-checkpoint-tmp*``) are skipped.

The parameters are found in the restored tree (``tree_path``, or ``params`` when the tree is a
train state with other entries such as ``opt_state`` and ``step``) and converted by
:func:`ntkplast.convert.pytree_to_params`: Flax (linen variables, nnx state; NHWC images) or
Equinox (``eqx.filter(model, eqx.is_array)``; CHW images) layouts. The run folder records the
model reference (framework, format, tree path, activation) in ``manifest["imported_from"]``,
so ``analyze``, ``figures``, ``hypotheses`` and sweeps read it like any run.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast import models
from ntkplast.convert.pytrees import pytree_to_params
from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read
from ntkplast.runs import checkpoints, interop, output_check
from ntkplast.runs.function_models import FunctionSpec, build
from ntkplast.runs.orbax_check import check_orbax_item
from ntkplast.runs.state_dicts import load_safetensors

__all__ = ["FRAMEWORKS", "PICKLE_SUFFIXES", "check_orbax_item", "import_function_folder",
           "import_jax_folder", "load_pytree"]

FRAMEWORKS = {"flax": "hwc", "equinox": "chw"}
"""Frameworks whose layouts are read, with the image layout each uses."""
PICKLE_SUFFIXES = (".pkl", ".pickle", ".dill", ".joblib", ".pt", ".pth", ".ckpt", ".bin")
_ORBAX_MARKERS = ("_METADATA", "checkpoint", "manifest.ocdbt")
_ORBAX_TMP = ".orbax-checkpoint-tmp"


def _orbax_item(folder: Path) -> Path | None:
    """The folder holding one Orbax item: ``folder`` itself or its single (or ``default``)
    item subfolder; ``None`` if this is no Orbax checkpoint."""
    if any((folder / m).is_file() for m in _ORBAX_MARKERS):
        return folder
    items = [p for p in sorted(folder.iterdir()) if p.is_dir() and _orbax_item_here(p)]
    if len(items) == 1:
        return items[0]
    for name in ("default", "params", "state", "model"):
        if folder / name in items:
            return folder / name
    if items:
        raise NtkplastError(f"{folder}: Orbax items {[p.name for p in items]}; ntkplast reads "
                            f"one (named default, params, state or model)")
    return None


def _orbax_item_here(folder: Path) -> bool:
    return any((folder / m).is_file() for m in _ORBAX_MARKERS)


def _restore_orbax(item: Path) -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise NtkplastError(f"{item}: reading Orbax checkpoints needs orbax-checkpoint; pip "
                            f"install orbax-checkpoint (or: pip install 'ntkplast[jax-models]')"
                            ) from None
    check_orbax_item(item)
    try:
        return ocp.PyTreeCheckpointer().restore(str(item.resolve()))
    except Exception as e:  # orbax/tensorstore raise many types for a damaged folder
        raise NtkplastError(f"{item} is not a readable Orbax checkpoint ({type(e).__name__}: "
                            f"{e})") from None


def _restore_msgpack(path: Path) -> Any:
    try:
        from flax import serialization
    except ImportError:
        raise NtkplastError(f"{path}: reading Flax msgpack needs flax; pip install flax") from None
    try:
        data = safe_read.read_bytes(path, limit=safe_read.array_file_bytes())
    except FileNotFoundError:
        raise NtkplastError(f"{path} does not exist (a broken link?); give an existing "
                            f"checkpoint file") from None
    try:
        return serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises its own errors for damaged bytes
        raise NtkplastError(f"{path} is not a readable Flax msgpack file ({type(e).__name__}: "
                            f"{e})") from None


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = re.split(r"[./]", key)
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def load_pytree(path: str | os.PathLike) -> Any:
    """The pytree of one checkpoint (an Orbax folder, ``.msgpack`` or ``.safetensors`` file).

    Raises:
      NtkplastError: a pickle-based file (refused, with why), an unknown format, a damaged file;
        a FIFO, device or file over this machine's memory where a file is read; an Orbax
        folder :func:`check_orbax_item` refuses.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        item = _orbax_item(path)
        if item is None:
            raise NtkplastError(f"{path} is a folder but no Orbax checkpoint (no "
                                f"{'/'.join(_ORBAX_MARKERS)} in it or in one item subfolder)")
        return _restore_orbax(item)
    if suffix in PICKLE_SUFFIXES:
        raise NtkplastError(f"{path}: refused, a {suffix} file is read by unpickling, which can "
                            f"run code stored in it; re-save the parameters with Orbax, "
                            f"flax.serialization.to_bytes (.msgpack) or safetensors (PyTorch "
                            f"state dicts: ntkplast import --framework torch)")
    if suffix == ".msgpack":
        return _restore_msgpack(path)
    if suffix == ".safetensors":
        return _nest(load_safetensors(path))
    raise NtkplastError(f"{path}: unknown checkpoint format {suffix or '(no suffix)'}; expected "
                        f"an Orbax folder, .msgpack or .safetensors")


def _subtree(tree: Any, tree_path: str | None, source: str) -> Any:
    if tree_path is None:
        if isinstance(tree, Mapping) and "params" in tree and len(tree) > 1:
            return tree["params"]  # a train state: {"params", "opt_state", "step", …}
        return tree
    node = tree
    for part in tree_path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Sequence) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            keys = list(node) if isinstance(node, Mapping) else type(node).__name__
            raise NtkplastError(f"{source}: tree path {tree_path!r} has no {part!r} (found "
                                f"{keys}); give the path to the model parameters, e.g. params")
    return node


def _step(path: Path, regex: re.Pattern[str]) -> int | None:
    meta = path / "_CHECKPOINT_METADATA"
    if meta.is_file():
        try:
            step = safe_read.read_json(meta, limit=safe_read.CONFIG_BYTES).get("step")
        except (OSError, NtkplastError, AttributeError):
            step = None
        if isinstance(step, int) and step >= 0:
            return step
    m = regex.search(path.name)
    text = (m.group(1) if m.groups() else m.group(0)) if m else None
    return int(text) if text is not None and text.isdigit() else None


def _sources(src: Path, regex: re.Pattern[str], pattern: str) -> dict[int, Path]:
    def number_of(path: Path) -> int | None:
        if path.name.startswith(".") or _ORBAX_TMP in path.name:  # unfinished Orbax saves
            return None
        if not (path.is_dir() or path.suffix.lower() in (".msgpack", ".safetensors",
                                                         *PICKLE_SUFFIXES)):
            return None
        n = _step(path, regex)
        if n is not None and path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
            load_pytree(path)  # raises: refused, with why
        return n
    return interop.numbered_sources(
        src, number_of, "Orbax checkpoint folders, .msgpack or .safetensors files", pattern)


def import_jax_folder(src_dir: str | os.PathLike, run_dir: str | os.PathLike, *,
                      framework: str = "flax",
                      spec: models.ArchSpec | Mapping[str, Any] | None = None,
                      activation: str | None = None, tree_path: str | None = None,
                      key_order: Sequence[str] | None = None, pattern: str = r"(\d+)",
                      input_shape: Sequence[int] | None = None, number: str = "step",
                      reference: Any = None, tasks: Any = None,
                      plasticity_measure: str | None = None, higher_is_better: bool = True,
                      method: str | None = None, seed: int | None = None) -> checkpoints.Run:
    """Turn a folder of JAX checkpoints into an ntkplast run folder (module docstring).

    Args:
      src_dir: folder of Orbax checkpoint folders and/or ``.msgpack``/``.safetensors`` files,
        each named with its step (unless Orbax's metadata records it).
      run_dir: the new run folder; it must not exist (or be an empty folder).
      framework: ``"flax"`` (linen or nnx) or ``"equinox"``: parameter names and layouts.
      spec: the architecture, when the parameters do not say it all; its activation is used.
      activation: φ when there is no spec. A checkpoint does not record it: with neither,
        ``reference`` must let it be detected (no default; :mod:`ntkplast.runs.output_check`).
      tree_path: dotted path to the parameters in the restored tree (default: the tree, or
        its ``params`` entry when it is a train state).
      key_order: as in :func:`ntkplast.convert.state_dict_to_params`.
      input_shape: as in :func:`ntkplast.convert.state_dict_to_params`.
      pattern: regular expression whose first group (or whole match) is the number.
      number: what the number counts, ``"step"`` or ``"task"``.
      reference: as in :func:`ntkplast.runs.interop.import_folder` (the original network's
        outputs).
      tasks: as in :func:`ntkplast.runs.interop.import_folder` (the per-task score
        table).
      plasticity_measure: as in :func:`ntkplast.runs.interop.import_folder` (the per-task score
        table).
      higher_is_better: as in :func:`ntkplast.runs.interop.import_folder` (the per-task score
        table).
      method: as in :func:`ntkplast.runs.interop.import_folder` (the report group).
      seed: as in :func:`ntkplast.runs.interop.import_folder` (the report group).

    Returns:
      The new run, opened (:func:`ntkplast.runs.checkpoints.open_run`).

    Raises:
      NtkplastError: as :func:`ntkplast.runs.interop.import_folder`, and a refused or unknown
        file format; nothing is left behind.
    """
    if framework not in FRAMEWORKS:
        raise NtkplastError(f"framework: unknown {framework!r}; choose one of "
                            f"{list(FRAMEWORKS)} (PyTorch: ntkplast import --framework torch)")
    src, regex = interop.check_source(src_dir, pattern, number)
    run = Path(run_dir)
    interop.check_new_run(run)
    files = _sources(src, regex, pattern)

    def load(path: Path, act: str | None) -> tuple[models.ArchSpec, models.Params]:
        tree = _subtree(load_pytree(path), tree_path, str(path))
        return pytree_to_params(tree, spec, activation=act or "relu", input_shape=input_shape,
                                input_layout=FRAMEWORKS[framework], key_order=key_order,
                                source=str(path))

    chosen, how = interop.resolve_import_activation(
        src, files, load, activation=activation, spec_given=spec is not None,
        reference=reference)
    imported_from = {"folder": str(src.resolve()), "pattern": pattern, "number": number,
                     "framework": framework, "tree_path": tree_path,
                     "formats": sorted({"orbax" if p.is_dir() else p.suffix.lower()[1:]
                                        for p in files.values()}), **how}
    return interop.write_imported_run(run, lambda tmp: interop.label_run(
        interop.convert_files(files, tmp, number, lambda p: load(p, chosen), input_shape,
                              imported_from),
        tasks=tasks, plasticity_measure=plasticity_measure, higher_is_better=higher_is_better,
        method=method, seed=seed))


def import_function_folder(src_dir: str | os.PathLike, run_dir: str | os.PathLike, *,
                           apply: str, layers: str | None = None,
                           trainable: str | None = None, tree_path: str | None = None,
                           input_shape: Sequence[int] | None = None, pattern: str = r"(\d+)",
                           number: str = "step", reference: Any = None, tasks: Any = None,
                           plasticity_measure: str | None = None, higher_is_better: bool = True,
                           method: str | None = None, seed: int | None = None
                           ) -> checkpoints.Run:
    """Import JAX checkpoints of a model ntkplast cannot describe, kept as it is: a run folder
    whose model is the importable ``apply`` (:mod:`ntkplast.runs.function_models`).

    Each checkpoint's tree (or its ``tree_path`` entry; default the whole tree, e.g. Flax
    variables ``{"params", "batch_stats"}``) is stored as it is, a nested dict of arrays. With a
    reference (``(x, outputs)``, an ``.npz``, or ``probe.npz`` in ``src_dir``), ``apply`` must
    reproduce the outputs on the named (default first) checkpoint to the relative tolerance of
    :mod:`ntkplast.runs.output_check`; the input shape is then the reference's, else
    ``input_shape`` is required.

    Args:
      src_dir: as in :func:`import_jax_folder`.
      run_dir: as in :func:`import_jax_folder`.
      pattern: as in :func:`import_jax_folder`.
      number: as in :func:`import_jax_folder`.
      apply: the model's ``module:attribute`` path
        (:class:`ntkplast.runs.function_models.FunctionSpec`).
      layers: the model's ``module:attribute`` path
        (:class:`ntkplast.runs.function_models.FunctionSpec`).
      trainable: the model's trained entry
        (:class:`ntkplast.runs.function_models.FunctionSpec`).
      tree_path: dotted path to the stored tree in each checkpoint (default: all of it).
      input_shape: one input's shape, when there is no reference.
      reference: as in :func:`ntkplast.runs.interop.import_folder`.
      tasks: as in :func:`ntkplast.runs.interop.import_folder`.
      plasticity_measure: as in :func:`ntkplast.runs.interop.import_folder`.
      higher_is_better: as in :func:`ntkplast.runs.interop.import_folder`.
      method: as in :func:`ntkplast.runs.interop.import_folder`.
      seed: as in :func:`ntkplast.runs.interop.import_folder`.

    Returns:
      The new run, opened.
    """
    src, regex = interop.check_source(src_dir, pattern, number)
    run = Path(run_dir)
    interop.check_new_run(run)
    files = _sources(src, regex, pattern)
    reference, first = interop.find_reference(src, files, reference)
    if reference is not None:
        input_shape = tuple(reference[0].shape[1:])
    if input_shape is None:
        raise NtkplastError("a function model's input shape is not in its parameters: give "
                            "--input-shape (e.g. 784 or 28,28,1) or --probe FILE.npz with x")
    probe_x = np.zeros((1, *input_shape), np.float32) if reference is None else reference[0]

    def load(path: Path) -> tuple[FunctionSpec, Any]:
        tree = load_pytree(path)
        tree = tree if tree_path is None else _subtree(tree, tree_path, str(path))
        if not isinstance(tree, Mapping):
            raise NtkplastError(f"{path}: the stored tree is a {type(tree).__name__}, not a dict "
                                f"of arrays; give --tree-path")
        return spec, tree

    spec = FunctionSpec(apply, layers, trainable)
    model = build(spec)
    params = checkpoints.arrays_to_tree(checkpoints.params_to_arrays(load(first)[1]), str(first))
    try:
        outputs = np.asarray(model.apply(params, probe_x))
    except Exception as e:  # the user's function on the stored tree: any error is theirs
        raise NtkplastError(f"model.apply {apply!r} fails on {first.name}'s parameters "
                            f"({type(e).__name__}: {e})") from None
    if outputs.ndim != 2:
        raise NtkplastError(f"model.apply {apply!r} returns shape {outputs.shape}; expected "
                            f"N × K logits")
    spec = dataclasses.replace(spec, num_outputs=int(outputs.shape[1]))
    if reference is not None:
        err = output_check.relative_error(outputs, reference[1])
        if err > output_check.RTOL:
            raise NtkplastError(f"model.apply {apply!r} does not reproduce the reference outputs "
                                f"(relative error {err:.2g} > {output_check.RTOL:g})")
    imported_from = {"folder": str(src.resolve()), "pattern": pattern, "number": number,
                     "tree_path": tree_path, "activation_from": "the model's own apply" + (
                         ", verified on the reference outputs" if reference is not None else "")}
    return interop.write_imported_run(run, lambda tmp: interop.label_run(
        interop.convert_files(files, tmp, number, load, input_shape, imported_from),
        tasks=tasks, plasticity_measure=plasticity_measure, higher_is_better=higher_is_better,
        method=method, seed=seed))
