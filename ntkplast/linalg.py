"""Dense symmetric eigendecompositions and singular values, through numpy's LAPACK.

Measured on this project's 2-core CPU machine: jax's ``jnp.linalg.svd``/``eigh`` under jit are
100–300× slower than numpy's LAPACK on the same matrices (32 batched 100 × 100 SVDs: 4.4 s with
jax 0.4.25, 6.4 s with jax 0.10.2, 0.02 s with numpy; one 256 × 256 ``eigh``: 1.8 s / 0.8 s with
jax). The matrices ntkplast decomposes (layer Jacobians, feature matrices, probe-set Grams) are
small, so they are moved to the host and decomposed there.

Threads: one dense LAPACK call scales poorly over 2 cores (its tridiagonal reduction is half
matrix–vector products) and worse on a loaded machine; :func:`host_map` runs independent
decompositions side by side instead, each on single-threaded BLAS (measured on this machine:
five 1,000² ``eigvalsh`` 0.39–0.46 s with 2 BLAS threads each, 0.28 s one after another on one
thread, 0.23–0.28 s two at a time; load ≈ 4.5).

:func:`kernel_velocity_from_distance` is here, below both :mod:`ntkplast.spectra` and
:mod:`ntkplast.analysis`, so that the two share the kernel velocity's one definition.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from scipy.linalg import lapack
from threadpoolctl import ThreadpoolController

from ntkplast.errors import NtkplastError

__all__ = ["eigh", "eigh_top", "eigvalsh", "eigvalsh_float32", "gated_singular_values",
           "gram_singular_values", "host_map", "host_start", "kernel_velocity_from_distance",
           "one_blas_thread", "singular_values"]

T = TypeVar("T")


def singular_values(a: Any) -> np.ndarray:
    """Singular values (descending) of a matrix or a stack of matrices ``(..., m, n)``.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> print(linalg.singular_values(np.array([[0.0, 3.0], [1.0, 0.0]])).tolist())
      [3.0, 1.0]
      >>> linalg.singular_values(np.ones((5, 3, 2))).shape       # a stack: one row per matrix
      (5, 2)
    """
    return np.linalg.svd(np.asarray(a), compute_uv=False)


def eigh(a: Any) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and orthonormal eigenvectors of a symmetric matrix.

    The input is symmetrised as (A + Aᵀ)/2 first, so rounding asymmetry does not matter.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> lam, vecs = linalg.eigh(np.array([[2.0, 1.0], [1.0, 2.0]]))
      >>> print(lam.round(3).tolist(), np.abs(vecs).round(3).tolist())   # ascending
      [1.0, 3.0] [[0.707, 0.707], [0.707, 0.707]]
    """
    a = np.asarray(a)
    return np.linalg.eigh(0.5 * (a + np.swapaxes(a, -1, -2)))


