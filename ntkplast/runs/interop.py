"""Import folders of PyTorch checkpoints as run folders, and the steps both importers share.

Each file of the source folder (``.safetensors``, ``.npz``, ``.pt``/``.pth``/``.bin``/``.ckpt``)
is read without running code (:mod:`ntkplast.runs.state_dicts`: safetensors through its numpy
API, PyTorch files through ``torch.load(weights_only=True)``) and converted by
:func:`ntkplast.convert.state_dict_to_params`, whose module docstring says which networks and
layouts are supported and how the architecture is inferred (that function and
:data:`INPUT_LAYOUTS` are importable from here too). The numbered sources, the conversion into
checkpoints and the locked, all-or-nothing move into the run folder (:func:`numbered_sources`,
:func:`check_source`, :func:`convert_files`, :func:`write_imported_run`) are shared with the
JAX importer (:mod:`ntkplast.runs.jax_import`); :func:`load_spec_file` reads an architecture
from a file for the CLI.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast import models
from ntkplast.convert.state_dicts import INPUT_LAYOUTS, state_dict_to_params
from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read
from ntkplast.io.lock import LOCK_NAME, folder_lock
from ntkplast.runs import checkpoints, output_check, task_scores
from ntkplast.runs.state_dicts import (
    SUFFIXES,
    TORCH_SUFFIXES,
    load_safetensors,
    load_state_dict,
    load_torch,
)

__all__ = ["INPUT_LAYOUTS", "REFERENCE_NAME", "SUFFIXES", "TORCH_SUFFIXES", "find_reference",
           "import_folder",
           "label_run", "load_safetensors", "load_spec_file", "load_state_dict", "load_torch",
           "resolve_import_activation", "state_dict_to_params"]

REFERENCE_NAME = "probe.npz"
"""A reference file (:func:`ntkplast.runs.output_check.read_reference`) with this name in an
import's source folder is used when none is given."""


def load_spec_file(path: str | os.PathLike) -> models.ArchSpec:
    """Read an architecture from a JSON or TOML file: ArchSpec fields, or a ``model`` table."""
    path = Path(path)
    try:
        raw = safe_read.read_bytes(path, limit=safe_read.CONFIG_BYTES)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise NtkplastError(f"spec file {path} is not readable ({e})") from None
    if path.suffix.lower() == ".json":
        data = safe_read.loads_json(raw, f"spec file {path}")
    else:
        data = safe_read.loads_toml(text, f"spec file {path}")
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise NtkplastError(f"spec file {path}: expected an object of ArchSpec fields")
    return models.ArchSpec.from_dict(data, where=f"{path}: model")


def _number(name: str, pattern: re.Pattern[str]) -> int | None:
    """The number ``pattern`` finds in ``name`` (its first group, or the whole match), or
    ``None`` when there is no match or it is not all digits."""
    m = pattern.search(name)
    if m is None:
        return None
    text = m.group(1) if m.groups() else m.group(0)
    return int(text) if text is not None and text.isdigit() else None


def numbered_sources(src: Path, number_of: Callable[[Path], int | None], what: str,
                     pattern: str) -> dict[int, Path]:
    """``{number: path}`` of the entries of ``src`` that ``number_of`` numbers (``None``: not a
    checkpoint of this kind), in name order. Two entries with one number, or none at all, are
    refused with the names found. Shared by the PyTorch and the JAX importers."""
    found: dict[int, Path] = {}
    for path in sorted(src.iterdir()):
        n = number_of(path)
        if n is None:
            continue
        if n in found:
            raise NtkplastError(f"{found[n].name} and {path.name} in {src} both have number "
                                f"{n} under pattern {pattern!r}; narrow the pattern")
        found[n] = path
    if not found:
        raise NtkplastError(f"{src}: no {what} whose names match {pattern!r} with a number "
                            f"(found {sorted(p.name for p in src.iterdir())[:8]}); check the "
                            f"source folder and --pattern")
    return found


def _numbered_files(src: Path, regex: re.Pattern[str], pattern: str) -> dict[int, Path]:
    """``{number: path}`` of the checkpoint files in ``src`` whose names carry a number."""
    def number_of(path: Path) -> int | None:  # a FIFO or device with a matching name is named
        if path.is_dir() or path.suffix.lower() not in SUFFIXES:  # when read, never skipped
            return None
        return _number(path.name, regex)
    return numbered_sources(src, number_of, f"files with suffix {'/'.join(SUFFIXES)}", pattern)


