"""Data: datasets, the task streams built from them, and users' own streams.

Its modules:

- ``datasets``: :func:`load_dataset` (built-in digits, MNIST/CIFAR files), :class:`Dataset`
- ``streams``: :class:`~ntkplast.data.streams.StreamSpec`,
  :func:`~ntkplast.data.streams.make_stream`: permuted, split, shuffled labels …
- ``spec``: :class:`~ntkplast.data.spec.StreamSpec`, for ``streams`` (re-exported) and
  ``regression``
- ``custom``: :class:`~ntkplast.data.custom.Stream` protocol and
  :class:`~ntkplast.data.custom.ArrayStream` for a user's own tasks

``from ntkplast import data`` gives the dataset functions directly (``data.load_dataset``);
``from ntkplast.data import streams, custom`` the modules (their old names ``ntkplast.streams``
and ``ntkplast.custom_streams`` still import, with a DeprecationWarning).
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
