"""File primitives that every stage writing or reading a folder shares.

=============  =====================================================================================
module         what it holds
=============  =====================================================================================
``files``      crash-safe I/O: atomic writes (temporary name, ``fsync``, rename) and guarded
               ``.npz`` reads (:func:`~ntkplast.io.files.load_arrays`, no pickle, bounded)
``safe_read``  bounded reads of files someone else wrote: regular files only, size bounds, JSON and
               TOML with a nesting bound (:func:`~ntkplast.io.safe_read.open_regular`)
``lock``       one writer per folder: :func:`~ntkplast.io.lock.folder_lock`, an ``flock`` that a
               killed process cannot leave stuck
=============  =====================================================================================

Import the modules themselves (``from ntkplast.io import files``; ``from ntkplast.io.lock import
folder_lock``): this package imports nothing on its own. Their old names ``ntkplast.files``,
``ntkplast.safe_read`` and ``ntkplast.lock`` still import, with a DeprecationWarning.
"""
