"""Spectral summaries and kernel comparisons against numpy/scipy brute force."""

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from ntkplast import models, ntk, spectra
from ntkplast.errors import NtkplastError

pytestmark = pytest.mark.usefixtures("x64")  # float64 brute-force references


def _psd_with_spectrum(lam, seed=0):
    q = scipy.stats.ortho_group.rvs(len(lam), random_state=seed)
    return (q * np.asarray(lam)) @ q.T


def test_summary_power_law_spectrum():
    n, alpha = 60, 1.7
    lam = 5.0 * np.arange(1, n + 1) ** -alpha
    s = spectra.summary(_psd_with_spectrum(lam))
    p = lam / lam.sum()
    np.testing.assert_allclose(s.trace, lam.sum(), rtol=1e-10)
    np.testing.assert_allclose(s.lambda_max, lam[0], rtol=1e-10)
    np.testing.assert_allclose(s.lambda_min, lam[-1], rtol=1e-8)
    np.testing.assert_allclose(s.condition, lam[0] / lam[-1], rtol=1e-8)
    np.testing.assert_allclose(s.effective_rank, np.exp(scipy.stats.entropy(p)), rtol=1e-10)
    np.testing.assert_allclose(s.stable_rank, lam.sum() / lam[0], rtol=1e-10)
    np.testing.assert_allclose(s.decay_exponent, alpha, rtol=1e-8)
    np.testing.assert_allclose(s.decay_intercept, np.log(5.0), rtol=1e-8)
    assert s.decay_r2 > 1 - 1e-12
    assert s.fit_window == (2, 30) and s.fit_points == 29 and s.size == n
    assert set(s._asdict()) >= {"trace", "effective_rank", "decay_r2"}


def test_summary_floor_window_and_full_layout():
    lam = np.array([4.0, 2.0, 1.0, 0.0, 0.0])
    s = spectra.summary(_psd_with_spectrum(lam), eps=1e-6, fit_window=(1, 5))
    np.testing.assert_allclose(s.condition, 1e6, rtol=1e-6)  # λ_min floored at eps·λ_max
    assert s.fit_points == 3  # zeros are below the floor
    fit = scipy.stats.linregress(np.log([1, 2, 3]), np.log(lam[:3]))
    np.testing.assert_allclose(s.decay_exponent, -fit.slope, rtol=1e-6)
    np.testing.assert_allclose(s.decay_r2, fit.rvalue ** 2, rtol=1e-6)
    np.testing.assert_allclose(s.effective_rank, np.exp(scipy.stats.entropy(lam[:3])),
                               rtol=1e-8)
    full = np.random.default_rng(0).normal(size=(3, 2, 4, 4))  # N × M × K × K
    mat = np.asarray(spectra.as_matrix(full))
    assert mat.shape == (12, 8)
    np.testing.assert_array_equal(mat[1 * 4 + 2, 1 * 4 + 3], full[1, 1, 2, 3])
    with pytest.raises(NtkplastError, match="fit_window"):
        spectra.summary(np.eye(3), fit_window=(3, 1))
    with pytest.raises(NtkplastError, match="kernel"):
        spectra.summary(np.ones((2, 3)))


