"""The plug points of training: :class:`Hooks`, which regularizers fill and the loop calls.

The class is defined in :mod:`ntkplast.base`, at the bottom of the import graph, so that
:mod:`ntkplast.regularizers` builds hooks and :mod:`ntkplast.training` calls them without
importing each other; ``ntkplast.hooks.Hooks`` is the same class.
"""

from ntkplast.base import Hooks

__all__ = ["Hooks"]
