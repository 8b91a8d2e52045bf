"""Dense symmetric eigendecompositions and singular values, through numpy's LAPACK.

Measured on this project's 2-core CPU machine: jax's ``jnp.linalg.svd``/``eigh`` under jit are
100–300× slower than numpy's LAPACK on the same matrices (32 batched 100 × 100 SVDs: 4.4 s with
jax 0.4.25, 6.4 s with jax 0.10.2, 0.02 s with numpy; one 256 × 256 ``eigh``: 1.8 s / 0.8 s with
jax). The matrices ntkplast decomposes (layer Jacobians, feature matrices, probe-set Grams) are
small, so they are moved to the host and decomposed there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["eigh", "eigvalsh", "singular_values"]


def singular_values(a: Any) -> np.ndarray:
    """Singular values (descending) of a matrix or a stack of matrices ``(..., m, n)``."""
    return np.linalg.svd(np.asarray(a), compute_uv=False)


def eigh(a: Any) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and orthonormal eigenvectors of a symmetric matrix.

    The input is symmetrised as (A + Aᵀ)/2 first, so rounding asymmetry does not matter.
    """
    a = np.asarray(a)
    return np.linalg.eigh(0.5 * (a + np.swapaxes(a, -1, -2)))


def eigvalsh(a: Any) -> np.ndarray:
    """Eigenvalues (descending) of a symmetric matrix or a stack ``(..., n, n)``."""
    a = np.asarray(a)
    return np.linalg.eigvalsh(0.5 * (a + np.swapaxes(a, -1, -2)))[..., ::-1]
