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

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast import models, safe_read
from ntkplast.convert.state_dicts import INPUT_LAYOUTS, state_dict_to_params
from ntkplast.errors import NtkplastError
from ntkplast.lock import LOCK_NAME, folder_lock
from ntkplast.runs import checkpoints
from ntkplast.runs.state_dicts import (
    SUFFIXES,
    TORCH_SUFFIXES,
    load_safetensors,
    load_state_dict,
    load_torch,
)

__all__ = ["INPUT_LAYOUTS", "SUFFIXES", "TORCH_SUFFIXES", "import_folder", "load_safetensors",
           "load_spec_file", "load_state_dict", "load_torch", "state_dict_to_params"]


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
    def number_of(path: Path) -> int | None:
        if not path.is_file() or path.suffix.lower() not in SUFFIXES:
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
    """
    first: tuple[models.ArchSpec, Path, dict[str, Any]] | None = None  # spec, file, manifest
    for n in sorted(files):
        path = files[n]
        got_spec, params = load(path)
        if first is None:
            if input_shape is None:
                input_shape = (int(params[0]["W"].shape[0]),)
            first = (got_spec, path, checkpoints.new_manifest(
                got_spec, input_shape, complete=True,
                origin={"imported_from": dict(imported_from)}))
        elif got_spec != first[0]:
            raise NtkplastError(f"{path}: architecture {got_spec.to_dict()} differs from "
                                f"{first[1].name}'s {first[0].to_dict()}; import one "
                                f"architecture per run folder")
        checkpoints.append_checkpoint(out, first[2], params, step=n,
                                      task=n if number == "task" else 0, kind="imported",
                                      source=path.name, save_manifest=False)
    assert first is not None
    return first[2]


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


def write_imported_run(run: Path, convert: Callable[[Path], dict[str, Any]]) -> checkpoints.Run:
    """Write a run folder from ``convert(tmp) -> manifest`` (:func:`convert_files`: the
    checkpoints written into ``tmp``, the manifest that lists them not yet), holding the folder's
    writer lock (:func:`ntkplast.lock.folder_lock`): convert into a temporary sibling, then move
    the checkpoints in and the manifest last (nothing is left behind on an error). ``run`` must
    not exist or be empty.
    """
    with folder_lock(run, "import"):
        if any(p.name != LOCK_NAME for p in run.iterdir()):
            raise NtkplastError(f"{run} already exists; choose a new run folder (import never "
                                f"overwrites)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{run.name}.importing-", dir=run.parent))
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


def import_folder(src_dir: str | os.PathLike, run_dir: str | os.PathLike, *,
                  spec: models.ArchSpec | Mapping[str, Any] | None = None,
                  key_order: Sequence[str] | None = None, pattern: str = r"(\d+)",
                  input_shape: Sequence[int] | None = None, number: str = "step",
                  input_layout: str = "chw", activation: str = "relu") -> checkpoints.Run:
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
      spec, key_order, input_shape, input_layout, activation: as in
        :func:`state_dict_to_params`; every file must give the same architecture.
      pattern: regular expression searched in each file name.
      number: what the number in the name counts, ``"step"`` or ``"task"``.

    Returns:
      The new run, opened (:func:`ntkplast.checkpoints.open_run`).

    Raises:
      NtkplastError: a missing source folder, no matching files, two files with one number, an
        existing run folder, a file that matches no supported architecture or differs from the
        first; nothing is left behind.
    """
    src, regex = check_source(src_dir, pattern, number)
    run = Path(run_dir)
    files = _numbered_files(src, regex, pattern)

    def load(path: Path) -> tuple[models.ArchSpec, models.Params]:
        return state_dict_to_params(load_state_dict(path), spec, key_order,
                                    input_shape=input_shape, input_layout=input_layout,
                                    activation=activation, source=str(path))

    imported_from = {"folder": str(src.resolve()), "pattern": pattern, "number": number,
                     "input_layout": input_layout}
    return write_imported_run(
        run, lambda tmp: convert_files(files, tmp, number, load, input_shape, imported_from))
