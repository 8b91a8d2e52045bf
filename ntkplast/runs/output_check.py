"""The activation of imported checkpoints: checked against the network's own outputs, never assumed.

A state dict or a parameter pytree records the weights but not the nonlinearity φ between them,
and every diagnostic of the run depends on φ (the NTK through φ', dormancy through a_l, the layer
Jacobians through diag φ'(z)). An importer therefore takes φ from one of:

* an architecture ``spec`` (its ``activation``), or an explicit ``activation``;
* a **reference**: probe inputs ``x`` and the outputs ``f(x)`` that the original network gave on
  them (saved by the user's own code beside the checkpoints). The converted network is run on
  ``x`` with each activation ntkplast builds (:data:`ntkplast.models.ACTIVATION_NAMES`), and the
  one whose outputs agree,

      max_i |f̂(x)_i − f(x)_i| ≤ rtol · max_i |f(x)_i| + atol     (rtol = 1e-4, atol = 1e-6),

  is used; none or several agreeing is refused, naming the candidates' errors. A given φ with a
  reference is verified the same way.

With none of these the import is refused: there is no default φ. :func:`read_reference` reads a
reference file (``.npz`` with arrays ``x`` and ``outputs``, and optionally ``step``: the number
of the checkpoint whose outputs they are; default the first) and :func:`resolve_activation`
applies the rule above to that checkpoint of an import.

A reference file is a **probe file**, the format that ``analyze --probe FILE.npz`` reads too
(``x``, optionally labels ``y``): :func:`read_probe_file` is the one reader of both, and checks
every array before anything uses it (its docstring states what is accepted).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ntkplast import models, validate
from ntkplast.errors import NtkplastError
from ntkplast.io.files import load_arrays

__all__ = ["ATOL", "FIRST", "LABEL_BOUND", "PROBE_ARRAYS", "RTOL", "ProbeFile", "Reference",
           "output_error", "read_probe_file", "read_reference", "relative_error",
           "resolve_activation"]

RTOL = 1e-4
ATOL = 1e-6
Reference = tuple[np.ndarray, np.ndarray]
"""Probe inputs ``N × input_shape`` and the original network's outputs on them, ``N × K``."""
FIRST = -1
"""The ``step`` of a reference that does not name one: the import's first checkpoint."""
PROBE_ARRAYS = ("x", "y", "outputs", "step")
"""The arrays a probe file may hold (:func:`read_probe_file`); any other is refused."""
LABEL_BOUND = 2**16
"""Labels ``y`` must be below this when the number of classes is not known: they index the
network's outputs, and the kernel–target alignment one-hot encodes them (``N × (max + 1)``)."""
Loader = Callable[[str | None], tuple[models.ArchSpec, models.Params]]
"""``load(activation)``: the first checkpoint converted with that φ (``None``: the spec's)."""


class ProbeFile(NamedTuple):
    """A checked probe file (:func:`read_probe_file`)."""

    x: np.ndarray
    """Inputs, float32 ``N × input_shape``."""
    y: np.ndarray | None
    """Labels, int64 ``N`` (−1: unknown), or ``None``."""
    outputs: np.ndarray | None
    """The original network's outputs on ``x``, float64 ``N × K``, or ``None``."""
    step: int
    """The checkpoint that gave ``outputs`` (:data:`FIRST`: the first)."""


def _refuse(path: str | os.PathLike, what: str) -> NtkplastError:
    return NtkplastError(f"probe file {path}: {what}")


def _real(path: str | os.PathLike, name: str, a: np.ndarray, fix: str) -> None:
    """Refuse an array that does not hold real numbers (bool, complex, strings, dates)."""
    if a.dtype.kind not in "fiu":
        raise _refuse(path, f"{name} must hold real numbers (float or integer), got dtype "
                            f"{a.dtype}; {fix}")


