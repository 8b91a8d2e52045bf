"""Isometry: layer, input-output and weight spectra against closed forms and float64 SVDs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import isometry, linalg, models
from ntkplast.errors import NtkplastError


def _setup(spec, input_shape, n=5, seed=0):
    """Gaussian parameters drawn by numpy with the spec's shapes (no init compile)."""
    model = models.build(spec)
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: model.init(k, input_shape), jax.random.PRNGKey(0))
    dtype = jnp.result_type(float)
    params = tuple({k: jnp.asarray(rng.normal(size=v.shape) / (
        math.sqrt(models.fan_in(v)) if k == "W" and spec.parameterization == "standard" else 1),
        dtype) for k, v in p.items()} for p in shapes)
    return model, params, jnp.asarray(rng.normal(size=(n,) + input_shape), dtype)


def _pool(a):
    n, h, w, c = a.shape
    return a[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _brute_force_layer_jacobians(model, params, x):
    """Explicit J_l(x) (N × d_out × d_in) of every layer map a_{l-1} ↦ φ(z_l), by jax.jacobian."""
    _, post = model.intermediates(params, x)
    a = np.asarray(x)
    out = []
    for i, (layer, p) in enumerate(zip(model.layers, params)):
        if layer.flatten:
            a = a.reshape(a.shape[0], -1)
        phi = models.ACTIVATIONS[layer.activation] if layer.activation else (lambda z: z)

        def g(v, layer=layer, p=p, phi=phi):
            return phi(models.layer_pre_activation(model, layer, p, v[None])[0])

        jac = np.asarray(jax.jit(jax.vmap(jax.jacobian(g)))(jnp.asarray(a)))
        d_out = math.prod(jac.shape[1:1 + jac.ndim // 2])
        out.append(jac.reshape(a.shape[0], d_out, -1))
        if layer.activation is not None:
            a = np.asarray(post[i])
            a = _pool(a) if layer.pool else a
    return out


@pytest.mark.parametrize(("parameterization", "gain"),
                         [("standard", 1.0), ("ntk", 1.0), ("standard", 0.7)])
def test_orthogonal_linear_network_has_every_sigma_equal_to_the_gain(parameterization, gain):
    """Deep linear net, orthogonal weights of gain c: every layer σ = c, end to end σ = c^L."""
    width, depth = 8, 3
    spec = models.ArchSpec(widths=(width,) * depth, num_outputs=width, activation="linear",
                           init="orthogonal", w_std=gain, readout_w_std=gain,
                           parameterization=parameterization, b_std=0.5)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (width,))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, width))
    res = isometry.layer_spectra(model, params, x, spectra_subsample=4)
    assert len(res.layers) == depth + 1
    for layer in res.layers:
        assert layer.exact and layer.n == width
        np.testing.assert_allclose(layer.singular_values, gain, rtol=2e-6)
        np.testing.assert_allclose(layer.chi, gain**2, rtol=2e-6)
        s = layer.summary
        np.testing.assert_allclose([s.chi, s.isometry_index], [gain**2, 1.0], rtol=2e-6)
        np.testing.assert_allclose([s.var_sigma_sq, s.mean_log_sigma_sq],
                                   [0.0, math.log(gain) ** 2], atol=2e-6)
        assert s.zeros == s.units_off == 0 and s.frac_sigma_in_half_two == 1.0
        # tanh²(log c) = ((c² − 1)/(c² + 1))²: 0 at gain 1 (isometry)
        np.testing.assert_allclose(s.isometry_deviation, math.tanh(math.log(gain)) ** 2,
                                   atol=1e-6)
    io = isometry.input_output_spectra(model, params, x)
    np.testing.assert_allclose(io.singular_values, gain ** (depth + 1), rtol=1e-5)
    np.testing.assert_allclose(io.summary.isometry_index, 1.0, rtol=1e-5)
    np.testing.assert_allclose(io.summary.isometry_deviation,
                               math.tanh((depth + 1) * math.log(gain)) ** 2, atol=1e-5)
    for s in isometry.weight_spectra(model, params):
        np.testing.assert_allclose(s, gain, rtol=2e-6)


