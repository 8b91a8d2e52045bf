"""Run folders: the checkpoint-series format and importers of foreign checkpoints.

``checkpoints`` reads and writes a run folder (``manifest.json`` + one ``.npz`` per checkpoint);
``interop`` turns PyTorch state dicts into run folders, ``jax_import`` Orbax checkpoints, Flax
msgpack and safetensors pytrees (Flax, Equinox). They read the files; the parameters convert
in :mod:`ntkplast.convert` (pure, shared with :mod:`ntkplast.adapters`), and the crash-safe file
primitives both use are in :mod:`ntkplast.io.files`.
"""

from ntkplast.runs import checkpoints

__all__ = ["checkpoints"]
