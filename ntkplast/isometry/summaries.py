r"""Isometry summaries of singular values, and the result types of :mod:`ntkplast.isometry`.

Pure functions of spectra (no model): :func:`summarize_singular_values` (χ, the variance of σ²,
mean (log σ)², the fraction of σ in [1/2, 2], zeros, the isometry index and the isometry
deviation), :func:`isometry_index` and :func:`isometry_deviation`, with the summary type
:class:`SingularValueSummary`; and the containers the spectra functions of
:mod:`ntkplast.isometry.spectra` return, :class:`JacobianSpectrum` and :class:`LayerSpectra`.
Definitions and references are in the :mod:`ntkplast.isometry` package docstring.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# ------------------------------------------------------------------------ pure metric functions
def _nonzero(s: Array, rtol: float | None) -> Array:
    """Mask of σ > rtol · max σ per spectrum (default rtol = n · eps of the dtype)."""
    if rtol is None:
        rtol = s.shape[-1] * float(jnp.finfo(s.dtype).eps)
    return s > rtol * jnp.max(s, axis=-1, keepdims=True)


def _index(lam: Array, keep: Array) -> Array:
    k = jnp.sum(keep, axis=-1)
    log_gm = jnp.sum(jnp.where(keep, jnp.log(jnp.where(keep, lam, 1.0)), 0.0), axis=-1) / k
    am = jnp.sum(jnp.where(keep, lam, 0.0), axis=-1) / k
    return jnp.exp(log_gm) / am


def isometry_index(eigs: Array, *, rtol: float | None = None) -> Array:
    """Isometry index of a PSD matrix M from its eigenvalues (Joudaki et al. 2023).

    ``eigs``: ``(..., n)`` eigenvalues λ of M = JJᵀ (σ² of J). Over the nonzero eigenvalues
    (λ > ``rtol`` · max λ, default rtol = n · eps of the dtype; report the zeros apart),

        I(M) = (Π_i λ_i)^{1/k} / ((1/k) Σ_i λ_i) = det(M)^{1/k} / (tr M / k),

    the geometric over the arithmetic mean: I ∈ (0, 1], and I = 1 exactly when all nonzero
    eigenvalues are equal (an isometry up to scale). Returns shape ``(...)``; NaN where every
    eigenvalue is zero. Jit-compatible. Over the nonzero eigenvalues only, so blind to dead
    units (a zero σ of J); :func:`isometry_deviation` counts them.
    """
    eigs = jnp.asarray(eigs)
    return _index(eigs, _nonzero(eigs, rtol))


def isometry_deviation(s: Array) -> Array:
    r"""Per-σ isometry deviation tanh²(log σ) = ((σ² − 1)/(σ² + 1))², zeros included.

    ``s``: singular values σ ≥ 0 of J, any shape; returns the same shape, each in [0, 1].
    The mean over every σ of a spectrum (``SingularValueSummary.isometry_deviation``) is

        D = (1/n) Σ_i tanh²(log σ_i) = (1/n) Σ_i ((σ_i² − 1)/(σ_i² + 1))².

    Why this form: D = 0 exactly at isometry (every σ = 1, Pennington, Schoenholz & Ganguli 2017,
    "Resurrecting the sigmoid in deep learning through dynamical isometry", NeurIPS), it is
    symmetric under σ ↔ 1/σ (a contraction counts as much as the matching expansion), and
    tanh²(log σ) = (log σ)² + O((log σ)⁴), so near isometry D agrees with the mean (log σ)². Unlike
    (log σ)² it is bounded, and a zero σ (a unit off on that input, or dead) counts 1, the
    maximum: a fully dead layer reads 1, not NaN, and no zero tolerance is needed (a σ rounded
    to 1e-8 counts ≈ 1 as well). A healthy ReLU layer has about half its units off on each
    input, so ReLU layers sit well above 0 even at initialisation (ReLU networks cannot reach
    dynamical isometry; Pennington et al. 2017). Computed from r = min(σ, 1/σ) ∈ [0, 1] as
    ((1 − r)(1 + r)/(1 + r²))²: no log, σ = 0 gives exactly 1, σ ↔ 1/σ is exact, nothing
    overflows, and 1 − r is exact near σ = 1. Jit-compatible.

    Examples:
      >>> from ntkplast import isometry
      >>> d = isometry.isometry_deviation([1.0, 0.0, 2.0, 0.5])   # 0 at σ = 1, 1 at σ = 0
      >>> print([f"{x:.3f}" for x in d])                         # σ = 2 counts as σ = 1/2
      ['0.000', '1.000', '0.360', '0.360']
    """
    s = jnp.asarray(s)
    r = jnp.minimum(s, 1 / jnp.maximum(s, 1))
    return ((1 - r) * (1 + r) / (1 + r * r)) ** 2


class SingularValueSummary(NamedTuple):
    """Isometry summaries of a family of spectra (:func:`summarize_singular_values`).

    Fields are read as attributes (``summary.chi``); ``._asdict()`` gives a table row. They are
    Python floats in the results of :func:`layer_spectra`, :func:`input_output_spectra` and
    :meth:`to_floats`, 0-d arrays where :func:`summarize_singular_values` runs under jit.

    Attributes:
      n: singular values per spectrum.
      chi: χ, the mean σ² (1 at criticality).
      var_sigma_sq: variance of σ², pooled.
      mean_log_sigma_sq: mean (log σ)² over the nonzero σ only (0 exactly at isometry; blind
        to dead units, see ``isometry_deviation``).
      frac_sigma_in_half_two: fraction of σ with 1/2 ≤ σ ≤ 2.
      zeros: mean number of zero σ per spectrum.
      isometry_index: mean isometry index (Joudaki et al. 2023) over the spectra, over the
        nonzero σ only (blind to dead units).
      isometry_deviation: mean of tanh²(log σ) over every σ, zeros included
        (:func:`isometry_deviation`): 0 at isometry, 1 for a dead layer.
      units_off: layer Jacobians only: mean number per probe input of rows of J zeroed by
        φ'(z) = 0 (units off); ``None`` for ∂f/∂x and weight spectra.
    """

    n: float | Array
    chi: float | Array
    var_sigma_sq: float | Array
    mean_log_sigma_sq: float | Array
    frac_sigma_in_half_two: float | Array
    zeros: float | Array
    isometry_index: float | Array
    isometry_deviation: float | Array
    units_off: float | Array | None = None

    def to_floats(self) -> SingularValueSummary:
        """The same summary with every field a Python float (``None`` stays ``None``)."""
        return SingularValueSummary(*(None if v is None else float(v) for v in self))


def summarize_singular_values(s: Array, *, rtol: float | None = None) -> SingularValueSummary:
    """Isometry summaries of one spectrum ``(n,)`` or a batch of spectra ``(S, n)``.

    Pennington et al. (2017) summaries of the pooled empirical distribution of σ over the batch
    (the spectral density averaged over probe inputs), plus per-spectrum counts:

    * ``chi``: mean σ² (χ, the mean squared singular value; 1 at criticality).
    * ``var_sigma_sq``: variance of σ² over all n·S values (pooled, population variance).
    * ``mean_log_sigma_sq``: mean (log σ)² over the nonzero σ (0 exactly at isometry); blind
      to dead units (a zero σ is left out, and a spectrum of zeros reads NaN).
    * ``frac_sigma_in_half_two``: fraction of all σ (zeros included) with 1/2 ≤ σ ≤ 2.
    * ``zeros``: mean number per spectrum of σ ≤ ``rtol`` · max σ, default rtol = n · eps of the
      dtype; pass max(rows, cols) · eps for numpy's ``matrix_rank`` convention.
    * ``isometry_index``: mean over spectra of :func:`isometry_index` of σ² over the nonzero σ
      (spectra with no nonzero σ are skipped); blind to dead units like ``mean_log_sigma_sq``.
    * ``isometry_deviation``: mean of :func:`isometry_deviation` over all S·n σ, zeros
      included, (1/(S·n)) Σ tanh²(log σ) ∈ [0, 1]: 0 exactly at isometry, ≈ mean (log σ)² near
      it, and a zero σ counts 1, so a dead layer reads 1 (no tolerance involved).
    * ``n``: singular values per spectrum.

    Returns a :class:`SingularValueSummary` of 0-d arrays (jit-compatible; ``units_off`` is
    ``None``); :meth:`SingularValueSummary.to_floats` makes them floats.
    """
    s = jnp.asarray(s)
    if s.ndim == 1:
        s = s[None]
    nz = _nonzero(s, rtol)
    sq = s * s
    log_s = jnp.log(jnp.where(nz, s, 1.0))
    return SingularValueSummary(
        n=jnp.asarray(s.shape[-1]),
        chi=jnp.mean(sq),
        var_sigma_sq=jnp.var(sq),
        mean_log_sigma_sq=jnp.sum(log_s**2) / jnp.sum(nz),
        frac_sigma_in_half_two=jnp.mean((s >= 0.5) & (s <= 2.0)),
        zeros=jnp.mean(jnp.sum(~nz, axis=-1)),
        isometry_index=jnp.nanmean(_index(sq, nz)),
        isometry_deviation=jnp.mean(isometry_deviation(s)),
    )


# ------------------------------------------------------------------------------ result types
class JacobianSpectrum(NamedTuple):
    """Spectrum of one Jacobian family over the probe set (host numpy arrays).

    Attributes:
      summary: a :class:`SingularValueSummary` of floats (see :func:`summarize_singular_values`);
        ``units_off`` is set for layers. For layers ``chi`` and ``var_sigma_sq`` are pooled over
        all N probe inputs from the exact traces; the others come from the spectra on the
        subsample (NaN where none).
      singular_values: ``(S, n)`` descending, on the subsample; ``None`` when not computed.
      chi: ``(N,)`` tr(JJᵀ)/n per probe input.
      mean_sigma4: ``(N,)`` tr((JJᵀ)²)/n per probe input (a Hutchinson estimate unless
        ``exact``).
      units_off: ``(N,)`` rows of J zeroed by φ'(z) = 0 on each input (units, or conv
        position×channel outputs, that are off); zeros for the readout; ``None`` for ∂f/∂x.
      n: singular values per probe input, min(rows, cols).
      exact: whether ``mean_sigma4`` is exact.
    """

    summary: SingularValueSummary
    singular_values: np.ndarray | None
    chi: np.ndarray
    mean_sigma4: np.ndarray
    units_off: np.ndarray | None
    n: int
    exact: bool


class LayerSpectra(NamedTuple):
    """Per-layer Jacobian spectra (readout last) and the probe indices of the subsample."""

    layers: tuple[JacobianSpectrum, ...]
    subsample: np.ndarray

    @property
    def summaries(self) -> tuple[SingularValueSummary, ...]:
        """One :class:`SingularValueSummary` per weight layer."""
        return tuple(layer.summary for layer in self.layers)

    @property
    def singular_values(self) -> tuple[np.ndarray | None, ...]:
        """``(S, n)`` singular values per weight layer (``None`` where not computed)."""
        return tuple(layer.singular_values for layer in self.layers)
