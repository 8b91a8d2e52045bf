r"""The spectrum of one kernel Gram: eigenvalues, spectral summaries, matrix-free estimates.

Dense route: :func:`eigenvalues` (checked, float64), :func:`summary` and
:func:`summary_from_eigenvalues` (trace, λ_max, the floored condition number, effective and
stable rank, the power-law decay exponent; every formula on the latter), and the top
eigenvectors (:func:`top_eigenvectors`, :func:`eigenvalues_and_top_vectors`). Matrix-free
route: :func:`top_eigenvalues` (Lanczos) and :func:`hutchinson_trace` on a matrix–vector
product. Also :func:`as_matrix` and ``_square``, the layout and checks of a Gram that
:mod:`ntkplast.spectra._distances` shares. Public through :mod:`ntkplast.spectra`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from matfree import stochtrace

from ntkplast import linalg
from ntkplast.errors import NtkplastError
from ntkplast.ranks import effective_rank
from ntkplast.validate import legacy_arguments

Array = jax.Array


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
      0·log 0 = 0 (:func:`~ntkplast.spectra.effective_rank`; Roy & Vetterli 2007); computed
      over eigenvalues, i.e. the singular values of the PSD Gram; 0 for an all-zero spectrum;
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


@functools.partial(jax.jit, static_argnames=("shape", "num_matvecs"))
def _lanczos_ritz(matvec: Any, v0: Array, shape: tuple[int, ...], num_matvecs: int) -> Array:
    """Ritz values (descending) of m = ``num_matvecs`` Lanczos steps from ``v0``.

    Full reorthogonalisation by classical Gram–Schmidt twice against the basis Q (``m × n``, row
    i the i-th Lanczos vector), as matfree's ``tridiag_sym(reortho="full")``. Row i (zero until
    then) is written as Q + e_i qᵀ, not by an in-place row update or ``where``: after those,
    XLA's CPU backend copies Q into another layout for the products at every step. At n = 10⁵,
    m = 40 on 2 CPU cores this takes 0.13 s, matfree's 1.2 s.
    """
    m = num_matvecs
    rows = jnp.arange(m)[:, None]

    def step(i, carry):
        basis, q, alpha, beta = carry
        basis = basis + (rows == i) * q
        w = matvec(q.reshape(shape)).reshape(-1)
        alpha = alpha.at[i].set(jnp.vdot(q, w))
        w = w - (basis @ w) @ basis
        w = w - (basis @ w) @ basis
        norm = jnp.linalg.norm(w)
        return basis, w / norm, alpha, beta.at[i].set(norm)

    init = (jnp.zeros((m, v0.size), v0.dtype), v0 / jnp.linalg.norm(v0),
            jnp.zeros(m, v0.dtype), jnp.zeros(m, v0.dtype))
    _, _, alpha, beta = lax.fori_loop(0, m, step, init)
    tridiag = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    return jnp.linalg.eigvalsh(tridiag)[::-1]


def _as_partial(matvec: Callable) -> jax.tree_util.Partial:
    if isinstance(matvec, jax.tree_util.Partial):
        return matvec
    return jax.tree_util.Partial(matvec)


@legacy_arguments(positional=("key",), after=3)
def top_eigenvalues(matvec: Callable[[Array], Array], shape: int | tuple[int, ...], k: int, *,
                    key: Array, num_matvecs: int | None = None) -> Array:
    r"""The k largest eigenvalues of a symmetric operator, matrix-free, by Lanczos.

    Lanczos (1950) tridiagonalization with full reorthogonalization (classical Gram–Schmidt
    twice per step, as matfree's ``decomp.tridiag_sym(reortho="full")``) from a Gaussian start
    vector, then the k largest eigenvalues (Ritz values) of the m × m tridiagonal matrix, m =
    ``num_matvecs`` (default min(n, max(2k + 20, 40))). Cost: m products, O(n·m²) for the
    reorthogonalization and O(n·m) memory for the Krylov basis. ``shape`` is the shape of the
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
