"""Flax nnx models: ``model(x)`` as an ntkplast network.

The parameters are ``nnx.state(model, nnx.Param)`` (attribute names such as ``fc1``/``fc2`` or
``layers.<i>``: layer order follows the numbers in the names, else the shapes); the activation
is found by :func:`ntkplast.adapters.convert.recognise`. Flax is imported only here, when an nnx
model is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ntkplast import models
from ntkplast.adapters.convert import Adapted, recognise

__all__ = ["from_nnx"]


def from_nnx(model: Any, x: Any, *, activation: str | None = None,
             spec: models.ArchSpec | Mapping[str, Any] | None = None,
             rtol: float = 1e-4) -> Adapted:
    """A Flax nnx MLP/CNN (``nnx.Linear``, ``nnx.Conv``, ``nnx.LayerNorm``) as an
    :class:`~ntkplast.adapters.convert.Adapted` network; ``x``: a few probe inputs (NHWC
    images); ``activation``, ``spec``, ``rtol`` as in
    :func:`~ntkplast.adapters.convert.recognise`."""
    from flax import nnx

    return recognise(nnx.state(model, nnx.Param), model, x, activation=activation, spec=spec,
                     input_layout="hwc", rtol=rtol, source=f"nnx {type(model).__name__}")