BRUTE_FORCE_CASES = [  # the second has K > D: forward-mode ∂f/∂x; the last d_1 < D: ∂f/∂z_1·Rᵀ
    (models.ArchSpec(widths=(9, 5), num_outputs=3, b_std=0.4), (7,)),
    (models.ArchSpec(widths=(6, 6), num_outputs=5, activation="tanh", parameterization="ntk",
                     b_std=0.2), (4,)),
    (models.ArchSpec(kind="cnn", widths=(3,), dense_widths=(4,), num_outputs=2, b_std=0.3,
                     activation="gelu"), (4, 4, 2)),
    (models.ArchSpec(widths=(5, 4), num_outputs=3, b_std=0.3), (3, 4)),
]


@pytest.mark.parametrize(("spec", "input_shape"), BRUTE_FORCE_CASES)
def test_spectra_match_full_svd(x64, spec, input_shape):
    """χ, mean σ⁴ per input, pooled variance and every σ agree with numpy's SVD of J_l and of
    ∂f/∂x (explicit Jacobians by jax.jacobian / jacfwd, float64)."""
    model, params, x = _setup(spec, input_shape, n=7)
    res = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    for layer, jac in zip(res.layers, _brute_force_layer_jacobians(model, params, x)):
        s = np.linalg.svd(jac, compute_uv=False)
        assert layer.exact and layer.n == s.shape[1]
        np.testing.assert_allclose(layer.singular_values, s, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.chi, np.mean(s**2, axis=1), rtol=1e-10)
        np.testing.assert_allclose(layer.mean_sigma4, np.mean(s**4, axis=1), rtol=1e-10)
        np.testing.assert_allclose(layer.summary.chi, np.mean(s**2), rtol=1e-10)
        np.testing.assert_allclose(layer.summary.var_sigma_sq, np.var(s**2), rtol=1e-8,
                                   atol=1e-12)
        np.testing.assert_array_equal(layer.units_off, np.sum(np.all(jac == 0, axis=2), axis=1))
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda v: model.apply(params, v[None])[0])))(x)
    s = np.linalg.svd(np.asarray(jac).reshape(7, spec.num_outputs, -1), compute_uv=False)
    res = isometry.input_output_spectra(model, params, x, block_size=3)  # pads the last block
    np.testing.assert_allclose(res.singular_values, s, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(res.summary.chi, np.mean(s**2), rtol=1e-10)
    np.testing.assert_allclose(res.summary.var_sigma_sq, np.var(s**2), rtol=1e-8)
    np.testing.assert_allclose(res.chi, np.mean(s**2, axis=1), rtol=1e-10)


def test_hutchinson_moments_of_large_layers(x64):
    """Past max_matrix_entries χ stays exact and tr((JJᵀ)²) is an unbiased estimate."""
    spec, input_shape = BRUTE_FORCE_CASES[2]
    model, params, x = _setup(spec, input_shape, n=7)
    exact = isometry.layer_spectra(model, params, x)
    # the conv layer (48 × 32 map, 48² Gram) goes past 1000 entries; the dense layers do not
    est = isometry.layer_spectra(model, params, x, max_matrix_entries=1000, num_probes=2000,
                                 key=jax.random.PRNGKey(3))  # per-input relative std ≲ 3%
    assert [layer.exact for layer in est.layers] == [False, True, True]
    h, e = est.layers[0], exact.layers[0]
    assert h.singular_values is None and math.isnan(h.summary.zeros)
    np.testing.assert_allclose(h.chi, e.chi, rtol=1e-12)
    np.testing.assert_allclose(h.mean_sigma4, e.mean_sigma4, rtol=0.15)
    np.testing.assert_allclose(np.mean(h.mean_sigma4), np.mean(e.mean_sigma4), rtol=0.05)
    np.testing.assert_array_equal(h.units_off, e.units_off)
    for h, e in zip(est.layers[1:], exact.layers[1:]):
        np.testing.assert_allclose(h.mean_sigma4, e.mean_sigma4, rtol=1e-12)


def test_relu_zero_count_is_the_number_of_units_off(x64):
    """Square ReLU layer: J_l has exactly one zero σ per unit with z ≤ 0 on that input."""
    width = 12
    spec = models.ArchSpec(widths=(width, width), num_outputs=width, b_std=0.5)
    model, params, x = _setup(spec, (width,), n=8)
    pre, _ = model.intermediates(params, x)
    res = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    for z, layer in zip(pre[:-1], res.layers[:-1]):
        off = np.sum(np.asarray(z) <= 0, axis=1)
        assert off.min() < off.max() and off.max() < width  # a non-trivial case
        np.testing.assert_array_equal(layer.units_off, off)
        s = np.asarray(layer.singular_values)
        zeros = np.sum(s <= width * np.finfo(s.dtype).eps * s.max(axis=1, keepdims=True), axis=1)
        np.testing.assert_array_equal(zeros, off)
        assert layer.summary.zeros == layer.summary.units_off == off.mean()
    assert res.layers[-1].summary.units_off == 0


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_weight_spectra_match_numpy(parameterization):
    spec = models.ArchSpec(kind="cnn", widths=(3,), dense_widths=(5,), num_outputs=2,
                           parameterization=parameterization)
    model, params, _ = _setup(spec, (4, 4, 2))
    for layer, p, s in zip(model.layers, params, isometry.weight_spectra(model, params)):
        w = np.asarray(p["W"]) * models.multipliers(model, layer, p["W"])[0]
        mat = np.moveaxis(w, -1, 0).reshape(w.shape[-1], -1)  # c_out × (k·k·c_in)
        np.testing.assert_allclose(s, np.linalg.svd(mat, compute_uv=False), rtol=1e-5)


def test_pure_metrics_by_hand():
    # eigenvalues {1, 4}: geometric mean 2, arithmetic mean 2.5; zeros are excluded
    eigs = jnp.array([[1.0, 1.0, 1.0], [1.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(isometry.isometry_index(eigs), [1.0, 0.8, np.nan], rtol=1e-6)
    # σ = (2, 1, 0): σ² = (4, 1, 0); nonzero σ: log² = (log 2)², 0; deviation (3/5)², 0, 1
    want = {"n": 3, "chi": 5 / 3, "var_sigma_sq": np.var([4.0, 1.0, 0.0]),
            "mean_log_sigma_sq": math.log(2) ** 2 / 2, "frac_sigma_in_half_two": 2 / 3,
            "zeros": 1.0, "isometry_index": 0.8, "isometry_deviation": (0.36 + 0 + 1) / 3}
    s = jnp.array([2.0, 1.0, 0.0])
    for got in (isometry.summarize_singular_values(s),
                jax.jit(isometry.summarize_singular_values)(s)):
        for k, v in want.items():
            np.testing.assert_allclose(getattr(got, k), v, rtol=1e-6, err_msg=k)


def _deviation_float64(s):
    """mean ((σ² − 1)/(σ² + 1))² over every σ, zeros included, in float64 numpy."""
    sq = np.asarray(s, np.float64) ** 2
    return float(np.mean(((sq - 1) / (sq + 1)) ** 2))


def test_isometry_deviation_counts_zeros_against_float64(x64):
    """Pooled over spectra with zeros, near-zeros, σ < 1 and σ > 1: the float64 formula; a
    spectrum of zeros (a dead layer) reads 1 where mean (log σ)² reads NaN."""
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.uniform(0, 3, size=(4, 6)), np.zeros((4, 2)),
                        np.full((4, 1), 1e-9), np.full((4, 1), 1e4)], axis=1)
    want = _deviation_float64(s)
    got = isometry.summarize_singular_values(jnp.asarray(s)).isometry_deviation
    assert float(got) == pytest.approx(want, rel=1e-13)
    for row in s:
        one = jax.jit(isometry.summarize_singular_values)(jnp.asarray(row, jnp.float32))
        assert float(one.isometry_deviation) == pytest.approx(_deviation_float64(row), rel=1e-6)
    dead = isometry.summarize_singular_values(jnp.zeros((3, 5)))
    assert float(dead.isometry_deviation) == 1.0 and math.isnan(dead.mean_log_sigma_sq)
    assert float(isometry.summarize_singular_values(jnp.ones(7)).isometry_deviation) == 0.0


def test_isometry_deviation_properties(x64):
    """Symmetric under σ ↔ 1/σ, in [0, 1], and (log σ)² to leading order near σ = 1."""
    s = jnp.asarray(np.geomspace(1e-6, 1e6, 41))
    d = isometry.isometry_deviation(s)
    np.testing.assert_allclose(d, isometry.isometry_deviation(1 / s), rtol=1e-12)
    assert np.all((np.asarray(d) >= 0) & (np.asarray(d) <= 1))
    np.testing.assert_allclose(d, np.tanh(np.log(np.asarray(s))) ** 2, rtol=1e-10)
    for delta in (1e-2, 1e-3, 1e-4):  # tanh² x = x² − (2/3) x⁴ + …
        x = math.log1p(delta)
        got = float(isometry.isometry_deviation(jnp.asarray(1 + delta)))
        assert abs(got - x * x) <= x**4
    assert float(isometry.isometry_deviation(jnp.asarray(np.inf))) == 1.0


def test_dead_relu_layer_reads_deviation_one(x64):
    """A hidden ReLU layer with a bias far below every pre-activation is off on every input:
    J_1 = 0, deviation exactly 1, above the healthy He-initialised layer 0 (whose value is the
    float64 formula on numpy's SVD of the explicit J_0), where mean (log σ)² is NaN."""
    width = 8
    spec = models.ArchSpec(widths=(width, width), num_outputs=4)  # He init, ReLU
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (width,))
    params = (params[0], {**params[1], "b": jnp.full((width,), -1e3)}, params[2])
    x = jax.random.normal(jax.random.PRNGKey(1), (10, width))
    res = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    healthy, dead = res.layers[0].summary, res.layers[1].summary
    assert dead.units_off == width and dead.isometry_deviation == 1.0
    assert math.isnan(dead.mean_log_sigma_sq) and math.isnan(dead.isometry_index)
    jac = _brute_force_layer_jacobians(model, params, x)[0]
    want = _deviation_float64(np.linalg.svd(jac, compute_uv=False))
    assert healthy.isometry_deviation == pytest.approx(want, rel=1e-10)
    assert 0 < healthy.units_off < width and 0.2 < healthy.isometry_deviation < 1.0


def test_subsample():
    spec = models.ArchSpec(widths=(6,), num_outputs=3)
    model, params, x = _setup(spec, (4,), n=10)
    res = isometry.layer_spectra(model, params, x, spectra_subsample=4, key=jax.random.PRNGKey(1))
    idx = np.asarray(res.subsample)
    assert len(set(idx.tolist())) == 4 and np.all(np.diff(idx) > 0) and idx.max() < 10
    assert [s.shape for s in res.singular_values] == [(4, 4), (4, 3)]
    assert res.layers[0].chi.shape == (10,)
    first = isometry.layer_spectra(model, params, x, spectra_subsample=100)
    assert first.singular_values[0].shape == (10, 4)
    none = isometry.layer_spectra(model, params, x, spectra_subsample=0)
    assert math.isnan(none.summaries[0].isometry_index) and none.summaries[0].chi > 0
    assert math.isnan(none.summaries[0].isometry_deviation)


def test_bad_input_names_the_argument():
    spec = models.ArchSpec(widths=(6,), num_outputs=3)
    model, params, x = _setup(spec, (4,))
    with pytest.raises(NtkplastError, match="x: the probe set is empty"):
        isometry.layer_spectra(model, params, x[:0])
    with pytest.raises(NtkplastError, match="x: contains NaN"):
        isometry.input_output_spectra(model, params, x.at[0, 1].set(jnp.nan))
    with pytest.raises(NtkplastError, match="params: expected a tuple of 2"):
        isometry.layer_spectra(model, params[:1], x)
    with pytest.raises(NtkplastError, match=r"params\[1\]\['W'\]: contains NaN"):
        isometry.weight_spectra(model, (params[0], {**params[1], "W": params[1]["W"] * jnp.inf}))
    with pytest.raises(NtkplastError, match=r"x: layer 0 weight has shape .* per-example shape"):
        isometry.layer_spectra(model, params, jnp.ones((3, 5)))
    with pytest.raises(NtkplastError, match="spectra_subsample"):
        isometry.layer_spectra(model, params, x, spectra_subsample=-1)
    with pytest.raises(NtkplastError, match="block_size"):
        isometry.input_output_spectra(model, params, x, block_size=0)


@pytest.mark.parametrize("widths", [(12, 7), (5, 9)], ids=["tall-then-narrow", "wide"])
def test_float32_gram_route_matches_float64_svd(widths):
    """float32 spectra come from the smaller Gram; they match an SVD of the explicit J."""
    model = models.build(models.ArchSpec(widths=widths, num_outputs=4, b_std=0.3))
    params = model.init(jax.random.PRNGKey(3), (8,))
    x = jax.random.normal(jax.random.PRNGKey(4), (6, 8))
    got = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    pre, _ = model.intermediates(params, x)
    for li, layer in enumerate(model.layers):
        w = np.asarray(params[li]["W"], np.float64)
        gate = (np.asarray(pre[li]) > 0).astype(np.float64) if layer.activation else \
            np.ones(np.shape(pre[li]))
        for n in range(len(x)):
            ref = np.linalg.svd(gate[n][:, None] * w.T, compute_uv=False)
            np.testing.assert_allclose(got.layers[li].singular_values[n], ref,
                                       atol=1e-5 * ref[0], rtol=1e-5)


@pytest.mark.parametrize("shape", [(7, 3, 11), (7, 11, 3)], ids=["wide", "tall"])
def test_gram_singular_values_match_a_float64_svd(shape):
    """float32 stacks take the smaller Gram in float64; a rank-deficient matrix keeps its zero."""
    a = np.random.default_rng(0).standard_normal(shape)
    a[0, 0] = a[0, 1]  # rank one lower
    ref = np.linalg.svd(a, compute_uv=False)
    got = linalg.gram_singular_values(a.astype(np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-5 * ref.max(), rtol=1e-5)
    assert got[0, -1] < 1e-6 * ref[0, 0] or shape[1] > shape[2]
    np.testing.assert_allclose(linalg.gram_singular_values(a), ref, rtol=1e-13, atol=1e-13)


def test_io_spectra_through_the_first_layer_keep_a_rank_deficiency_in_float32():
    """float32, d_1 < D (the ∂f/∂z_1·Rᵀ route): a second layer with two live units makes
    rank J = 2 < K = 3, one zero σ per input, and the rest match a float64 SVD of ∂f/∂x."""
    spec = models.ArchSpec(widths=(8, 6), num_outputs=3, b_std=0.3)
    model, params, x = _setup(spec, (4, 5), n=6)
    b = np.full(6, -1e4)
    b[:2] = 0.5
    params = (params[0], {**params[1], "b": jnp.asarray(b, jnp.float32)}, params[2])
    res = isometry.input_output_spectra(model, params, x)
    f64 = [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in params]

    def f(v):
        h = np.maximum(v.reshape(-1) @ f64[0]["W"] + f64[0]["b"], 0)
        h = np.maximum(h @ f64[1]["W"] + f64[1]["b"], 0)
        return h @ f64[2]["W"] + f64[2]["b"]
    eye = np.eye(20)
    for i, xi in enumerate(np.asarray(x, np.float64)):
        jac = np.stack([(f(xi.reshape(-1) + 1e-6 * e) - f(xi.reshape(-1) - 1e-6 * e)) / 2e-6
                        for e in eye], axis=1)
        ref = np.linalg.svd(jac, compute_uv=False)
        np.testing.assert_allclose(res.singular_values[i, :2], ref[:2], rtol=1e-4)
    assert res.summary.zeros == 1.0