def _finite(path: str | os.PathLike, name: str, a: np.ndarray, dtype: type) -> np.ndarray:
    """``a`` as ``dtype``, refused unless every value is finite in ``dtype``."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(a, dtype)
    bad = np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1))
    if len(bad):
        raise _refuse(path, f"{name} is not finite in {len(bad)} row(s) (NaN, inf or beyond "
                            f"{np.dtype(dtype).name}'s range; first: row {bad[0]}); remove or "
                            f"fix those rows")
    return out


def _labels(path: str | os.PathLike, y: np.ndarray, rows: int, bound: int) -> np.ndarray:
    """The labels ``y`` as ``int64``, checked (:func:`read_probe_file`)."""
    whole = y.dtype.kind in "iu"
    if y.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            whole = bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))
    if not whole:
        raise _refuse(path, f"y must hold integer class labels (-1: unknown), got dtype "
                            f"{y.dtype}{' with non-integer values' if y.dtype.kind == 'f' else ''}"
                            f"; save y as int64")
    if y.ndim != 1:
        raise _refuse(path, f"y must be 1-D (one label per row of x), got shape {y.shape}; "
                            f"for one-hot labels save their argmax")
    if len(y) != rows:
        raise _refuse(path, f"y has {len(y)} labels but x has {rows} rows; save one label per "
                            f"row of x (-1 where unknown)")
    if len(y) and (y.min() < -1 or y.max() >= bound):
        raise _refuse(path, f"y holds labels {y.min()} .. {y.max()}, outside -1 .. {bound - 1} "
                            f"(-1: unknown; {bound} classes); save the class indices the model "
                            f"was trained on")
    return y.astype(np.int64)


def read_probe_file(path: str | os.PathLike, input_shape: Sequence[int] | None = None, *,
                    num_classes: int | None = None) -> ProbeFile:
    """Read and check a probe file: an ``.npz`` of the arrays in :data:`PROBE_ARRAYS`.

    The one reader of the ``--probe FILE.npz`` of ``analyze`` (:func:`ntkplast.analysis.probes.
    build_probe`) and of ``import`` (:func:`read_reference`). What it accepts:

    * ``x`` (required): ``N × input_shape`` real numbers (float or integer dtype; bool, complex,
      strings and objects are refused), ``N >= 1``, every value finite as float32; with
      ``input_shape``, ``x.shape[1:]`` must equal it. Returned as float32.
    * ``y`` (optional): one class label per row of ``x``, 1-D, ``len(y) == N``, integer dtype,
      or a float dtype whose values are all whole numbers (bool refused), each in
      ``-1 .. bound - 1`` (−1: unknown), ``bound = num_classes`` if given, else
      :data:`LABEL_BOUND`. Returned as int64; ``None`` when absent.
    * ``outputs`` (optional): the original network's outputs on ``x``, 2-D ``N × K`` real
      numbers (``K >= 1``), finite as float64. Returned as float64; ``None`` when absent.
    * ``step`` (optional): one integer >= 0, the checkpoint whose outputs these are; absent:
      :data:`FIRST`.

    Any other array is refused (a misspelt ``labels`` would otherwise be silently ignored).

    Raises:
      NtkplastError: one line naming the file and the array, and what to do.
    """
    arrays = load_arrays(path)
    unknown = sorted(set(arrays) - set(PROBE_ARRAYS))
    if unknown:
        raise _refuse(path, f"unknown array(s) {unknown}; a probe file holds x (inputs) and "
                            f"optionally y (labels), outputs (the network's outputs on x) and "
                            f"step; rename or remove the others")
    if "x" not in arrays:
        raise _refuse(path, f"has no array 'x' (found {sorted(arrays)}); save the probe inputs "
                            f"as x, N × the model's input shape")
    x = arrays["x"]
    _real(path, "x", x, "save the inputs as float32")
    if x.ndim < 2:
        raise _refuse(path, f"x must be N × input shape with a batch axis, got shape {x.shape}; "
                            f"for one input save x[None]")
    if len(x) == 0 or x.size == 0:
        raise _refuse(path, f"x has no rows or no values (shape {x.shape}); save at least one "
                            f"input")
    if input_shape is not None and x.shape[1:] != tuple(input_shape):
        raise _refuse(path, f"x has per-example shape {x.shape[1:]}, the model takes "
                            f"{tuple(input_shape)}; save x as N × {tuple(input_shape)}")
    x = _finite(path, "x", x, np.float32)
    y = None
    if "y" in arrays:
        y = _labels(path, arrays["y"], len(x), LABEL_BOUND if num_classes is None else num_classes)
    outputs = None
    if "outputs" in arrays:
        out = arrays["outputs"]
        _real(path, "outputs", out, "save the network's outputs as float32")
        if out.ndim != 2 or out.shape[0] != len(x) or out.shape[1] == 0:
            raise _refuse(path, f"outputs must be 2-D, N × K with one row per row of x ({len(x)} "
                                f"rows) and K >= 1, got shape {out.shape}; save the network's "
                                f"outputs on x")
        outputs = _finite(path, "outputs", out, np.float64)
    step = FIRST
    if "step" in arrays:
        s = arrays["step"]
        if s.shape != () or s.dtype.kind not in "iu" or int(s) < 0:
            raise _refuse(path, f"step must be one integer >= 0 (the checkpoint whose outputs "
                                f"these are), got {s!r:.40}")
        step = int(s)
    return ProbeFile(x, y, outputs, step)


def read_reference(path: str | os.PathLike) -> tuple[Reference, int]:
    """``((x, outputs), step)`` of a reference file: a probe file (:func:`read_probe_file`, every
    array checked) that must hold ``outputs`` (the original network's outputs on ``x``,
    ``N × K``); ``step`` defaults to :data:`FIRST`. The per-example shape of ``x`` is checked
    against the converted network by :func:`output_error`."""
    probe = read_probe_file(path)
    if probe.outputs is None:
        raise _refuse(path, "no array 'outputs'; a reference needs x (probe inputs) and outputs "
                            "(your network's outputs on x)")
    return (probe.x, probe.outputs), probe.step


def output_error(spec: models.ArchSpec, params: models.Params, reference: Reference) -> float:
    """max_i |f̂(x)_i − f(x)_i| / (max_i |f(x)_i| + ATOL/RTOL) of the converted network ``spec``,
    ``params`` on the reference: ≤ RTOL means it reproduces the original.

    Raises:
      NtkplastError: the reference's ``x`` (its per-example shape) does not fit the network, or
        ``params`` do not belong to ``spec`` (:func:`ntkplast.validate.check_probe_set`).
    """
    x, want = reference
    model = models.build(spec)
    validate.check_probe_set(model, params, x, name="the reference's x")
    return relative_error(model.apply(params, x), want)


def relative_error(got: Any, want: np.ndarray) -> float:
    """max_i |got_i − want_i| / (max_i |want_i| + ATOL/RTOL): ≤ RTOL means ``got`` reproduces
    ``want`` (outputs ``N × K``)."""
    got = np.asarray(got, np.float64)
    if got.shape != want.shape:
        raise NtkplastError(f"the converted network gives outputs of shape {got.shape}, the "
                            f"reference {want.shape}")
    return float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + ATOL / RTOL))


def resolve_activation(load: Loader, *, activation: str | None, spec_given: bool,
                       reference: Reference | None, source: str) -> str | None:
    """The activation to convert with (module docstring): ``None`` when a spec gives it.

    Args:
      load: converts the import's first checkpoint with a given φ (``None``: the spec's).
      activation: the φ the user named, or ``None``.
      spec_given: whether an architecture spec was given (it carries φ).
      reference: ``(x, outputs)`` of the original network (:func:`read_reference`), or ``None``.
      source: what is imported, for messages.

    Raises:
      NtkplastError: no φ and no reference (say what to pass), a reference that the named φ
        does not reproduce, or one that no φ or several reproduce.
    """
    if activation is not None and spec_given:
        raise NtkplastError("activation: give it in the spec or as activation, not both")
    if reference is None:
        if activation is None and not spec_given:
            load(None)  # a file that does not convert says so first
            raise NtkplastError(f"{source}: checkpoints do not record the activation; pass "
                                f"--activation NAME (one of {list(models.ACTIVATION_NAMES)}), "
                                f"--spec FILE, or --probe FILE.npz with x and your "
                                f"network's outputs on x to detect it")
        return activation
    if activation is not None or spec_given:
        err = output_error(*load(activation), reference)
        if err > RTOL:
            what = f"activation {activation!r}" if activation else "the spec"
            raise NtkplastError(f"{source}: the network converted with {what} does not reproduce "
                                f"the reference outputs (relative error {err:.2g} > {RTOL:g}); "
                                f"check the activation and the architecture")
        return activation
    errors: dict[str, Any] = {}
    for name in models.ACTIVATION_NAMES:
        try:
            errors[name] = output_error(*load(name), reference)
        except NtkplastError as e:
            errors[name] = str(e)
    match = [n for n, e in errors.items() if isinstance(e, float) and e <= RTOL]
    failed: dict[str, list[str]] = {}  # one message per distinct failure, not per activation
    for n, e in errors.items():
        if not isinstance(e, float):
            failed.setdefault(e, []).append(n)
    shown = "; ".join([f"{n}: {e:.2g}" for n, e in errors.items() if isinstance(e, float)]
                      + [f"{', '.join(names)}: {e}" for e, names in failed.items()])
    if len(match) != 1:
        raise NtkplastError(f"{source}: {'no' if not match else 'several'} activation(s) "
                            f"{match if match else ''} reproduce the reference outputs "
                            f"(relative errors {shown}); pass --spec FILE with the architecture")
    return match[0]
