"""ntkplast: empirical neural-tangent-kernel diagnostics of plasticity loss in continual learning.

Submodules (import what you use; each has one concern)::

    from ntkplast import models, data, streams, train, checkpoints, config, ntk, spectra
"""

from ntkplast.errors import NtkplastError

__version__ = "0.1.0"
__all__ = ["NtkplastError", "__version__"]