def convert_files(files: Mapping[int, Path], out: Path, number: str,
                  load: Callable[[Path], tuple[models.ArchSpec, models.Params]],
                  input_shape: Sequence[int] | None,
                  imported_from: Mapping[str, Any]) -> dict[str, Any]:
    """Convert every source (``load(path) -> (spec, params)``), in number order, into a
    checkpoint in ``out`` (:func:`ntkplast.runs.checkpoints.append_checkpoint`).

    Returns the run's manifest (:func:`ntkplast.runs.checkpoints.new_manifest`), not yet written:
    the architecture (every source must have the first one's), the input shape (the first Dense
    layer's fan-in when ``input_shape`` is ``None``), one ``"imported"`` entry per source naming
    its file under ``source``, ``complete``, and ``imported_from`` last. Shared by the PyTorch
    and the JAX importers (:mod:`ntkplast.runs.jax_import`).

    Every source must also hold the first one's parameters with the same shapes
    (:func:`check_same_shapes`): the architecture does not record the input dimension, so
    checkpoints of networks that differ only there are refused here, naming both files.
    """
    first: tuple[models.ArchSpec, Path, dict[str, Any]] | None = None  # spec, file, manifest
    shapes: dict[str, tuple[int, ...]] = {}
    for n in sorted(files):
        path = files[n]
        got_spec, params = load(path)
        if first is None:
            if input_shape is None:
                input_shape = (int(params[0]["W"].shape[0]),)
            first = (got_spec, path, checkpoints.new_manifest(
                got_spec, input_shape, complete=True,
                origin={"imported_from": dict(imported_from)}))
            shapes = param_shapes(params)
        elif got_spec != first[0]:
            raise NtkplastError(f"{path}: architecture {got_spec.to_dict()} differs from "
                                f"{first[1].name}'s {first[0].to_dict()}; import one "
                                f"architecture per run folder")
        else:
            check_same_shapes(param_shapes(params), shapes, path, first[1])
        checkpoints.append_checkpoint(out, first[2], params, step=n,
                                      task=n if number == "task" else 0, kind="imported",
                                      source=path.name, save_manifest=False)
    assert first is not None
    return first[2]