def test_kernel_comparisons_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    k1, k2 = a @ a.T, b @ b.T + a @ a.T
    cos = np.sum(k1 * k2) / (np.linalg.norm(k1) * np.linalg.norm(k2))
    np.testing.assert_allclose(spectra.kernel_distance(k1, k2), 1 - cos, rtol=1e-12)
    np.testing.assert_allclose(spectra.kernel_distance(k1, 3 * k1), 0, atol=1e-14)
    vel = spectra.kernel_velocity(np.stack([k1, k2, k2]), np.array([0, 10, 30]))
    np.testing.assert_allclose(vel, [(1 - cos) / 10, 0], atol=1e-14)

    labels = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    y = np.eye(3)[labels]
    h = np.eye(8) - 1 / 8
    kc, lc = h @ k1 @ h, h @ y @ y.T @ h
    want = np.sum(kc * lc) / (np.linalg.norm(kc) * np.linalg.norm(lc))
    np.testing.assert_allclose(spectra.centered_alignment(k1, labels), want, rtol=1e-12)
    np.testing.assert_allclose(spectra.centered_alignment(k1, y), want, rtol=1e-12)
    design = np.sum(kc * (y @ y.T)) / (np.linalg.norm(kc) * np.linalg.norm(y @ y.T))
    np.testing.assert_allclose(spectra.centered_alignment(k1, labels, center_target=False),
                               design, rtol=1e-12)
    np.testing.assert_allclose(spectra.centered_alignment(y @ y.T, labels), 1.0, rtol=1e-12)
    with warnings.catch_warnings():  # undefined (constant kernel, one class): NaN, silently
        warnings.simplefilter("error")
        for kernel, targets in ((np.full((8, 8), 2.0), labels), (k1, np.zeros(8, int))):
            assert np.isnan(spectra.centered_alignment(kernel, targets))
            assert np.isnan(spectra.centered_alignment(jnp.asarray(kernel), targets))

    u1 = scipy.linalg.eigh(k1)[1][:, -3:]
    u2 = scipy.linalg.eigh(k2)[1][:, -3:]
    np.testing.assert_allclose(spectra.eigenspace_overlap(k1, k2, 3),
                               np.linalg.norm(u1.T @ u2) ** 2 / 3, rtol=1e-10)
    np.testing.assert_allclose(spectra.eigenspace_overlap(k1, 2 * k1, 3), 1.0, rtol=1e-10)


def test_condition_at_floor_flags_a_capped_condition_number():
    """A rank-deficient float32 Gram reads the cap 1/eps = 1/(N·ε₃₂) = 65,536 at N = 128 and is
    flagged; diag(1, …, N) reads its true condition number N and is not."""
    x = np.random.default_rng(0).normal(size=(128, 10)).astype(np.float32)
    s = spectra.summary(x @ x.T)  # rank 10 < N
    assert s.condition_at_floor
    assert s.condition == pytest.approx(2.0**16, rel=1e-12) == 1 / s.eps
    n = 50
    s = spectra.summary(np.diag(np.arange(1.0, n + 1)))
    assert not s.condition_at_floor and s.condition == pytest.approx(n, rel=1e-12)
    # at the floor exactly: λ_min = eps·λ_max counts as capped
    assert spectra.summary_from_eigenvalues([1.0, 0.25], eps=0.25).condition_at_floor
    below = spectra.summary_from_eigenvalues([1.0, 0.25], eps=0.125)
    assert not below.condition_at_floor and below.condition == 4.0


def _deflated_float64(k1, k2, remove):
    """Fort's distance between K − Σ_{i≤r} λ_i u_i u_iᵀ of each, numpy's float64 eigh."""
    parts = []
    for k in (k1, k2):
        lam, vec = np.linalg.eigh(k)
        top, vtop = lam[::-1][:remove], vec[:, ::-1][:, :remove]
        parts.append(k - (vtop * top) @ vtop.T)
    a, b = parts
    return 1 - np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))


def test_deflated_kernel_distance_sees_past_a_dominant_direction():
    """K_j = a·uuᵀ + B_j with B1 ⟂ B2 ⟂ uuᵀ (Frobenius): Fort's distance is
    1 − a²/√((a² + ‖B1‖²)(a² + ‖B2‖²)), small for large a, while the deflated one is 1."""
    n, a = 7, 50.0
    q = scipy.stats.ortho_group.rvs(n, random_state=3)
    u = q[:, 0]
    b1 = (q * np.array([0, 3.0, 1.0, 2.0, 0, 0, 0])) @ q.T  # disjoint coordinates of q's basis
    b2 = (q * np.array([0, 0, 0, 0, 4.0, 0.5, 1.0])) @ q.T
    k1, k2 = a * np.outer(u, u) + b1, a * np.outer(u, u) + b2
    fort = 1 - a**2 / np.sqrt((a**2 + np.sum(b1**2)) * (a**2 + np.sum(b2**2)))
    assert fort < 0.01
    np.testing.assert_allclose(spectra.kernel_distance(k1, k2), fort, rtol=1e-10)
    assert spectra.deflated_kernel_distance(k1, k2) == pytest.approx(1.0, abs=1e-12)
    for other in (k1, 3 * k1):  # identical and scaled kernels: both 0
        assert spectra.kernel_distance(k1, other) == pytest.approx(0, abs=1e-14)
        assert spectra.deflated_kernel_distance(k1, other) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("remove", [1, 2, 3])
