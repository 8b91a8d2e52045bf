r"""Comparisons between kernels: distances, velocity, target alignment, eigenspace overlap.

How a kernel changes across checkpoints: :func:`kernel_distance` and :func:`kernel_velocity`
(Fort et al. 2020), :func:`deflated_kernel_distance` (the same distance with each kernel's top
eigendirections removed), :func:`eigenspace_overlap` and :func:`subspace_overlap` of the top
eigenvectors; and how it matches the targets: :func:`centered_alignment` (Cortes, Mohri &
Rostamizadeh 2012). Built on the checks and eigenvectors of :mod:`ntkplast.spectra._spectrum`.
Public through :mod:`ntkplast.spectra`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import linalg
from ntkplast.errors import NtkplastError
from ntkplast.ranks import array_namespace
from ntkplast.spectra._spectrum import _square, as_matrix, top_eigenvectors

Array = jax.Array


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
    (:func:`~ntkplast.spectra.top_eigenvectors`). The deflation is (I − UUᵀ) K (I − UUᵀ),
    which equals the sum above for exact eigenvectors (λ_i = u_iᵀ K u_i) and stays PSD for
    approximate ones.
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
    return linalg.kernel_velocity_from_distance(dist, jnp.diff(steps).astype(dist.dtype))


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


def subspace_overlap(u1: Any, u2: Any) -> float:
    """‖U1ᵀ U2‖_F² / k for two ``N × k`` orthonormal bases (see :func:`eigenspace_overlap`)."""
    u1, u2 = np.asarray(u1), np.asarray(u2)
    return float(np.sum((u1.T @ u2) ** 2) / u1.shape[1])
