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

__all__ = ["eigh", "eigvalsh", "gated_singular_values", "singular_values"]


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


def gated_singular_values(gate_sub: np.ndarray, lmat: np.ndarray,
                          block_entries: int) -> np.ndarray:
    """σ of J = diag(g)·L for every row g of ``gate_sub`` (host LAPACK).

    float32 (the default): from the eigenvalues, in float64, of the smaller Gram —
    JJᵀ = diag(g)(LLᵀ)diag(g), with LLᵀ formed once, when d_out ≤ d_in, else
    JᵀJ = Lᵀ diag(g²) L — σ = √λ; ~10× cheaper than an SVD per input, and a zero σ comes out
    below √ε₆₄ · σ_max ≈ 1e-8 σ_max, far under the float32 zero threshold. float64 inputs
    (verification) take an SVD of each J, exact to rounding. Blocks of inputs keep the stacked
    matrices within ``block_entries`` entries.
    """
    if gate_sub.dtype == np.float64:
        per = max(1, block_entries // lmat.size)
        return np.concatenate([singular_values(gate_sub[i:i + per, :, None] * lmat)
                               for i in range(0, len(gate_sub), per)])
    lmat = np.asarray(lmat, np.float64)
    d_out, d_in = lmat.shape
    gram = lmat @ lmat.T if d_out <= d_in else None
    per = max(1, block_entries // min(d_out, d_in) ** 2)
    out = []
    for i in range(0, len(gate_sub), per):
        g = np.asarray(gate_sub[i:i + per], np.float64)
        if gram is not None:
            mats = g[:, :, None] * gram[None] * g[:, None, :]
        else:
            mats = np.einsum("ki,sk,kj->sij", lmat, g * g, lmat, optimize=True)
        out.append(np.sqrt(np.clip(eigvalsh(mats), 0.0, None)))
    return np.concatenate(out).astype(gate_sub.dtype)
