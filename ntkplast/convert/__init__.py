"""Foreign parameters as ntkplast ``(ArchSpec, params)``: pure conversion of arrays, no files.

===================  ========================================================================
module               what it converts
===================  ========================================================================
``state_dicts``      a PyTorch state dict (:func:`state_dict_to_params`): layouts, layer order
``pytrees``          a JAX pytree, Flax or Equinox (:func:`pytree_to_params`), through a state dict
===================  ========================================================================

Below both of its users, so neither imports the other: :mod:`ntkplast.runs` (the importers,
which read the files and write run folders) and :mod:`ntkplast.adapters` (models of other JAX
frameworks, whose parameters convert by name and layout).
"""

from ntkplast.convert.pytrees import path_name, pytree_to_params, pytree_to_state_dict
from ntkplast.convert.state_dicts import INPUT_LAYOUTS, state_dict_to_params

__all__ = ["INPUT_LAYOUTS", "path_name", "pytree_to_params", "pytree_to_state_dict",
           "state_dict_to_params"]
