"""Run folders of models that ntkplast cannot describe itself: an importable ``apply`` function.

A BatchNorm, a SiLU, attention or any custom layer has no :class:`~ntkplast.models.ArchSpec`. Such
a run folder records its model by reference (the manifest's ``model``)::

    {"kind": "function", "apply": "package.module:apply",        # apply(params, x) -> N × K
     "layers": "package.module:LAYERS",                          # optional
     "trainable": "params", "num_outputs": K}                    # optional

* ``apply``: a ``module:attribute`` path to ``apply(params, x) -> logits`` on the checkpoint's
  parameters (a nested dict of arrays, stored as ``tree/<key>/…``,
  :mod:`ntkplast.runs.arrays`), e.g. ``lambda v, x: module.apply(v, x, train=False)``;
* ``layers``: optional path to a sequence of layer functions ``f_l(params, u) -> (z_l, a_l)``
  whose composition is the network (:class:`ntkplast.adapters.FunctionModel`); they give
  dormancy and layer-Jacobian spectra. Without them those families are skipped by name;
* ``trainable``: the entry of the parameters that training changes (Flax's ``"params"``); the
  NTK is taken with respect to it, the rest (BatchNorm's running statistics) held fixed;
* ``num_outputs``: K, for the kernel–target alignment (default: read from the outputs).

The functions are imported when the model is first used (reading the manifest, the task
records and figures needs no import), from the module search path: put your package on
``PYTHONPATH`` or install it. :func:`spec_from_dict` reads either kind of model entry,
:func:`build` makes the model of either, and :func:`import_object` resolves a path.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from collections.abc import Mapping
from typing import Any

from ntkplast import models
from ntkplast.errors import NtkplastError

__all__ = ["FUNCTION_KIND", "FunctionSpec", "build", "import_object", "spec_from_dict"]

FUNCTION_KIND = "function"
_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def import_object(path: str, what: str) -> Any:
    """The object at ``"package.module:attribute"`` (attributes may be dotted)."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise NtkplastError(f"{what}: expected 'package.module:attribute', got {path!r}")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise NtkplastError(f"{what} {path!r} cannot be imported ({type(e).__name__}: {e}); put "
                            f"its package on PYTHONPATH or install it") from None
    return obj


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """A model given by reference (module docstring); hashable, so its model is built once."""

    apply: str
    layers: str | None = None
    trainable: str | None = None
    num_outputs: int | None = None
    kind: str = FUNCTION_KIND

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``model`` entry."""
        return {"kind": self.kind, "apply": self.apply, "layers": self.layers,
                "trainable": self.trainable, "num_outputs": self.num_outputs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model") -> FunctionSpec:
        """Read and check a manifest's ``model`` entry of kind ``"function"``."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise NtkplastError(f"{where}: unknown field(s) {unknown} of a function model")
        for name in ("apply", "layers"):
            v = data.get(name)
            if (v is not None or name == "apply") and (not isinstance(v, str)
                                                       or not _PATH.match(v)):
                raise NtkplastError(f"{where}.{name}: expected 'package.module:attribute', "
                                    f"got {v!r}")
        trainable, k = data.get("trainable"), data.get("num_outputs")
        if trainable is not None and (not isinstance(trainable, str) or not trainable):
            raise NtkplastError(f"{where}.trainable: expected a key name, got {trainable!r}")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise NtkplastError(f"{where}.num_outputs: expected an integer >= 1, got {k!r}")
        return cls(data["apply"], data.get("layers"), trainable, k)


def spec_from_dict(data: Mapping[str, Any],
                   where: str = "model") -> models.ArchSpec | FunctionSpec:
    """A manifest's ``model`` entry: a :class:`FunctionSpec` for ``kind = "function"``, else
    :meth:`ntkplast.models.ArchSpec.from_dict`."""
    if isinstance(data, Mapping) and data.get("kind") == FUNCTION_KIND:
        return FunctionSpec.from_dict(data, where)
    return models.ArchSpec.from_dict(data, where=where)


@functools.cache
def build(spec: models.ArchSpec | FunctionSpec) -> Any:
    """The model of ``spec``: :func:`ntkplast.models.build`, or a
    :class:`ntkplast.adapters.FunctionModel` of the imported functions (the same object for
    the same spec, so jit compiles once per run)."""
    if not isinstance(spec, FunctionSpec):
        return models.build(spec)
    from ntkplast.adapters.function import FunctionModel

    apply = import_object(spec.apply, "model.apply")
    layers = import_object(spec.layers, "model.layers") if spec.layers else ()
    if not callable(apply):
        raise NtkplastError(f"model.apply {spec.apply!r} is not callable")
    try:
        layers = tuple(layers)
    except TypeError:
        raise NtkplastError(f"model.layers {spec.layers!r} is not a sequence of layer "
                            f"functions") from None
    return FunctionModel(apply, layers, spec.trainable)