def param_shapes(params: models.Params | Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a checkpoint's parameters, named as the run folder stores them
    (:func:`ntkplast.runs.checkpoints.params_to_arrays`)."""
    return {k: tuple(int(d) for d in v.shape)
            for k, v in checkpoints.params_to_arrays(params).items()}


def check_same_shapes(got: Mapping[str, tuple[int, ...]], want: Mapping[str, tuple[int, ...]],
                      path: Path, first: Path) -> None:
    """Refuse ``path``'s parameter shapes ``got`` unless they are ``first``'s ``want``: one
    line naming both files and the first parameter that differs (the first layer's weight when
    only the input dimension does)."""
    if got == want:
        return
    name = next((k for k in want if got.get(k) != want[k]), None)
    name = name if name is not None else next(k for k in got if k not in want)
    raise NtkplastError(f"{path}: parameter {name} has shape {got.get(name, 'none')} but "
                        f"{first.name}'s has {want.get(name, 'none')}; every checkpoint of an "
                        f"import must be the same network (same input dimension and layer "
                        f"sizes): import the others into another run folder")


def check_source(src_dir: str | os.PathLike, pattern: str,
                 number: str) -> tuple[Path, re.Pattern[str]]:
    """An importer's source folder and compiled file-name ``pattern``, after checking that the
    folder exists and ``number`` is ``"step"`` or ``"task"``."""
    if number not in ("step", "task"):
        raise NtkplastError(f"number: unknown {number!r}; choose 'step' or 'task'")
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise NtkplastError(f"pattern {pattern!r} is not a valid regular expression ({e})"
                            ) from None
    src = Path(src_dir)
    if not src.is_dir():
        raise NtkplastError(f"{src} is not a folder; give the folder holding the checkpoints")
    return src, regex


def check_new_run(run: Path) -> None:
    """Refuse a run folder that exists and is not empty, before an import reads anything (the
    check is repeated under the lock when the run is written: :func:`write_imported_run`)."""
    blocked = next((p for p in (run, *run.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise NtkplastError(f"{run}: {blocked} is a file, not a folder; choose a new run folder")
    if run.is_dir() and any(p.name != LOCK_NAME for p in run.iterdir()):
        raise NtkplastError(f"{run} already exists; choose a new run folder (import never "
                            f"overwrites)")


_IMPORTING = ".importing-"


def remove_stale_imports(run: Path) -> int:
    """Delete the temporary siblings ``.<run>.importing-<8 random characters>/`` that a killed
    import of ``run`` left (:func:`write_imported_run`), with what they hold; never a link, a
    file, or a folder named otherwise (another run's temporary, a user's folder). Returns how
    many. Call it only while holding ``run``'s lock: every import of ``run`` holds it while its
    temporary exists, so no live process is writing the ones removed."""
    mine = re.compile(re.escape(f".{run.name}{_IMPORTING}") + r"[a-z0-9_]{8}")
    removed = 0
    for path in run.parent.glob(f".{glob.escape(run.name)}{_IMPORTING}*"):
        if mine.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def write_imported_run(run: Path, convert: Callable[[Path], dict[str, Any]]) -> checkpoints.Run:
    """Write a run folder from ``convert(tmp) -> manifest`` (:func:`convert_files`: the
    checkpoints written into ``tmp``, the manifest that lists them not yet), holding the folder's
    writer lock (:func:`ntkplast.io.lock.folder_lock`): remove what a killed import of ``run``
    left (:func:`remove_stale_imports`), convert into a temporary sibling
    ``.<run>.importing-<random>``, then move the checkpoints in and the manifest last (nothing
    is left behind on an error). ``run`` must not exist or be empty.
    """
    with folder_lock(run, "import"):
        check_new_run(run)
        remove_stale_imports(run)
        tmp = Path(tempfile.mkdtemp(prefix=f".{run.name}{_IMPORTING}", dir=run.parent))
        try:
            manifest = convert(tmp)
            checkpoints.write_manifest(tmp, manifest)
            names = [e["file"] for e in manifest["checkpoints"]]
            for name in names + [checkpoints.MANIFEST]:  # manifest last
                os.replace(tmp / name, run / name)
            tmp.rmdir()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return checkpoints.open_run(run)


def find_reference(src: Path, files: Mapping[int, Path],
                   reference: output_check.Reference | str | os.PathLike | None
                   ) -> tuple[output_check.Reference | None, Path]:
    """An import's reference outputs (given, read from a file, or :data:`REFERENCE_NAME` in
    ``src`` when present; ``None`` without any) and the checkpoint they belong to (the
    reference file's ``step``, else the first)."""
    if reference is None and (src / REFERENCE_NAME).is_file():
        reference = src / REFERENCE_NAME
    number = output_check.FIRST
    if isinstance(reference, str | os.PathLike):
        reference, number = output_check.read_reference(reference)
    if number != output_check.FIRST and number not in files:
        raise NtkplastError(f"the reference outputs are of checkpoint {number}, which is not "
                            f"among the import's ({sorted(files)[:12]})")
    return reference, files[min(files) if number == output_check.FIRST else number]


def resolve_import_activation(src: Path, files: Mapping[int, Path],
                              load: Callable[[Path, str | None],
                                             tuple[models.ArchSpec, models.Params]],
                              *, activation: str | None, spec_given: bool,
                              reference: output_check.Reference | str | os.PathLike | None
                              ) -> tuple[str | None, dict[str, Any]]:
    """The activation an import converts with, checked on its first checkpoint
    (:func:`ntkplast.runs.output_check.resolve_activation`; ``reference`` defaults to
    :data:`REFERENCE_NAME` in ``src`` when that file exists; a reference file's ``step`` names
    the checkpoint it checks, else the first), and what the manifest records about it
    (``activation``, ``activation_from``)."""
    reference, first = find_reference(src, files, reference)
    chosen = output_check.resolve_activation(
        lambda a: load(first, a), activation=activation, spec_given=spec_given,
        reference=reference, source=str(src))
    how = ("spec" if spec_given else "argument" if activation is not None else "detected")
    if reference is not None and how != "detected":
        how += ", verified on the reference outputs"
    return chosen, {"activation": chosen if chosen is not None else load(first, None)[0]
                    .activation, "activation_from": how}


def label_run(manifest: dict[str, Any], *, tasks: Any = None,
              plasticity_measure: str | None = None, higher_is_better: bool = True,
              method: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """An imported run's manifest with its task table applied
    (:func:`ntkplast.runs.task_scores.label_tasks`, given ``tasks``) and its ``group`` (the
    method and seed that reports group runs by) recorded, given ``method`` or ``seed``."""
    if tasks is not None:
        table = tasks if isinstance(tasks, task_scores.TaskScores) else \
            task_scores.read_task_scores(tasks)
        manifest = task_scores.label_tasks(manifest, table,
                                           plasticity_measure=plasticity_measure,
                                           higher_is_better=higher_is_better)
    elif plasticity_measure is not None:
        raise NtkplastError("plasticity_measure names a column of a task table; give tasks too")
    if method is not None or seed is not None:
        manifest["group"] = checkpoints.check_group(method, seed)
    return manifest


def import_folder(src_dir: str | os.PathLike, run_dir: str | os.PathLike, *,
                  spec: models.ArchSpec | Mapping[str, Any] | None = None,
                  key_order: Sequence[str] | None = None, pattern: str = r"(\d+)",
                  input_shape: Sequence[int] | None = None, number: str = "step",
                  input_layout: str = "chw", activation: str | None = None,
                  reference: output_check.Reference | str | os.PathLike | None = None,
                  tasks: Any = None, plasticity_measure: str | None = None,
                  higher_is_better: bool = True, method: str | None = None,
                  seed: int | None = None) -> checkpoints.Run:
    """Turn a folder of PyTorch checkpoints into an ntkplast run folder.

    Every file in ``src_dir`` with a known suffix (:data:`SUFFIXES`) whose name matches
    ``pattern`` (its first group, or the whole match, must be digits) becomes one checkpoint,
    sorted by that number, which is the checkpoint's step (``number="step"``) or its task and
    step (``number="task"``). The run folder is written to a temporary sibling and renamed into
    place when complete; the source files are only read. ``ntkplast analyze RUN_DIR --probe
    FILE.npz`` then works on it (an imported run has no task stream to draw a probe from).

    Args:
      src_dir: folder of ``.safetensors``/``.pt``/``.pth``/``.bin``/``.ckpt``/``.npz`` files.
      run_dir: the new run folder; it must not exist (or be an empty folder).
      spec: as in :func:`state_dict_to_params`; every file must give the same
        architecture.
      key_order: as in :func:`state_dict_to_params`; every file must give the same
        architecture.
      input_shape: as in :func:`state_dict_to_params`; every file must give the same
        architecture.
      input_layout: as in :func:`state_dict_to_params`; every file must give the same
        architecture.
      activation: φ when there is no ``spec``. A state dict does not record it, so with
        neither, ``reference`` must let it be detected (no default:
        :mod:`ntkplast.runs.output_check`).
      reference: ``(x, outputs)`` of the original network, or an ``.npz`` holding them
        (default: :data:`REFERENCE_NAME` in ``src_dir`` if present): φ is detected from it, or
        a given φ or spec verified.
      pattern: regular expression searched in each file name.
      number: what the number in the name counts, ``"step"`` or ``"task"``.
      tasks: a per-task score table (a CSV path, a DataFrame or a mapping;
        :mod:`ntkplast.runs.task_scores`) that labels the task ends.
      plasticity_measure: of the ``tasks`` table, as in
        :func:`ntkplast.runs.task_scores.label_tasks`.
      higher_is_better: of the ``tasks`` table, as in
        :func:`ntkplast.runs.task_scores.label_tasks`.
      method: with ``seed``, the group a report puts the run in (default: from the folder
        layout).
      seed: with ``method``, the group a report puts the run in (default: from the folder
        layout).

    Returns:
      The new run, opened (:func:`ntkplast.runs.checkpoints.open_run`).

    Raises:
      NtkplastError: a missing source folder, no matching files, two files with one number, an
        existing run folder, a file that matches no supported architecture or differs from the
        first; nothing is left behind.
    """
    src, regex = check_source(src_dir, pattern, number)
    run = Path(run_dir)
    check_new_run(run)
    files = _numbered_files(src, regex, pattern)

    def load(path: Path, act: str | None) -> tuple[models.ArchSpec, models.Params]:
        return state_dict_to_params(load_state_dict(path), spec, key_order,
                                    input_shape=input_shape, input_layout=input_layout,
                                    activation=act or "relu", source=str(path))

    chosen, how = resolve_import_activation(src, files, load, activation=activation,
                                            spec_given=spec is not None, reference=reference)
    imported_from = {"folder": str(src.resolve()), "pattern": pattern, "number": number,
                     "input_layout": input_layout, **how}
    return write_imported_run(run, lambda tmp: label_run(
        convert_files(files, tmp, number, lambda p: load(p, chosen), input_shape,
                      imported_from),
        tasks=tasks, plasticity_measure=plasticity_measure, higher_is_better=higher_is_better,
        method=method, seed=seed))
