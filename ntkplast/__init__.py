"""ntkplast: empirical neural-tangent-kernel diagnostics of plasticity loss in continual learning.

The package follows the data flow, one stage per sub-package (each file one concern)::

    data/          datasets, task streams, users' own streams
    training/      configs, the jitted step, the loop and reset references
    regularizers/  the isometry regularizer and the plasticity baselines (fill hooks.Hooks)
    runs/          the run-folder format (checkpoints) and importers (interop, jax_import)
    adapters/      Flax linen / nnx, Equinox and any apply function as ntkplast models
    ntk/ spectra isometry dormancy      the diagnostics, one checkpoint at a time
    analysis/      every diagnostic over a run's checkpoints → table.Table
    stats/         correlations, onset order, the predictor test, intervals
    figures/       matplotlib figures of tables
    experiments/   grids of methods × seeds, sweeps, executors, the demo, reactivation
    cli            the ``ntkplast`` command

with ``models`` (architectures), ``hooks``, ``table``, ``files`` (crash-safe I/O), ``plain``,
``validate``, ``linalg`` and ``errors`` below them. The flat names that scripts use stay
importable::

    from ntkplast import models, data, streams, custom_streams, train, checkpoints
    from ntkplast import ntk, spectra, isometry, dormancy, analysis, hypotheses
    from ntkplast import regularizers, figures

(``train`` is :mod:`ntkplast.training`, ``streams`` :mod:`ntkplast.data.streams`,
``custom_streams`` :mod:`ntkplast.data.custom`, ``checkpoints`` :mod:`ntkplast.runs.checkpoints`,
``hypotheses`` :mod:`ntkplast.stats`: the same module objects under a second name.) Modules that
moved in 0.2 (``config``, ``probes``, ``interop``, ``experiment``, ``sweep``, ``executors``,
``demo``, ``reactivation``, ``stax_bridge``) still import from their old names with a
DeprecationWarning.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from ntkplast.errors import NtkplastError

__version__ = "0.3.0"
__all__ = ["NtkplastError", "__version__"]

_FLAT = {
    "train": "ntkplast.training",
    "streams": "ntkplast.data.streams",
    "custom_streams": "ntkplast.data.custom",
    "checkpoints": "ntkplast.runs.checkpoints",
    "hypotheses": "ntkplast.stats",
}
_MOVED = {
    "config": "ntkplast.training.config",
    "probes": "ntkplast.analysis.probes",
    "interop": "ntkplast.runs.interop",
    "experiment": "ntkplast.experiments.grid",
    "sweep": "ntkplast.experiments.sweep",
    "executors": "ntkplast.experiments.executors",
    "demo": "ntkplast.experiments.demo",
    "reactivation": "ntkplast.experiments.reactivation",
    "stax_bridge": "ntkplast.ntk._stax",
}


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``ntkplast.<old>`` as the module it now lives in (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        head, _, name = fullname.partition(".")
        if head == "ntkplast" and (name in _FLAT or name in _MOVED):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # noqa: D102
        name = spec.name.partition(".")[2]
        if name in _MOVED:
            warnings.warn(f"ntkplast.{name} moved to {_MOVED[name]}; import it from there "
                          f"(the old name will be removed in a later release)",
                          DeprecationWarning, stacklevel=2)  # warn() skips importlib's frames
        return importlib.import_module(_FLAT.get(name) or _MOVED[name])

    def exec_module(self, module):  # noqa: D102
        """Nothing to run: the target module is already imported."""


if not any(isinstance(f, _Aliases) for f in sys.meta_path):
    sys.meta_path.append(_Aliases())
