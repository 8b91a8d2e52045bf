"""Data: datasets, the task streams built from them, and users' own streams.

===================  ========================================================================
module               what it holds
===================  ========================================================================
``datasets``         :func:`load_dataset` (built-in digits, MNIST/CIFAR files), :class:`Dataset`
``streams``          :class:`StreamSpec`, :func:`make_stream`: permuted, split, shuffled labels …
``spec``             :class:`StreamSpec`, for ``streams`` (re-exported) and ``regression``
``custom``           :class:`Stream` protocol and :class:`ArrayStream` for a user's own tasks
===================  ========================================================================

``from ntkplast import data`` gives the dataset functions directly (``data.load_dataset``);
``ntkplast.streams`` and ``ntkplast.custom_streams`` are the flat names of ``streams`` and
``custom``.
"""

from ntkplast.data.datasets import (
    DATA_ENV,
    DEFAULT_DATA_DIR,
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_FRACTION,
    Dataset,
    load_dataset,
    read_idx,
    resolve_data_dir,
)

__all__ = ["DATA_ENV", "DEFAULT_DATA_DIR", "DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "Dataset",
           "load_dataset", "read_idx", "resolve_data_dir"]
