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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.io.files import load_arrays

__all__ = ["ATOL", "FIRST", "RTOL", "Reference", "output_error", "read_reference",
           "relative_error", "resolve_activation"]

RTOL = 1e-4
ATOL = 1e-6
Reference = tuple[np.ndarray, np.ndarray]
"""Probe inputs ``N × input_shape`` and the original network's outputs on them, ``N × K``."""
FIRST = -1
"""The ``step`` of a reference that does not name one: the import's first checkpoint."""
Loader = Callable[[str | None], tuple[models.ArchSpec, models.Params]]
"""``load(activation)``: the first checkpoint converted with that φ (``None``: the spec's)."""


def read_reference(path: str | os.PathLike) -> tuple[Reference, int]:
    """``((x, outputs), step)`` of a reference file: an ``.npz`` with arrays ``x`` (inputs,
    ``N × input_shape``), ``outputs`` (the original network's outputs on them, ``N × K``) and
    optionally ``step`` (a scalar: the number of the checkpoint that gave them; default
    :data:`FIRST`)."""
    arrays = load_arrays(path)
    step = FIRST
    if "step" in arrays:
        s = arrays["step"]
        if s.shape != () or s.dtype.kind not in "iu" or int(s) < 0:
            raise NtkplastError(f"reference file {path}: step must be one integer >= 0 (the "
                                f"checkpoint whose outputs these are), got {s!r:.40}")
        step = int(s)
    missing = [k for k in ("x", "outputs") if k not in arrays]
    if missing:
        raise NtkplastError(f"reference file {path}: no array {missing} (found {sorted(arrays)}); "
                            f"it needs x (probe inputs) and outputs (your network's outputs on x)")
    x, out = arrays["x"], arrays["outputs"]
    for name, a in (("x", x), ("outputs", out)):
        if a.dtype.kind not in "fiu" or a.ndim < 2 or len(a) == 0:
            raise NtkplastError(f"reference file {path}: {name} must be a non-empty numeric "
                                f"array with a batch axis, got dtype {a.dtype} shape {a.shape}")
    if len(x) != len(out):
        raise NtkplastError(f"reference file {path}: x has {len(x)} rows, outputs {len(out)}")
    return (np.asarray(x, np.float32), np.asarray(out, np.float64)), step


def output_error(spec: models.ArchSpec, params: models.Params, reference: Reference) -> float:
    """max_i |f̂(x)_i − f(x)_i| / (max_i |f(x)_i| + ATOL/RTOL) of the converted network ``spec``,
    ``params`` on the reference: ≤ RTOL means it reproduces the original."""
    x, want = reference
    return relative_error(models.build(spec).apply(params, x), want)


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
    shown = ", ".join(f"{n}: {e:.2g}" if isinstance(e, float) else f"{n}: {e}"
                      for n, e in errors.items())
    if len(match) != 1:
        raise NtkplastError(f"{source}: {'no' if not match else 'several'} activation(s) "
                            f"{match if match else ''} reproduce the reference outputs "
                            f"(relative errors {shown}); pass --spec FILE with the architecture")
    return match[0]