def test_deflated_kernel_distance_matches_float64_eigh(remove):
    rng = np.random.default_rng(remove)
    for _ in range(5):
        x1, x2 = rng.normal(size=(9, 12)), rng.normal(size=(9, 12))
        k1, k2 = x1 @ x1.T, x1 @ x1.T + 0.5 * x2 @ x2.T
        want = _deflated_float64(k1, k2, remove)
        got = spectra.deflated_kernel_distance(k1, k2, remove=remove)
        assert 0 <= got <= 1 and got == pytest.approx(want, rel=1e-10)
        tops = [np.linalg.eigh(k)[1][:, ::-1][:, :5] for k in (k1, k2)]  # precomputed, k = 5
        given = spectra.deflated_kernel_distance(k1, k2, remove=remove, top1=tops[0],
                                                 top2=tops[1])
        assert given == pytest.approx(want, rel=1e-10)


def test_deflated_kernel_distance_undefined_and_bad_input():
    """Rank ≤ remove leaves nothing (up to rounding) to compare: NaN, silently."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 6))
    k = x @ x.T
    ones = np.full((6, 6), 2.0)  # rank 1: the kernel of a network whose hidden units are dead
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(spectra.deflated_kernel_distance(ones, k))
        assert np.isnan(spectra.deflated_kernel_distance(k, np.zeros((6, 6))))
    with pytest.raises(NtkplastError, match="remove"):
        spectra.deflated_kernel_distance(k, k, remove=6)
    with pytest.raises(NtkplastError, match="shapes"):
        spectra.deflated_kernel_distance(k, k[:5, :5])
    with pytest.raises(NtkplastError, match="top2"):
        spectra.deflated_kernel_distance(k, k, remove=2, top2=np.eye(6)[:, :1])


def test_lanczos_and_hutchinson_on_dense_matrix():
    lam = 10.0 * np.arange(1, 201) ** -1.0
    mat = jnp.asarray(_psd_with_spectrum(lam, seed=2))
    top = spectra.top_eigenvalues(lambda v: mat @ v, 200, 5, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(top, lam[:5], rtol=1e-8)
    est = spectra.hutchinson_trace(lambda v: mat @ v, 200, 400, key=jax.random.PRNGKey(1), chunk=50)
    assert abs(est.mean - lam.sum()) < 4 * est.stderr + 1e-12
    assert est.stderr < 0.05 * lam.sum()
    with pytest.raises(NtkplastError, match="top_eigenvalues"):
        spectra.top_eigenvalues(lambda v: mat @ v, 200, 0, key=jax.random.PRNGKey(0))


def test_matrix_free_ntk_spectrum_matches_dense():
    """Lanczos on ntk_matvec vs the dense NTK's eigenvalues (traced and full)."""
    spec = models.ArchSpec(widths=(32, 32), num_outputs=3, parameterization="ntk", b_std=0.1)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (6,))
    x = jax.random.normal(jax.random.PRNGKey(1), (40, 6))
    for trace, shape in ((True, 40), (False, (40, 3))):
        dense = spectra.eigenvalues(ntk.empirical_ntk(model, params, x, trace_outputs=trace))
        mv = ntk.ntk_matvec(model, params, x, trace_outputs=trace)
        top = spectra.top_eigenvalues(mv, shape, 4, key=jax.random.PRNGKey(2), num_matvecs=40)
        np.testing.assert_allclose(top, dense[:4], rtol=1e-8)
        est = spectra.hutchinson_trace(mv, shape, 64, key=jax.random.PRNGKey(3), chunk=16)
        assert abs(est.mean - dense.sum()) < 4 * est.stderr


