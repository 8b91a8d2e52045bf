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

with ``models`` (architectures), ``hooks``, ``table``, ``io/`` (file primitives: ``files``,
atomic writes and guarded ``.npz`` reads; ``safe_read``, bounded reads of regular files;
``lock``, one writer per folder), ``plain``, ``validate``, ``linalg`` and ``errors`` below them,
and ``base`` (the shared types and protocols: ``Array``, ``Params``, the model and stream
protocols, ``Hooks``) at the bottom, importing nothing from ntkplast. Each module has one name::

    from ntkplast import models, data, training, ntk, spectra, isometry, dormancy, analysis
    from ntkplast import stats, regularizers, figures
    from ntkplast.data import streams, custom
    from ntkplast.runs import checkpoints

Old names still import, with a DeprecationWarning that names the new module, until a later
release removes them: the second names of the flat layout (``train`` for
:mod:`ntkplast.training`, ``streams`` for :mod:`ntkplast.data.streams`, ``custom_streams`` for
:mod:`ntkplast.data.custom`, ``checkpoints`` for :mod:`ntkplast.runs.checkpoints`,
``hypotheses`` for :mod:`ntkplast.stats`), the modules that moved in 0.2 (``config``,
``probes``, ``interop``, ``experiment``, ``sweep``, ``executors``, ``demo``, ``reactivation``,
``stax_bridge``) and those that moved into ``io/`` (``files``, ``safe_read``, ``lock``).

Conventions of the public API. Array shapes are written in each docstring with one alphabet:
``N`` probe inputs (``N1``, ``N2`` for the two sides of a kernel), ``K`` network outputs, ``d``
units of a layer, ``L`` weight layers, ``T`` checkpoints, ``P`` parameters, ``input_shape`` one
input (``[D]`` or ``[H, W, C]``); ``N × K`` and ``(N, d)`` mean the same. Kernels come as
``N1 × N2`` (output-traced) or ``N1 × N2 × K × K``. Arrays are ``jax.Array`` in and out unless a
docstring says numpy. PRNG keys are keyword-only (``*, key``), except a model's
``init(key, input_shape)``, which follows stax's ``init_fn(rng, input_shape)``. Both are tested
(``tests/system/test_signatures.py``).

How the old names resolve, without an import hook: ``ntkplast.<old>`` as an attribute and
``from ntkplast import <old>`` go through this module's ``__getattr__`` (PEP 562);
``import ntkplast.<old>`` statements, which never consult ``__getattr__``, find a stub per old
name in ``_old_names/`` (a folder on this package's ``__path__``) that puts the new module in
``sys.modules`` under the old name. Nothing is imported before it is asked for.
"""

import importlib
import pathlib
import warnings
from types import ModuleType

from ntkplast.errors import NtkplastError

__version__ = "0.3.0"
__all__ = ["NtkplastError", "__version__"]

_MOVED = {
    # the flat layout's second names of 0.2 (warning since 0.3)
    "train": "ntkplast.training",
    "streams": "ntkplast.data.streams",
    "custom_streams": "ntkplast.data.custom",
    "checkpoints": "ntkplast.runs.checkpoints",
    "hypotheses": "ntkplast.stats",
    # moved in 0.2
    "config": "ntkplast.training.config",
    "probes": "ntkplast.analysis.probes",
    "interop": "ntkplast.runs.interop",
    "experiment": "ntkplast.experiments.grid",
    "sweep": "ntkplast.experiments.sweep",
    "executors": "ntkplast.experiments.executors",
    "demo": "ntkplast.experiments.demo",
    "reactivation": "ntkplast.experiments.reactivation",
    "stax_bridge": "ntkplast.ntk._stax",
    # moved into io/
    "files": "ntkplast.io.files",
    "safe_read": "ntkplast.io.safe_read",
    "lock": "ntkplast.io.lock",
}

_STUBS = str(pathlib.Path(__file__).with_name("_old_names"))
if _STUBS not in __path__:  # once, also under importlib.reload
    __path__.append(_STUBS)


def _old_module(name: str) -> ModuleType:
    """The module that the old name ``ntkplast.<name>`` stands for (a key of ``_MOVED``),
    imported, with a DeprecationWarning that blames the code that asked for it.

    Called by ``__getattr__`` and by the stubs in ``_old_names/``, each one frame below the
    user's code (``warnings`` skips importlib's own frames), hence ``stacklevel=3``.
    """
    warnings.warn(f"ntkplast.{name} moved to {_MOVED[name]}; import it from there "
                  f"(the old name will be removed in a later release)",
                  DeprecationWarning, stacklevel=3)
    return importlib.import_module(_MOVED[name])


def __getattr__(name: str) -> ModuleType:
    """``ntkplast.<old name>`` (PEP 562): the module it now lives in, the same object.

    The result is kept as an attribute, as an import would keep it, so ``from ntkplast import
    config`` warns once, not once per look-up.

    Raises:
      AttributeError: ``name`` is neither an attribute nor an old module name.
    """
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _old_module(name)
    globals()[name] = module
    return module
