"""Ranks of a spectrum, one definition each, shared by the kernel spectra and the feature ranks.

:func:`effective_rank` (Roy & Vetterli 2007) is used over a Gram's eigenvalues by
:func:`ntkplast.spectra.summary_from_eigenvalues` and over a feature matrix's singular values by
:mod:`ntkplast.dormancy`; :func:`srank` is Kumar et al.'s (2021) rank. Both give 0 for an
all-zero spectrum. :func:`array_namespace` picks numpy for host arrays (their own dtype) and
``jax.numpy`` otherwise, so the same function serves float64 host summaries and jitted code.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["array_namespace", "effective_rank", "srank"]


def array_namespace(*arrays: Any) -> Any:
    """numpy when every argument is a host ``np.ndarray`` (computed there, in its own dtype:
    float64 stays float64 whatever jax's x64 flag), else ``jax.numpy`` (jit, vmap)."""
    return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def effective_rank(values: Any) -> Array:
    """Effective rank exp(H(p)), H(p) = −Σ_i p_i log p_i, p_i = v_i⁺ / Σ_j v_j⁺ with
    v⁺ = max(v, 0) and 0·log 0 = 0, of a spectrum ``values`` (the last axis).

    Roy & Vetterli (2007), "The effective rank: a measure of effective dimensionality". The one
    effective rank of ntkplast: over a Gram's eigenvalues in
    :func:`ntkplast.spectra.summary_from_eigenvalues`, over a feature matrix's singular values
    σ (not σ²) in :mod:`ntkplast.dormancy` — the two
    give different numbers for the same matrix, so the metric's name says which. r equal
    positive values give exactly r; an all-zero spectrum gives 0 (rank 0). Host numpy arrays
    are computed in their own dtype (float64 stays float64), anything else with ``jax.numpy``
    (jit-compatible).

    Examples:
      >>> import numpy as np
      >>> from ntkplast import ranks
      >>> print(f"{ranks.effective_rank(np.array([2.0, 2.0, 2.0, 0.0])):.3f}")
      3.000
      >>> print(float(ranks.effective_rank(np.zeros(3))))
      0.0
    """
    xp = array_namespace(values)
    v = xp.clip(xp.asarray(values), 0.0, None)
    total = xp.sum(v, axis=-1, keepdims=True)
    p = v / xp.where(total > 0, total, 1.0)
    h = -xp.sum(xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return xp.where(total[..., 0] > 0, xp.exp(h), 0.0)


def srank(s: Array, delta: float = 0.01) -> Array:
    """srank_δ = min{k : Σ_{i≤k} σ_i ≥ (1 − δ) Σ_i σ_i}, σ sorted descending (Kumar et al. 2021).

    What Dohare et al.'s and Plasticine's code call "stable rank" — not ‖Φ‖_F²/‖Φ‖_2². ``s``:
    singular values ``(n,)``, any order; returns an integer scalar; 0 for an all-zero ``s``.
    Jit-compatible.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import ranks
      >>> int(ranks.srank(jnp.array([10.0, 1.0, 0.01])))   # 10 + 1 ≥ 0.99 · 11.01
      2
      >>> int(ranks.srank(jnp.ones(4))), int(ranks.srank(jnp.zeros(4)))
      (4, 0)
    """
    s = jnp.sort(jnp.abs(jnp.asarray(s)))[::-1]
    c = jnp.cumsum(s)
    k = jnp.sum(c < (1.0 - delta) * c[-1]) + 1
    return jnp.where(c[-1] > 0, k, 0)
