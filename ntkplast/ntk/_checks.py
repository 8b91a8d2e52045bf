"""Helpers of the NTK entry points (the input checks themselves are in :mod:`ntkplast.validate`)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def param_dtype(params: Any) -> Any:
    """The floating dtype of the first weight (probe inputs are cast to it)."""
    return jnp.asarray(jax.tree_util.tree_leaves(params)[0]).dtype


def num_params(params: Any) -> int:
    """Total number of scalar parameters."""
    return sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def cast(params: Any, x1: jax.Array, x2: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
    """Probe inputs in the params' floating dtype."""
    dtype = param_dtype(params)
    return jnp.asarray(x1, dtype), None if x2 is None else jnp.asarray(x2, dtype)
