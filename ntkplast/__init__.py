"""ntkplast: empirical neural-tangent-kernel diagnostics of plasticity loss in continual learning.

Submodules (import what you use; each has one concern)::

    from ntkplast import models, data, streams, custom_streams, train, checkpoints, config
    from ntkplast import ntk, spectra, isometry, dormancy, probes, analysis, table, hypotheses
    from ntkplast import regularizers, experiment, sweep, figures, interop
"""

from ntkplast.errors import NtkplastError

__version__ = "0.1.0"
__all__ = ["NtkplastError", "__version__"]
