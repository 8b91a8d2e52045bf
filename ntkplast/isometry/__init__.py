r"""Dynamical isometry: singular values of layer, input–output and weight Jacobians.

A network is dynamically isometric when every singular value of its input–output Jacobian
J(x) = ∂f/∂x sits near one, so signals and gradients keep their norm through depth
(Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
dynamical isometry", NeurIPS). Per weight layer l, on every probe input x:

* **Layer Jacobian** J_l(x) = ∂a_l/∂a_{l-1} = diag(φ'(z_l)) L_l, where L_l is the layer's linear
  map a ↦ m_W · a ⊛ W_l (Dense: L_l = (m_W W_l)ᵀ, d_l × d_{l-1}; Conv: the full convolution
  matrix, (H·W·c_out) × (H'·W'·c_in)). ``a_{l-1}`` is what the layer consumes (after the previous
  block's 2×2 average pool and any flatten); ``a_l`` is the post-activation *before* pooling,
  as in :meth:`ntkplast.models.Model.intermediates`. The pool is a fixed linear map between
  layers and belongs to no layer's Jacobian. The **readout** (no activation) is included with
  J_L = L_L = (m_W W_L)ᵀ, so the table covers every weight layer.
  Blocks with GroupSort/MaxMin, LayerNorm or a residual skip (:mod:`ntkplast.models`) have
  J_l(x) = ∂u_l/∂u_{l-1}, the whole block's map: GroupSort's permutation P(z) in place of
  diag(φ'), the norm's projection, and the identity of the skip, J_l = I + ∂a_l/∂u_{l-1}. These
  are built explicitly per input (forward-mode Jacobian of the block), so every moment is exact
  and spectra come from an SVD; ``units_off`` counts the rows of J_l that are exactly zero.
  GroupSort with orthogonal square weights gives J_l = P(z)·Wᵀ, orthogonal: every σ = 1.
* **Input–output Jacobian** J(x) = ∂f/∂x ∈ R^{K×D}.
* **Weight spectra** σ(m_W W_l), conv kernels reshaped to c_out × (c_in·k·k).

A K × D (or d_out × d_in) matrix has n = min(rows, cols) singular values; the eigenvalues of
M = JJᵀ are their squares (plus structural zeros when rows > cols, which are not counted).

Moments, exact for **every** probe input, from two traces: with u = φ'(z_l)² and
r_i = Σ_j (L_l)_{ij}² (the squared row norms, computed once per layer),

    tr(J Jᵀ) = Σ_i u_i r_i,      tr((J Jᵀ)²) = uᵀ (G ∘ G) u,   G = L_l L_lᵀ,

so χ = tr(JJᵀ)/n = mean σ² and mean σ⁴ = tr((JJᵀ)²)/n. When L_l is too large to hold
(conv layers on real images; ``max_matrix_entries``) χ stays exact and tr((JJᵀ)²) is the
Hutchinson estimate mean_p ‖JᵀJ w_p‖² over Rademacher w_p (Hutchinson 1989), one jvp-like
forward and one vjp per probe; then no full spectra are computed for that layer.

Full spectra (SVD of the explicit J_l) on a subsample of probe inputs give the summaries that
need every σ: mean (log σ)² over nonzero σ, the fraction of σ in [1/2, 2], the number of zeros,
the isometry index det(M)^{1/k} / (tr M / k) of M = JJᵀ over its k nonzero eigenvalues
(Joudaki, Daneshmand & Bach 2023, "On the impact of activation and normalization in obtaining
isometric embeddings at initialization", NeurIPS), and the isometry deviation, the mean of
tanh²(log σ) over every σ, zeros included (:func:`isometry_deviation`): mean (log σ)² and the
index see only nonzero σ, so they are blind to units that are off or dead (a dead layer reads
NaN), which the deviation counts at its maximum, 1. See :func:`summarize_singular_values` for
the exact definitions and the zero tolerance. Every summary is a :class:`SingularValueSummary`.

Each public function checks its probe set and parameters; its unchecked core
``<name>_unchecked`` (:func:`layer_spectra_unchecked`, …) skips those checks, for a caller that
ran them once (the analysis driver, per checkpoint), as in :mod:`ntkplast.ntk` and
:mod:`ntkplast.dormancy`.

===============  ==========================================================================
module           what it holds
===============  ==========================================================================
``summaries``    :func:`summarize_singular_values`, :func:`isometry_index`,
                 :func:`isometry_deviation`, :class:`SingularValueSummary` and the result
                 types :class:`JacobianSpectrum`, :class:`LayerSpectra`
``spectra``      :func:`layer_spectra`, :func:`input_output_spectra`, :func:`weight_spectra`
                 and their unchecked cores; :data:`MAX_MATRIX_ENTRIES`, :data:`BLOCK_ENTRIES`
``_jacobians``   the explicit layer maps, trace moments and ∂f/∂x that ``spectra`` uses
===============  ==========================================================================

Everything is imported from ``ntkplast.isometry`` itself (``from ntkplast.isometry import
layer_spectra``).
"""

from ntkplast.isometry.spectra import (
    BLOCK_ENTRIES,  # noqa: F401 (public, though not in __all__)
    MAX_MATRIX_ENTRIES,  # noqa: F401 (public, though not in __all__)
    input_output_spectra,
    input_output_spectra_unchecked,
    layer_spectra,
    layer_spectra_unchecked,
    weight_spectra,
    weight_spectra_unchecked,
)
from ntkplast.isometry.summaries import (
    JacobianSpectrum,
    LayerSpectra,
    SingularValueSummary,
    isometry_deviation,
    isometry_index,
    summarize_singular_values,
)
from ntkplast.validate import check_params, check_probe_set

__all__ = ["JacobianSpectrum", "LayerSpectra", "SingularValueSummary", "check_params",
           "check_probe_set", "input_output_spectra", "input_output_spectra_unchecked",
           "isometry_deviation", "isometry_index", "layer_spectra", "layer_spectra_unchecked",
           "summarize_singular_values", "weight_spectra", "weight_spectra_unchecked"]