@pytest.mark.parametrize("n, k", [(2, 1), (3, 3), (40, 5), (120, 10)])
def test_eigenvalues_and_top_vectors_match_numpy_eigh(n, k):
    """One tridiagonalisation (dsytrd + dsterf + dstein) gives numpy float64 eigh's numbers."""
    lam = 3.0 * np.arange(1, n + 1) ** -1.5
    if n > 3:
        lam[2] = lam[1] * (1 - 1e-12)  # a near-double eigenvalue inside the top k
    mat = _psd_with_spectrum(lam, seed=n)
    mat[0, 1] += 1e-9  # rounding asymmetry is symmetrised away
    ref_lam, ref_vec = np.linalg.eigh(0.5 * (mat + mat.T))
    got_lam, got_vec = spectra.eigenvalues_and_top_vectors(mat, k)
    np.testing.assert_allclose(got_lam, ref_lam[::-1], rtol=0, atol=1e-13 * lam[0])
    assert got_vec.shape == (n, k)
    np.testing.assert_allclose(got_vec.T @ got_vec, np.eye(k), atol=1e-12)
    sym = 0.5 * (mat + mat.T)
    np.testing.assert_allclose(sym @ got_vec, got_vec * ref_lam[::-1][:k], atol=1e-12 * lam[0])
    # the subspace, not the basis (a double eigenvalue's basis is arbitrary): equal projectors
    ref_top = ref_vec[:, ::-1][:, :k]
    np.testing.assert_allclose(got_vec @ got_vec.T, ref_top @ ref_top.T, atol=1e-9)
    np.testing.assert_allclose(spectra.top_eigenvectors(mat, k) @ got_vec.T @ got_vec,
                               spectra.top_eigenvectors(mat, k), atol=1e-9)
    with pytest.raises(NtkplastError, match="k: expected"):
        spectra.eigenvalues_and_top_vectors(mat, n + 1)


def test_eigh_top_falls_back_to_eigh_when_inverse_iteration_fails(monkeypatch):
    from ntkplast import linalg

    mat = _psd_with_spectrum(np.arange(1.0, 9.0), seed=3)
    monkeypatch.setattr(linalg.lapack, "dstein", lambda *a: (np.zeros((8, 2)), 1))
    lam, vec = linalg.eigh_top(mat, 2)
    np.testing.assert_allclose(lam, np.arange(8.0, 0.0, -1.0), rtol=1e-12)
    np.testing.assert_allclose(np.abs(vec.T @ np.linalg.eigh(mat)[1][:, ::-1][:, :2]),
                               np.eye(2), atol=1e-10)


def test_host_map_keeps_order_limits_blas_threads_and_raises():
    """One BLAS and one OpenMP thread inside each task (OpenMP's setting is per thread: an
    OpenMP runtime is loaded here, as scikit-learn or torch load one in a real process)."""
    import sklearn.utils._openmp_helpers  # noqa: F401
    import threadpoolctl

    from ntkplast import linalg

    def blas_threads():
        return max(p["num_threads"] for p in threadpoolctl.threadpool_info())

    mats = [_psd_with_spectrum(np.arange(1.0, 6.0) * (i + 1), seed=i) for i in range(4)]
    got = linalg.host_map([lambda m=m: (spectra.eigenvalues(m), blas_threads()) for m in mats])
    for i, (lam, threads) in enumerate(got):
        np.testing.assert_allclose(lam, np.arange(5.0, 0.0, -1.0) * (i + 1), rtol=1e-12)
        assert threads == 1
    with pytest.raises(NtkplastError, match="NaN"):
        linalg.host_map([lambda: spectra.eigenvalues(np.full((2, 2), np.nan))])