def eigh_top(a: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every eigenvalue (descending) and the eigenvectors of the k largest of a symmetric matrix.

    One tridiagonal reduction A = Q T Qᵀ of (A + Aᵀ)/2 in float64 (LAPACK ``dsytrd``, blocked)
    serves both: all eigenvalues of T by ``dsterf`` (what ``numpy.linalg.eigvalsh`` runs), the k
    largest again by bisection (``dstebz``) and their eigenvectors by inverse iteration on T
    (``dstein``, re-orthogonalised within clusters), taken back to A's basis by Q (``dormqr``
    on the stored Householder reflectors). That is one ``eigvalsh`` plus O(N²k), against
    ``eigh``'s all N vectors (measured at N = 1,000, one thread: 65 ms against 155 ms). Returns
    ``(lam, vecs)``, ``vecs`` ``N × k`` orthonormal, column j for ``lam[j]`` (``dstebz``
    returns the k eigenvalues grouped by the blocks T splits into, so the columns are sorted by
    eigenvalue afterwards); the signs are arbitrary. If inverse iteration fails to converge
    (LAPACK ``info`` > 0), falls back to :func:`eigh`.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> a = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
      >>> lam, vecs = linalg.eigh_top(a, 1)
      >>> print(lam.round(3).tolist(), vecs.shape)       # 2 + √2, 2, 2 − √2
      [3.414, 2.0, 0.586] (3, 1)
      >>> bool(np.allclose(a @ vecs[:, 0], lam[0] * vecs[:, 0]))
      True
    """
    a = np.asarray(a, np.float64)
    n = a.shape[0]
    if not 1 <= k <= n:
        raise NtkplastError(f"eigh_top: need 1 <= k <= N = {n}, got k={k}")
    a = 0.5 * (a + a.T)
    if n > 2:
        lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
        c, d, e, tau, info = lapack.dsytrd(a, lower=1, lwork=lwork)  # a kept for the fallback
        lam, info_f = lapack.dsterf(d, e)
        m, w, iblock, isplit, info_b = lapack.dstebz(d, e, 3, 0.0, 0.0, n - k + 1, n, 0.0, b"B")
        if info == info_f == info_b == 0 and m == k:
            z, info = lapack.dstein(d, e, w[:k], iblock, isplit)
            if info == 0:
                z[1:], _, info = lapack.dormqr(b"L", b"N", c[1:, :-1], tau, z[1:], 64 * k)
                if info == 0:  # dstebz orders by split-off block ("B"): sort descending
                    return lam[::-1], z[:, np.argsort(w[:k], kind="stable")[::-1]]
    lam, vecs = np.linalg.eigh(a)
    return lam[::-1], vecs[:, ::-1][:, :k]


def eigvalsh_float32(a: Any) -> np.ndarray:
    """Eigenvalues (descending, returned as float64) of a symmetric matrix, decomposed in float32.

    (A + Aᵀ)/2 in float32, blocked tridiagonal reduction (``ssytrd`` with its optimal workspace)
    and ``ssterf``: 1.5× faster than float64 at N = 1,000 on one thread (38 ms against 56 ms
    measured; numpy's ``eigvalsh`` of a float32 matrix took 57 ms). The backward error is
    ≈ ε₃₂·‖A‖: on the analysis benchmark's layer kernels every eigenvalue moved by at most
    4.5e-6·λ_max from float64's, under the N·ε₃₂·λ_max floor (1.2e-4·λ_max at N = 1,000) below
    which a float32 kernel's eigenvalues are rounding noise anyway. Use it only where nothing
    below that floor is read as signal (paper_notes.md has what it moves in the summaries).

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> a = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]], np.float32)
      >>> lam = linalg.eigvalsh_float32(a)
      >>> lam.dtype, bool(np.allclose(lam, linalg.eigvalsh(a.astype(np.float64)), atol=1e-5))
      (dtype('float64'), True)
    """
    a = np.asarray(a, np.float32)
    a = 0.5 * (a + a.T)
    n = a.shape[0]
    if n < 3:
        return np.linalg.eigvalsh(a)[::-1].astype(np.float64)
    lwork = int(lapack.ssytrd_lwork(n, lower=1)[0])
    _, d, e, _, info = lapack.ssytrd(a, lower=1, lwork=lwork, overwrite_a=1)
    lam, info_f = lapack.ssterf(d, e)
    if info or info_f:
        raise np.linalg.LinAlgError("Eigenvalues did not converge (LAPACK ssterf)")
    return lam[::-1].astype(np.float64)


def eigvalsh(a: Any) -> np.ndarray:
    """Eigenvalues (descending) of a symmetric matrix or a stack ``(..., n, n)``.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> print(linalg.eigvalsh(np.array([[2.0, 1.0], [1.0, 2.0]])).round(3).tolist())  # descending
      [3.0, 1.0]
    """
    a = np.asarray(a)
    return np.linalg.eigvalsh(0.5 * (a + np.swapaxes(a, -1, -2)))[..., ::-1]


def gram_singular_values(a: Any) -> np.ndarray:
    """Singular values (descending) of a stack of matrices ``(..., m, n)``.

    float32 (the default): σ = √λ of the smaller Gram AAᵀ or AᵀA, formed and decomposed in
    float64 — a zero σ comes out below √ε₆₄ · σ_max ≈ 1e-8 σ_max, far under the float32 zero
    threshold, and for the wide, short matrices of an input–output Jacobian (K × D, K ≪ D)
    ~10× cheaper than an SVD of each. float64 (verification) takes the SVD, exact to rounding.

    Examples:
      A float32 matrix goes through its smaller Gram in float64; a float64 one through an SVD:

      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> a = np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], np.float32)    # 2 × 4
      >>> s = linalg.gram_singular_values(a)
      >>> print(s.dtype, [f"{v:.3f}" for v in s])
      float32 ['3.000', '1.000']
      >>> print(linalg.gram_singular_values(a.astype(np.float64)).tolist())
      [3.0, 1.0]
    """
    a = np.asarray(a)
    if a.dtype == np.float64:
        return singular_values(a)
    a64 = a.astype(np.float64)
    at = np.swapaxes(a64, -1, -2)
    gram = a64 @ at if a.shape[-2] <= a.shape[-1] else at @ a64
    return np.sqrt(np.clip(eigvalsh(gram), 0.0, None)).astype(a.dtype)


def gated_singular_values(gate_sub: np.ndarray, lmat: np.ndarray,
                          block_entries: int) -> np.ndarray:
    """σ of J = diag(g)·L for every row g of ``gate_sub`` (host LAPACK), descending, each row
    of length n = min(d_out, d_in).

    A unit with g_i = 0 (an inactive ReLU) gives a zero row of J and so one exact zero σ; only
    the a active rows are decomposed. float32 (the default): from the eigenvalues, in float64,
    of the smaller Gram of J_a = diag(g_a)·L_a — J_a J_aᵀ = diag(g_a)(LLᵀ)_{aa}diag(g_a) (LLᵀ
    formed once) when a ≤ d_in, else J_aᵀJ_a = L_aᵀ diag(g_a²) L_a — σ = √λ, ~10× cheaper than
    an SVD per input, and a zero σ comes out below √ε₆₄ · σ_max ≈ 1e-8 σ_max, far under the
    float32 zero threshold. float64 inputs (verification) take an SVD of each J_a, exact to
    rounding. ``block_entries`` bounds the entries of LLᵀ: beyond it, each J_a J_aᵀ is formed
    from L_a directly.

    Examples:
      J = diag(g)·L for two gates g: a unit that is off (g_i = 0) adds one zero σ:

      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> lmat = np.diag([3.0, 2.0, 1.0]).astype(np.float32)
      >>> gates = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]], np.float32)
      >>> s = linalg.gated_singular_values(gates, lmat, block_entries=2**20)
      >>> [[f"{v:.3f}" for v in row] for row in s]
      [['3.000', '2.000', '1.000'], ['3.000', '1.000', '0.000']]
    """
    d_out, d_in = lmat.shape
    n = min(d_out, d_in)
    exact = gate_sub.dtype == np.float64
    lmat64 = np.asarray(lmat, np.float64)
    gram = lmat64 @ lmat64.T if not exact and d_out * d_out <= block_entries else None
    out = np.zeros((len(gate_sub), n), gate_sub.dtype)
    for i, g in enumerate(np.asarray(gate_sub, np.float64)):
        active = np.flatnonzero(g)
        ga = g[active]
        if len(active) == 0:
            continue
        if exact:
            s = singular_values(ga[:, None] * lmat64[active])
        elif len(active) <= d_in:
            la = None if gram is not None else lmat64[active]
            inner = gram[np.ix_(active, active)] if la is None else la @ la.T
            s = np.sqrt(np.clip(eigvalsh(ga[:, None] * inner * ga[None, :]), 0.0, None))
        else:
            la = lmat64[active]
            s = np.sqrt(np.clip(eigvalsh(la.T @ ((ga * ga)[:, None] * la)), 0.0, None))
        out[i, :len(s)] = s[:n]
    return out


def _blas() -> ThreadpoolController:
    """The BLAS/OpenMP libraries loaded, found again only after new Python modules were
    imported (which is how a library such as torch's or scikit-learn's OpenMP arrives): a fresh
    ``threadpool_limits`` searches the process's libraries, 1–5 ms a call with jax loaded,
    several calls per checkpoint."""
    return _blas_for(len(sys.modules))


@functools.lru_cache(maxsize=1)
def _blas_for(modules_loaded: int) -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> Any:
    """Context manager: BLAS/LAPACK calls run on one thread each inside the block (a
    process-wide setting for pthreads BLAS, restored on exit). Hold it around
    :func:`host_start` and the collection of its results.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> with linalg.one_blas_thread():
      ...     lam = linalg.eigvalsh(np.eye(3))
      >>> lam.tolist()
      [1.0, 1.0, 1.0]
    """
    return _blas().limit(limits=1)


def host_start(tasks: Sequence[Callable[[], T]]) -> Callable[[], list[T]]:
    """Start ``tasks`` (callables without arguments) on up to one thread per CPU core and return
    ``collect()``, which waits for their results, in order of ``tasks`` (the first exception
    raised by a task is raised there). numpy and scipy release the GIL in LAPACK, so the caller
    can run other work, e.g. jax computations, while the host decomposes. Call it inside
    :func:`one_blas_thread` and collect before leaving the block: the limit is process-wide,
    so the threads cannot set it themselves without racing (each also sets it for itself, which
    OpenMP BLAS keeps per thread).

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> with linalg.one_blas_thread():
      ...     collect = linalg.host_start([lambda: linalg.eigvalsh(2.0 * np.eye(2))])
      ...     # ... other work (jax computations) runs here while the host decomposes ...
      ...     results = collect()
      >>> results[0].tolist()
      [2.0, 2.0]
    """
    def run(task: Callable[[], T]) -> T:
        with one_blas_thread():
            return task()

    workers = max(1, min(len(tasks), os.cpu_count() or 1))
    pool = ThreadPoolExecutor(workers)
    futures = [pool.submit(run, task) for task in tasks]
    pool.shutdown(wait=False)  # the workers exit once the tasks are done
    return lambda: [f.result() for f in futures]


def host_map(tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Results of ``tasks`` (callables without arguments), run on up to one thread per CPU core,
    each with single-threaded BLAS/LAPACK (module docstring): :func:`host_start` inside
    :func:`one_blas_thread`, collected at once.

    Examples:
      >>> import numpy as np
      >>> from ntkplast import linalg
      >>> tasks = [lambda n=n: linalg.eigvalsh(n * np.eye(2)) for n in (1.0, 2.0, 3.0)]
      >>> [lam.tolist() for lam in linalg.host_map(tasks)]          # in the order of the tasks
      [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    """
    with one_blas_thread():
        return host_start(tasks)()


def kernel_velocity_from_distance(distance: Any, steps_apart: Any) -> Any:
    r"""Kernel velocity v = d / Δs: the kernel distance ``d`` between two checkpoints
    ``Δs = steps_apart`` training steps apart, per step (Fort et al. 2020, "Deep learning versus
    kernel learning"; ``d`` as :func:`ntkplast.spectra.kernel_distance`).

    The one definition of the formula: :func:`ntkplast.spectra.kernel_velocity` is it along a
    checkpoint series, the analysis's ``kernel_velocity`` row
    (:mod:`ntkplast.analysis.families`) between consecutive analysed checkpoints, there with Δs
    taken as at least 1. Python or numpy scalars and arrays (numpy, jax) alike, elementwise.

    Examples:
      >>> from ntkplast import linalg
      >>> linalg.kernel_velocity_from_distance(0.04, 10)            # d = 0.04 over 10 steps
      0.004
    """
    return distance / steps_apart
