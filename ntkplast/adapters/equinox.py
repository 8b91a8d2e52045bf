"""Equinox models: ``jax.vmap(model)(x)`` as an ntkplast network.

``eqx.nn.MLP`` (its ``layers``), ``eqx.nn.Sequential`` of ``Linear``/``Conv2d`` and
activations (``eqx.nn.Lambda``), or any module whose array leaves are Linear/Conv/LayerNorm
``weight``/``bias``: Equinox stores ``weight`` as ``out × in`` (Linear) and OIHW (Conv2d, CHW
images), PyTorch's layout. Equinox modules act on one example, so the batch is vmapped; the
activation is found by :func:`ntkplast.adapters.convert.recognise`. Equinox is imported only
here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from ntkplast import models
from ntkplast.adapters.convert import Adapted, recognise

__all__ = ["from_equinox"]


def from_equinox(model: Any, x: Any, *, activation: str | None = None,
                 spec: models.ArchSpec | Mapping[str, Any] | None = None,
                 rtol: float = 1e-4) -> Adapted:
    """An Equinox MLP/CNN as an :class:`~ntkplast.adapters.convert.Adapted` network.

    ``x``: a few probe inputs ``N × input_shape`` in Equinox's layout (images ``C × H × W``;
    the adapted model takes ``H × W × C``). ``activation``, ``spec``, ``rtol`` as in
    :func:`~ntkplast.adapters.convert.recognise`.
    """
    import equinox as eqx

    return recognise(eqx.filter(model, eqx.is_inexact_array), jax.vmap(model), x,
                     activation=activation, spec=spec, input_layout="chw", rtol=rtol,
                     source=f"equinox {type(model).__name__}")
