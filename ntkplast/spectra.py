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
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from matfree import decomp, stochtrace

from ntkplast import linalg
from ntkplast.errors import NtkplastError
from ntkplast.ranks import array_namespace, effective_rank
from ntkplast.validate import legacy_arguments

Array = jax.Array

__all__ = ["SpectrumSummary", "TraceEstimate", "as_matrix", "centered_alignment",
           "default_fit_window", "deflated_kernel_distance", "effective_rank",
           "eigenspace_overlap", "eigenvalues", "eigenvalues_and_top_vectors", "hutchinson_trace",
           "kernel_distance", "kernel_velocity", "subspace_overlap", "summary",
           "summary_from_eigenvalues", "top_eigenvalues", "top_eigenvectors"]


def as_matrix(kernel: Any) -> Array:
    """``N × N`` unchanged; ``N × M × K × K`` (neural-tangents' full layout) as ``NK × MK``."""
    kernel = jnp.asarray(kernel)
    if kernel.ndim == 4:
        n, m, k, j = kernel.shape
        return jnp.transpose(kernel, (0, 2, 1, 3)).reshape(n * k, m * j)
    if kernel.ndim != 2:
        raise NtkplastError(f"kernel: expected an N × N or N × N × K × K array, got shape "
                            f"{kernel.shape}")
    return kernel


