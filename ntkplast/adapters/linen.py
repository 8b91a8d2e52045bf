"""Flax linen models: ``module.apply(variables, x)`` as an ntkplast network.

The parameters are ``variables["params"]`` (``Dense_<i>``/``Conv_<i>``/``LayerNorm_<i>`` or the
names the module gave them: layer order follows the numbers in the names, else the shapes);
the activation is found by :func:`ntkplast.adapters.convert.recognise`. Flax is imported only
when a linen model is given, so ntkplast works without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ntkplast import models
from ntkplast.adapters.convert import Adapted, recognise
from ntkplast.errors import NtkplastError

__all__ = ["from_linen"]


def from_linen(module: Any, variables: Mapping[str, Any], x: Any, *,
               activation: str | None = None,
               spec: models.ArchSpec | Mapping[str, Any] | None = None,
               rtol: float = 1e-4) -> Adapted:
    """A Flax linen MLP/CNN (Dense, Conv with SAME padding + 2×2 average pool, LayerNorm) as an
    :class:`~ntkplast.adapters.convert.Adapted` network.

    Args:
      module: the ``flax.linen.Module``.
      variables: what ``module.init`` returned (``{"params": …}``); other collections
        (BatchNorm's ``batch_stats``) have no ntkplast counterpart and are refused.
      x: a few probe inputs, ``N × input_shape`` (NHWC images), to check the conversion on.
      activation: as in :func:`~ntkplast.adapters.convert.recognise`.
      spec: as in :func:`~ntkplast.adapters.convert.recognise`.
      rtol: as in :func:`~ntkplast.adapters.convert.recognise`.
    """
    extra = sorted(set(variables) - {"params"})
    if extra:
        raise NtkplastError(f"linen model: variable collections {extra} besides 'params' (a "
                            f"BatchNorm or other state) have no ntkplast counterpart; use "
                            f"adapters.FunctionModel for the generic engine")
    return recognise(variables["params"], lambda xb: module.apply(variables, xb), x,
                     activation=activation, spec=spec, input_layout="hwc", rtol=rtol,
                     source=f"linen {type(module).__name__}")
