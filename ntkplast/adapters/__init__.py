"""Models written in other JAX frameworks, as ntkplast analyses them.

* :func:`from_linen`, :func:`from_nnx`, :func:`from_equinox`: a Flax linen, Flax nnx or
  Equinox MLP/CNN becomes an :class:`Adapted` ``(model, params)`` of :mod:`ntkplast.models`,
  checked to compute the framework's outputs, so every diagnostic (layerwise NTK engine,
  isometry, dormancy) applies unchanged.
* :class:`FunctionModel`: any ``apply(params, x) -> logits`` with optional layer functions,
  for the generic NTK engine (:func:`empirical_ntk`) and, with layers, dormancy and isometry.
* :func:`pytree_to_params`: a parameter pytree (what an Orbax or msgpack checkpoint holds)
  as ntkplast params.

Flax and Equinox are imported only when one of their models is given.
"""

from ntkplast.adapters.convert import CANDIDATE_ACTIVATIONS, Adapted, recognise
from ntkplast.adapters.equinox import from_equinox
from ntkplast.adapters.function import (
    FunctionModel,
    empirical_ntk,
    layer_names,
    layer_spectra,
    unit_scores,
)
from ntkplast.adapters.linen import from_linen
from ntkplast.adapters.nnx import from_nnx
from ntkplast.convert.pytrees import pytree_to_params, pytree_to_state_dict

__all__ = ["CANDIDATE_ACTIVATIONS", "Adapted", "FunctionModel", "empirical_ntk", "from_equinox",
           "from_linen", "from_nnx", "layer_names", "layer_spectra", "pytree_to_params",
           "pytree_to_state_dict", "recognise", "unit_scores"]