def _square(name: str, kernel: Any) -> np.ndarray:
    mat = np.asarray(kernel)  # an N × N host array stays on the host, in its own dtype
    mat = mat if mat.ndim == 2 else np.asarray(as_matrix(mat))
    if mat.shape[0] != mat.shape[1] or mat.shape[0] == 0:
        raise NtkplastError(f"{name}: expected a non-empty square Gram, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise NtkplastError(f"{name}: contains NaN or Inf")
    return mat


def eigenvalues(kernel: Any, *, float32_lapack: bool = False) -> np.ndarray:
    """Eigenvalues λ_1 ≥ … ≥ λ_N of a symmetric Gram, checked and in float64.

    :func:`ntkplast.linalg.eigvalsh` (host LAPACK, of (K + Kᵀ)/2) after checking that ``kernel``
    is a finite, non-empty square Gram (or a full ``N × N × K × K`` NTK, read by
    :func:`as_matrix`). ``float32_lapack=True`` decomposes in float32 instead
    (:func:`ntkplast.linalg.eigvalsh_float32`, 1.5× faster at N = 1,000): for float32 kernels
    whose eigenvalues under the N·ε₃₂·λ_max floor are not read (its errors, ≲ 5e-6·λ_max,
    stay under it).
    """
    mat = _square("kernel", kernel)
    if float32_lapack:
        return linalg.eigvalsh_float32(mat)
    return linalg.eigvalsh(mat.astype(np.float64, copy=False))


class SpectrumSummary(NamedTuple):
    """Spectral summary of a PSD Gram; ``._asdict()`` gives a table row.

    Fields: ``trace`` Σλ; ``lambda_max``; ``lambda_min`` (as computed, may be ≲ 0 by
    rounding); ``condition`` λ_max / max(λ_min, eps·λ_max); ``condition_at_floor`` whether
    λ_min ≤ eps·λ_max, so that ``condition`` is the cap 1/eps and only a lower bound (the true
    condition number is ≥ it, or infinite: a rank-deficient Gram reads exactly 1/eps, ≈
    1/(N·ε₃₂) = 65,536 for a float32 kernel of N = 128); ``eps`` the relative floor used;
    ``effective_rank`` exp(H(p)); ``stable_rank`` Σλ/λ_max; ``decay_exponent`` α,
    ``decay_intercept`` c and ``decay_r2`` of the fit log λ_i = c − α log i; ``fit_window`` the
    1-based rank window (lo, hi) asked for; ``fit_points`` how many eigenvalues in it were above
    the floor and entered the fit; ``size`` N.
    """

    trace: float
    lambda_max: float
    lambda_min: float
    condition: float
    condition_at_floor: bool
    eps: float
    effective_rank: float
    stable_rank: float
    decay_exponent: float
    decay_intercept: float
    decay_r2: float
    fit_window: tuple[int, int]
    fit_points: int
    size: int


def default_fit_window(n: int) -> tuple[int, int]:
    """Ranks 2 … ⌈N/2⌉ (1-based, inclusive): skips the top outlier and the noisy tail."""
    return (min(2, n), max(min(2, n), (n + 1) // 2))


def summary_from_eigenvalues(lam: Any, *, eps: float, fit_window: tuple[int, int] | None = None
                             ) -> SpectrumSummary:
    r""":class:`SpectrumSummary` of eigenvalues ``lam`` (any order) of a PSD matrix.

    * condition number κ = λ_max / max(λ_min, eps·λ_max), so κ ≤ 1/eps; ``condition_at_floor``
      = (λ_min ≤ eps·λ_max): then κ = 1/eps is the floor's cap, a lower bound on the true
      λ_max/λ_min (infinite for a singular Gram), not a measurement;
    * effective rank exp(H(p)), H(p) = −Σ p_i log p_i, p_i = λ_i⁺/Σλ⁺ with λ⁺ = max(λ, 0) and
      0·log 0 = 0 (:func:`effective_rank`; Roy & Vetterli 2007); computed over eigenvalues,
      i.e. the singular values of the PSD Gram; 0 for an all-zero spectrum;
    * stable rank Σλ/λ_max (= ‖K^{1/2}‖_F²/‖K^{1/2}‖_2², the matrix-analysis meaning; not the
      "srank" of Kumar et al.);
    * power-law decay: least squares of log λ_i = c − α log i over the 1-based ranks
      i ∈ [lo, hi] (default :func:`default_fit_window`) whose λ_i > eps·λ_max; r² =
      1 − SS_res/SS_tot of that fit. NaN when fewer than two points qualify.

    Examples:
      >>> from ntkplast import spectra
      >>> s = spectra.summary_from_eigenvalues([4.0, 2.0, 1.0, 1.0], eps=1e-6)   # p = ½, ¼, ⅛, ⅛
      >>> print(f"{s.trace:.1f} {s.condition:.1f} {s.stable_rank:.2f} {s.effective_rank:.3f}")
      8.0 4.0 2.00 3.364
    """
    lam = np.sort(np.asarray(lam, dtype=np.float64))[::-1]
    n = lam.size
    lmax, lmin = float(lam[0]), float(lam[-1])
    floor = eps * lmax
    eff = float(effective_rank(lam))
    lo, hi = fit_window if fit_window is not None else default_fit_window(n)
    if not 1 <= lo <= hi:
        raise NtkplastError(f"fit_window: expected 1 ≤ lo ≤ hi (1-based ranks), got {(lo, hi)}")
    ranks = np.arange(lo, min(hi, n) + 1)
    ranks = ranks[lam[ranks - 1] > floor]
    alpha = intercept = r2 = float("nan")
    if ranks.size >= 2:
        lx, ly = np.log(ranks), np.log(lam[ranks - 1])
        slope, intercept = np.polyfit(lx, ly, 1)
        resid = ly - (slope * lx + intercept)
        ss_tot = np.sum((ly - ly.mean()) ** 2)
        r2 = float(1.0 - np.sum(resid ** 2) / ss_tot) if ss_tot > 0 else 1.0
        alpha, intercept = float(-slope), float(intercept)
    cond = lmax / max(lmin, floor) if lmax > 0 else float("inf")
    return SpectrumSummary(
        trace=float(lam.sum()), lambda_max=lmax, lambda_min=lmin, condition=float(cond),
        condition_at_floor=bool(lmin <= floor), eps=float(eps), effective_rank=eff,
        stable_rank=float(lam.sum() / lmax) if lmax > 0 else float("nan"),
        decay_exponent=alpha, decay_intercept=intercept, decay_r2=r2,
        fit_window=(int(lo), int(hi)), fit_points=int(ranks.size), size=int(n))


def summary(kernel: Any, *, eps: float | None = None,
            fit_window: tuple[int, int] | None = None) -> SpectrumSummary:
    """Spectral summary of a PSD Gram (``N × N`` or full ``N × N × K × K``).

    ``eps`` is the relative eigenvalue floor (default N·ε_machine of the kernel's dtype, the
    rounding level of its eigenvalues); see :func:`summary_from_eigenvalues` for every formula.
    For a series of kernels, call it per checkpoint (eigendecomposition dominates the cost).

    Examples:
      A diagonal kernel with λ_i = 1/i²: condition number λ_1/λ_8 = 64, decay exponent 2:

      >>> import numpy as np
      >>> from ntkplast import spectra
      >>> s = spectra.summary(np.diag(1.0 / np.arange(1, 9) ** 2))
      >>> print(f"{s.condition:.1f} {s.condition_at_floor} {s.decay_exponent:.3f} {s.decay_r2:.3f}")
      64.0 False 2.000 1.000
      >>> s = spectra.summary(np.diag([1.0, 1.0, 0.0]), eps=1e-6)    # singular: the cap 1/eps
      >>> print(f"{s.condition:.0f} {s.condition_at_floor} {s.effective_rank:.3f}")
      1000000 True 2.000
    """
    lam = eigenvalues(kernel)
    if eps is None:
        dtype = jnp.asarray(kernel).dtype
        eps = lam.size * float(np.finfo(dtype if np.issubdtype(dtype, np.floating)
                                        else np.float64).eps)
    return summary_from_eigenvalues(lam, eps=eps, fit_window=fit_window)


def _frobenius_cosine(a: Array, b: Array) -> Array:
    xp = array_namespace(a, b)
    return xp.vdot(a, b) / (xp.linalg.norm(a.ravel()) * xp.linalg.norm(b.ravel()))


def kernel_distance(k1: Any, k2: Any) -> Array:
    r"""Kernel distance d(K1, K2) = 1 − ⟨K1, K2⟩_F / (‖K1‖_F ‖K2‖_F).

    Fort et al. 2020, "Deep learning versus kernel learning: an empirical study of loss landscape
    geometry and the time evolution of the neural tangent kernel" (NeurIPS), eq. for kernel
    distance. 0 for kernels equal up to scale; works on traced or full kernels of equal shape.
    Two numpy arrays are compared on the host in their dtype (float64 kernels, as the analysis
    holds them, in float64: 1 − cos cancels, so float32 would leave ~1e-7·√N of noise).

    Examples:
      >>> import numpy as np
      >>> from ntkplast import spectra
      >>> k = np.array([[2.0, 1.0], [1.0, 2.0]])
      >>> bool(abs(spectra.kernel_distance(k, 2 * k)) < 1e-12)                 # equal up to scale
      True
      >>> print(f"{spectra.kernel_distance(np.eye(2), np.ones((2, 2))):.3f}")   # 1 − 1/√2
      0.293
    """
    xp = array_namespace(k1, k2)
    k1, k2 = xp.asarray(k1), xp.asarray(k2)
    if k1.shape != k2.shape:
        raise NtkplastError(f"kernel_distance: shapes differ, {k1.shape} vs {k2.shape}")
    return 1.0 - _frobenius_cosine(k1, k2)


def _deflate(mat: np.ndarray, top: np.ndarray) -> np.ndarray:
    """(I − UUᵀ) K (I − UUᵀ) for orthonormal columns U; = K − Σ_i (u_iᵀ K u_i) u_i u_iᵀ when the
    u_i are eigenvectors of K, and PSD for any orthonormal U when K is."""
    ku = mat @ top
    return mat - ku @ top.T - top @ ku.T + top @ (top.T @ ku) @ top.T


def deflated_kernel_distance(k1: Any, k2: Any, *, remove: int = 1, top1: Any = None,
                             top2: Any = None, eps: float | None = None) -> float:
    r"""Kernel distance with each kernel's top ``remove`` eigendirections taken out.

        d_r(K1, K2) = d(K1 − Σ_{i≤r} λ_i u_i u_iᵀ, K2 − Σ_{i≤r} μ_i v_i v_iᵀ),

    with d the kernel distance 1 − ⟨A, B⟩_F / (‖A‖_F ‖B‖_F) of Fort et al. 2020 (see
    :func:`kernel_distance`) and (λ_i, u_i), (μ_i, v_i) the r largest eigenpairs of K1 and K2,
    each kernel deflated by its own. Why: d weighs each direction by its eigenvalue squared, and
    one eigendirection of an NTK often holds most of the trace (71% in a real initial kernel),
    so d stays near 0 even when everything else changes; d_r measures the movement of the rest
    of the kernel. A deflated PSD kernel stays PSD, so d_r ∈ [0, 1]; 0 for kernels equal up to
    scale. It ignores how the removed directions themselves turn (read
    :func:`subspace_overlap` of the top eigenvectors for that).

    ``top1``, ``top2``: precomputed orthonormal top eigenvectors (``N × k``, k ≥ ``remove``,
    by decreasing eigenvalue; the first ``remove`` are used), else computed
    (:func:`top_eigenvectors`). The deflation is (I − UUᵀ) K (I − UUᵀ), which equals the sum
    above for exact eigenvectors (λ_i = u_iᵀ K u_i) and stays PSD for approximate ones.
    Computed on the host in float64; ``N × N`` or full ``N × N × K × K`` kernels of equal
    shape. NaN where a deflated kernel is zero up to rounding, ‖K − Σ λ_i u_i u_iᵀ‖_F ≤
    eps·‖K‖_F (rank ≤ ``remove``, e.g. a network with every hidden unit dead; default eps =
    N·ε of the kernels' dtype, :func:`summary`'s floor). With a tie λ_r = λ_{r+1} the removed
    direction, and so the value, is not unique.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import spectra
      >>> k1, k2 = np.diag([100.0, 2.0, 1.0]), np.diag([100.0, 1.0, 2.0])   # the rest swaps
      >>> print(f"{spectra.kernel_distance(k1, k2):.4f}")                    # barely seen
      0.0001
      >>> print(f"{spectra.deflated_kernel_distance(k1, k2):.3f}")           # 1 − 4/5
      0.200
    """
    a, b = _square("k1", k1), _square("k2", k2)
    if a.shape != b.shape or not 1 <= remove < a.shape[0]:
        raise NtkplastError(f"deflated_kernel_distance: need equal shapes and 1 ≤ remove < N, "
                            f"got {a.shape}, {b.shape}, remove={remove}")
    if eps is None:
        dtype = np.result_type(a, b)
        eps = a.shape[0] * float(np.finfo(dtype if np.issubdtype(dtype, np.floating)
                                          else np.float64).eps)
    deflated = []
    for name, mat, top in (("top1", a, top1), ("top2", b, top2)):
        mat = mat.astype(np.float64, copy=False)
        u = top_eigenvectors(mat, remove) if top is None else np.asarray(top, np.float64)
        if u.ndim != 2 or u.shape[0] != mat.shape[0] or u.shape[1] < remove:
            raise NtkplastError(f"{name}: expected N × k eigenvectors with N = {mat.shape[0]} "
                                f"and k ≥ remove = {remove}, got shape {u.shape}")
        rest = _deflate(mat, u[:, :remove])
        if np.linalg.norm(rest) <= eps * np.linalg.norm(mat):
            return float("nan")
        deflated.append(rest)
    return float(1.0 - _frobenius_cosine(*deflated))


def kernel_velocity(kernels: Any, steps: Any) -> Array:
    r"""Kernel velocity v_t = d(K_t, K_{t+1}) / (s_{t+1} − s_t) along a checkpoint series.

    Fort et al. 2020 (as :func:`kernel_distance`): the kernel distance per unit of training
    time. ``kernels`` has a leading axis of length T, ``steps`` holds the T (increasing)
    training steps; returns T − 1 velocities.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntkplast import spectra
      >>> k = jnp.diag(jnp.array([3.0, 4.0]))
      >>> kernels = jnp.stack([k, 2 * k, jnp.diag(jnp.array([4.0, 3.0]))])    # 10 steps apart
      >>> v = spectra.kernel_velocity(kernels, jnp.array([0, 10, 20]))
      >>> print([f"{x:.4f}" for x in v])                                # d = 0, then (1 − 24/25)/10
      ['0.0000', '0.0040']
    """
    kernels, steps = jnp.asarray(kernels), jnp.asarray(steps)
    if kernels.shape[0] != steps.shape[0] or kernels.shape[0] < 2:
        raise NtkplastError(f"kernel_velocity: need ≥ 2 kernels and one step per kernel, got "
                            f"{kernels.shape[0]} kernels and steps of shape {steps.shape}")
    dist = jax.vmap(kernel_distance)(kernels[:-1], kernels[1:])
    return dist / jnp.diff(steps).astype(dist.dtype)


def _center(mat: Array) -> Array:
    """H M H with H = I − 11ᵀ/N (double centering)."""
    mat = mat - mat.mean(axis=0, keepdims=True)
    return mat - mat.mean(axis=1, keepdims=True)


def centered_alignment(kernel: Any, targets: Any, *, num_classes: int | None = None,
                       center_target: bool = True) -> Array:
    r"""Centered kernel–target alignment A = ⟨K_c, L_c⟩_F / (‖K_c‖_F ‖L_c‖_F).

    K_c = HKH, L = YYᵀ, L_c = HLH, H = I − 11ᵀ/N (Cortes, Mohri & Rostamizadeh 2012, "Algorithms
    for learning kernels based on centered alignment", JMLR 13, Def. 2). ``targets`` are integer
    labels (one-hot encoded with ``num_classes``, default max + 1) or an ``N × C`` target matrix.
    ``center_target=False`` divides by ‖YYᵀ‖_F instead of ‖L_c‖_F, the variant
    ⟨K_c, YYᵀ⟩_F / (‖K_c‖_F ‖YYᵀ‖_F) that centres the kernel only (the numerators agree since
    ⟨HKH, L⟩ = ⟨HKH, HLH⟩; only the normalisation differs). Traced ``N × N`` kernels only.
    A numpy kernel with numpy targets is computed on the host in the kernel's dtype. NaN, with
    no warning, where the alignment is undefined: K_c = 0 (a constant kernel, e.g. a network
    whose hidden units are all dead, leaving only the readout bias) or L_c = 0 (one class).

    Examples:
      >>> import numpy as np
      >>> from ntkplast import spectra
      >>> labels = np.array([0, 0, 1, 1])
      >>> onehot = np.eye(2)[labels]
      >>> print(f"{spectra.centered_alignment(onehot @ onehot.T, labels):.3f}")   # K = YYᵀ
      1.000
      >>> print(f"{spectra.centered_alignment(np.eye(4), labels):.3f}")           # 1/√3
      0.577
    """
    xp = array_namespace(kernel, targets)
    mat = xp.asarray(kernel)
    y = xp.asarray(targets)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise NtkplastError(f"kernel: centered_alignment takes a traced N × N kernel, got shape "
                            f"{mat.shape}")
    if y.shape[0] != mat.shape[0]:
        raise NtkplastError(f"targets: expected {mat.shape[0]} rows, got shape {y.shape}")
    if y.ndim == 1:
        classes = int(y.max()) + 1 if num_classes is None else num_classes
        y = (y[:, None] == xp.arange(classes)).astype(mat.dtype)  # one-hot
    lab = y @ y.T
    kc = _center(mat)
    lc = _center(lab) if center_target else lab
    norms = xp.linalg.norm(kc) * xp.linalg.norm(lc)
    return xp.where(norms > 0, xp.vdot(kc, lc) / xp.where(norms > 0, norms, 1), xp.nan)


def eigenspace_overlap(k1: Any, k2: Any, k: int) -> float:
    r"""Top-k eigenspace overlap ‖U1_kᵀ U2_k‖_F² / k ∈ [0, 1].

    U_k: orthonormal eigenvectors (``N × k``) of the k largest eigenvalues of each Gram, so the
    value is the mean squared cosine of the principal angles between the two top-k eigenspaces.
    1 when the two subspaces coincide, k/N in expectation for random ones.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import spectra
      >>> k1, k2 = np.diag([3.0, 2.0, 1.0]), np.diag([1.0, 2.0, 3.0])
      >>> print(f"{spectra.eigenspace_overlap(k1, 2 * k1, 2):.3f}")
      1.000
      >>> print(f"{spectra.eigenspace_overlap(k1, k2, 2):.3f}")   # {e1, e2} against {e3, e2}
      0.500
    """
    a, b = as_matrix(k1), as_matrix(k2)
    if a.shape != b.shape or not 1 <= k <= a.shape[0]:
        raise NtkplastError(f"eigenspace_overlap: need equal square shapes and 1 ≤ k ≤ N, got "
                            f"{a.shape}, {b.shape}, k={k}")
    return subspace_overlap(top_eigenvectors(a, k), top_eigenvectors(b, k))


def top_eigenvectors(kernel: Any, k: int) -> np.ndarray:
    """Orthonormal eigenvectors ``N × k`` of the k largest eigenvalues (host LAPACK)."""
    return eigenvalues_and_top_vectors(kernel, k)[1]


def eigenvalues_and_top_vectors(kernel: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`eigenvalues` and :func:`top_eigenvectors` from one decomposition.

    :func:`ntkplast.linalg.eigh_top` of the checked Gram in float64: every eigenvalue λ_1 ≥ … ≥
    λ_N and the ``N × k`` orthonormal eigenvectors of λ_1 … λ_k, for the price of the
    eigenvalues and O(N²k) (no other eigenvector is formed).
    """
    mat = _square("kernel", kernel)
    if not 1 <= k <= mat.shape[0]:
        raise NtkplastError(f"k: expected 1 ≤ k ≤ N = {mat.shape[0]}, got {k}")
    return linalg.eigh_top(mat, k)


def subspace_overlap(u1: Any, u2: Any) -> float:
    """‖U1ᵀ U2‖_F² / k for two ``N × k`` orthonormal bases (see :func:`eigenspace_overlap`)."""
    u1, u2 = np.asarray(u1), np.asarray(u2)
    return float(np.sum((u1.T @ u2) ** 2) / u1.shape[1])


@functools.partial(jax.jit, static_argnames=("shape", "num_matvecs"))
def _lanczos_ritz(matvec: Any, v0: Array, shape: tuple[int, ...], num_matvecs: int) -> Array:
    def flat(v):
        return matvec(v.reshape(shape)).reshape(-1)
    tridiag = decomp.tridiag_sym(num_matvecs, reortho="full", materialize=True)
    return jnp.linalg.eigvalsh(tridiag(flat, v0).J_small)[::-1]


def _as_partial(matvec: Callable) -> jax.tree_util.Partial:
    if isinstance(matvec, jax.tree_util.Partial):
        return matvec
    return jax.tree_util.Partial(matvec)


@legacy_arguments(positional=("key",), after=3)
def top_eigenvalues(matvec: Callable[[Array], Array], shape: int | tuple[int, ...], k: int, *,
                    key: Array, num_matvecs: int | None = None) -> Array:
    r"""The k largest eigenvalues of a symmetric operator, matrix-free, by Lanczos.

    Lanczos (1950) tridiagonalization with full reorthogonalization (``matfree.decomp.
    tridiag_sym``) from a Gaussian start vector, then the k largest eigenvalues (Ritz values)
    of the m × m tridiagonal matrix, m = ``num_matvecs`` (default min(n, max(2k + 20, 40))).
    Cost: m products plus O(n·m) memory for the Krylov basis. ``shape`` is the shape of the
    vectors ``matvec`` takes (an int n, or e.g. ``(N, K)`` for a full NTK product). Pass
    :func:`ntkplast.ntk.ntk_matvec` for the NTK. ``key`` (keyword-only) draws the start vector;
    the 0.2 spelling with ``key`` as the fourth positional argument still works, with a
    DeprecationWarning.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from ntkplast import spectra
      >>> d = jnp.arange(1.0, 9.0)                    # the operator diag(1, …, 8), as a function
      >>> top = spectra.top_eigenvalues(lambda v: d * v, 8, 2, key=jax.random.PRNGKey(0))
      >>> print([f"{x:.3f}" for x in top])           # m = n products: the Ritz values are exact
      ['8.000', '7.000']
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = int(np.prod(shape))
    m = min(n, max(2 * k + 20, 40)) if num_matvecs is None else num_matvecs
    if not 1 <= k <= m <= n:
        raise NtkplastError(f"top_eigenvalues: need 1 ≤ k ≤ num_matvecs ≤ n, got k={k}, "
                            f"num_matvecs={m}, n={n}")
    v0 = jax.random.normal(key, (n,), dtype=jnp.result_type(float))
    return _lanczos_ritz(_as_partial(matvec), v0, shape, m)[:k]


class TraceEstimate(NamedTuple):
    """Hutchinson estimate of tr(A): ``mean`` and its standard error ``stderr``."""

    mean: Array
    stderr: Array


@functools.partial(jax.jit, static_argnames=("shape", "num_samples", "chunk"))
def _hutchinson(matvec: Any, key: Array, shape: tuple[int, ...], num_samples: int,
                chunk: int) -> TraceEstimate:
    integrand = stochtrace.monte_carlo_trace()
    sampler = stochtrace.sampler_signs(jnp.zeros(shape, jnp.result_type(float)), num=chunk)

    def one_chunk(k):
        return jax.vmap(lambda z: integrand(matvec, z))(sampler(k))

    keys = jax.random.split(key, num_samples // chunk)
    values = lax.map(one_chunk, keys).reshape(-1)
    return TraceEstimate(values.mean(), values.std(ddof=1) / jnp.sqrt(values.size))


@legacy_arguments(positional=("key",), after=3)
def hutchinson_trace(matvec: Callable[[Array], Array], shape: int | tuple[int, ...],
                     num_samples: int, *, key: Array, chunk: int = 1) -> TraceEstimate:
    r"""Hutchinson's stochastic trace estimate tr(A) ≈ (1/m) Σ_i z_iᵀ A z_i.

    z_i Rademacher (Hutchinson 1989, "A stochastic estimator of the trace of the influence
    matrix"; matfree's ``monte_carlo_trace`` integrand and ``sampler_signs``). Unbiased, with
    variance 2(‖A‖_F² − Σ_i A_ii²)/m; ``stderr`` is the sample standard error. ``chunk`` products
    run vmapped at a time (memory ∝ chunk), chunks sequentially; ``num_samples`` must be a
    multiple of ``chunk``. ``key`` (keyword-only) draws the z_i; as a fourth positional argument
    (the 0.2 spelling) it still works, with a DeprecationWarning.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from ntkplast import spectra
      >>> d = jnp.arange(1.0, 9.0)         # diagonal A: every Rademacher zᵀAz is tr A exactly
      >>> est = spectra.hutchinson_trace(lambda v: d * v, 8, 4, key=jax.random.PRNGKey(0))
      >>> print(f"{est.mean:.3f} {est.stderr:.3f}")
      36.000 0.000
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if num_samples < 2 or chunk < 1 or num_samples % chunk:
        raise NtkplastError(f"hutchinson_trace: need num_samples ≥ 2 and a multiple of chunk, "
                            f"got num_samples={num_samples}, chunk={chunk}")
    return _hutchinson(_as_partial(matvec), key, shape, num_samples, chunk)