def test_host_map_limits_libraries_loaded_after_its_first_call():
    """A library that arrives with a later import (scikit-learn's OpenMP here, torch's in a real
    process) is limited too, in a fresh process where host_map ran before the import."""
    script = """if True:
        import numpy as np, threadpoolctl
        from ntkplast import linalg
        linalg.host_map([lambda: np.linalg.eigvalsh(np.eye(3))])
        import sklearn.utils._openmp_helpers  # loads an OpenMP runtime
        print(linalg.host_map([lambda: max(p["num_threads"]
                                           for p in threadpoolctl.threadpool_info())])[0])
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True)
    assert out.stdout.strip() == "1"


def test_host_comparisons_stay_float64_without_x64():
    """numpy kernels are compared on the host in float64 whatever jax's x64 flag; a tiny
    distance (1 − cos cancels) keeps its digits. jax arrays take the jax path, same value."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(30, 30))
    k1 = a @ a.T
    b = rng.normal(size=(30, 30))
    k2 = k1 + 1e-4 * np.abs(k1).mean() * (b + b.T)  # d ≈ 1e-9, below float32's resolution
    cos = np.sum(k1 * k2) / (np.linalg.norm(k1) * np.linalg.norm(k2))
    assert 1e-10 < 1 - cos < 1e-8
    labels = rng.integers(0, 3, 30)
    h = np.eye(30) - 1 / 30
    y = np.eye(3)[labels]
    kc, lc = h @ k1 @ h, h @ y @ y.T @ h
    align = np.sum(kc * lc) / (np.linalg.norm(kc) * np.linalg.norm(lc))
    prev = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", False)
    try:
        np.testing.assert_allclose(spectra.kernel_distance(k1, k2), 1 - cos, rtol=1e-6)
        np.testing.assert_allclose(spectra.centered_alignment(k1, labels), align, rtol=1e-12)
        np.testing.assert_allclose(spectra.centered_alignment(jnp.asarray(k1), labels), align,
                                   rtol=1e-5)
        np.testing.assert_allclose(spectra.kernel_distance(jnp.asarray(k1), jnp.asarray(2 * k1)),
                                   0, atol=1e-6)
    finally:
        jax.config.update("jax_enable_x64", prev)


@pytest.mark.parametrize("n", [1, 2, 300])
def test_float32_lapack_eigenvalues_stay_under_the_rounding_floor(n):
    """float32 LAPACK (ssytrd + ssterf) against numpy's float64 eigvalsh of the same float32
    kernel: every eigenvalue within 1e-6·λ_max, far under the N·ε₃₂·λ_max floor."""
    lam = 2.0 * np.arange(1, n + 1) ** -2.0
    k32 = (_psd_with_spectrum(lam, seed=7) if n > 1 else np.eye(1)).astype(np.float32)
    ref = np.linalg.eigvalsh(k32.astype(np.float64))[::-1]
    got = spectra.eigenvalues(k32, float32_lapack=True)
    assert got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * ref[0])
    floor = n * np.finfo(np.float32).eps * ref[0]
    above = ref > floor
    np.testing.assert_allclose(got[above], ref[above], rtol=1e-3)


@pytest.mark.parametrize("seed", range(20))
def test_eigh_top_orders_vectors_by_eigenvalue_on_block_diagonal_matrices(seed):
    """A block-diagonal matrix splits its tridiagonal form into blocks, and LAPACK's dstebz
    returns the eigenvalues block by block: column j must still belong to the j-th largest
    eigenvalue. Reference: numpy's eigh, float64."""
    from scipy.linalg import block_diag

    from ntkplast import linalg

    rng = np.random.default_rng(seed)
    blocks = [_psd_with_spectrum(rng.uniform(0.1, 10, size=n), seed=seed + n) for n in (2, 3, 4)]
    mat = block_diag(*[blocks[i] for i in rng.permutation(3)])
    lam, vecs = linalg.eigh_top(mat, 3)
    ref_lam, ref_vecs = np.linalg.eigh(mat)
    np.testing.assert_allclose(lam, ref_lam[::-1], rtol=1e-10)
    for j in range(3):
        np.testing.assert_allclose(abs(vecs[:, j] @ ref_vecs[:, -1 - j]), 1.0, atol=1e-8)
    np.testing.assert_allclose(linalg.eigh_top(np.diag([1.0, 3.0, 2.0]), 2)[1][:, 0] ** 2,
                               [0.0, 1.0, 0.0], atol=1e-12)
