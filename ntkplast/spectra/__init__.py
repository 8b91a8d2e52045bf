r"""Spectra of kernel Grams and comparisons between kernels.

Dense route: :func:`eigenvalues` and :func:`summary` of an ``N × N`` PSD Gram K with eigenvalues
λ_1 ≥ … ≥ λ_N (a full ``N × N × K × K`` NTK is read as the ``NK × NK`` matrix with rows (n, k)):
trace Σλ, λ_max, the condition number λ_max/λ_min with λ_min floored at a stated ε·λ_max (and
whether it sits at that floor, where it is only a lower bound), the effective rank exp(H(p)),
p_i = λ_i/Σλ (Roy & Vetterli 2007), the stable rank Σλ/λ_max, and the power-law decay exponent α
of a least-squares fit log λ_i = c − α log i over a stated rank window, with its r²
(:func:`summary_from_eigenvalues` has every formula). Matrix-free route for large probe sets:
:func:`top_eigenvalues` (Lanczos) and :func:`hutchinson_trace` on a matrix–vector product such
as :func:`ntkplast.ntk.ntk_matvec` (Θv = J(Jᵀv)), never forming the matrix.

Kernel change across checkpoints: :func:`kernel_distance` d(K1, K2) = 1 − ⟨K1, K2⟩_F /
(‖K1‖_F ‖K2‖_F) and :func:`kernel_velocity`, the distance per training step (Fort et al. 2020);
:func:`deflated_kernel_distance`, the same distance once each kernel's top eigendirections are
removed (when the top one holds most of the trace, d stays near 0 whatever else moves);
:func:`centered_alignment` with the targets (Cortes, Mohri & Rostamizadeh 2012); the top-k
:func:`eigenspace_overlap` ‖U1_kᵀ U2_k‖_F²/k.

Layout: ``_spectrum`` (one kernel's eigenvalues, summaries and matrix-free estimates) and
``_distances`` (comparisons between kernels, and with the targets); every name is public here.
"""

from ntkplast.ranks import effective_rank
from ntkplast.spectra._distances import (
    centered_alignment,
    deflated_kernel_distance,
    eigenspace_overlap,
    kernel_distance,
    kernel_velocity,
    subspace_overlap,
)
from ntkplast.spectra._spectrum import (
    SpectrumSummary,
    TraceEstimate,
    as_matrix,
    default_fit_window,
    eigenvalues,
    eigenvalues_and_top_vectors,
    hutchinson_trace,
    summary,
    summary_from_eigenvalues,
    top_eigenvalues,
    top_eigenvectors,
)

__all__ = ["SpectrumSummary", "TraceEstimate", "as_matrix", "centered_alignment",
           "default_fit_window", "deflated_kernel_distance", "effective_rank",
           "eigenspace_overlap", "eigenvalues", "eigenvalues_and_top_vectors", "hutchinson_trace",
           "kernel_distance", "kernel_velocity", "subspace_overlap", "summary",
           "summary_from_eigenvalues", "top_eigenvalues", "top_eigenvectors"]
