"""Empirical NTK engines against neural-tangents, closed forms and an independent Jacobian."""

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import models, ntk
from ntkplast.errors import NtkplastError

MLP_SPECS = [
    models.ArchSpec(widths=(), num_outputs=3, b_std=0.5),
    models.ArchSpec(widths=(9,), num_outputs=3, parameterization="ntk", b_std=0.3),
    models.ArchSpec(widths=(8, 6), num_outputs=2, activation="tanh", use_bias=False),
    models.ArchSpec(widths=(7, 5, 6), num_outputs=4, activation="erf", parameterization="ntk",
                    b_std=0.2, use_bias=True),
    models.ArchSpec(widths=(16, 4, 8, 5), num_outputs=3, b_std=0.1, parameterization="ntk",
                    use_bias=False),
]
CNN_SPEC = models.ArchSpec(kind="cnn", widths=(4,), num_outputs=3, b_std=0.1)


pytestmark = pytest.mark.usefixtures("x64")  # float64 brute-force references


def _setup(spec, input_shape=(5,), n1=6, n2=4, seed=0):
    model = models.build(spec)
    k0, k1, k2 = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = model.init(k0, input_shape)
    x1 = jax.random.normal(k1, (n1,) + input_shape)
    x2 = jax.random.normal(k2, (n2,) + input_shape)
    return model, params, x1, x2


def _brute_force(model, params, x1, x2, trace):
    """Independent reference: the dense N·K × P Jacobian of the raveled parameters."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    @jax.jit
    def jac(x):
        return jax.jacfwd(lambda v: model.apply(unravel(v), x))(flat)  # N × K × P
    j1, j2 = np.asarray(jac(x1)), np.asarray(jac(x2))
    full = np.einsum("nkp,mjp->nmkj", j1, j2)
    return np.einsum("nmkk->nm", full) if trace else full


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("trace", [True, False])
@pytest.mark.parametrize("spec", MLP_SPECS, ids=lambda s: f"w{s.widths}-{s.parameterization}")
def test_layerwise_and_generic_match_brute_force(spec, trace):
    model, params, x1, x2 = _setup(spec)
    ref = _brute_force(model, params, x1, x2, trace)
    lw = ntk.empirical_ntk(model, params, x1, x2, trace_outputs=trace, engine="layerwise",
                           per_layer=True)
    gen = ntk.empirical_ntk(model, params, x1, x2, trace_outputs=trace, engine="generic",
                            per_layer=True)
    assert lw.total.shape == ref.shape
    assert _rel(lw.total, ref) <= 1e-10
    assert _rel(gen.total, ref) <= 1e-10
    assert len(lw.parts) == len(model.layers)
    for a, b in zip(lw.parts, gen.parts, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(sum(lw.parts), lw.total, rtol=1e-12)


def test_generic_cnn_matches_brute_force():
    model, params, x1, x2 = _setup(CNN_SPEC, input_shape=(8, 8, 1), n1=3, n2=2)
    for trace in (True, False):
        k = ntk.empirical_ntk(model, params, x1, x2, trace_outputs=trace, engine="generic")
        assert _rel(k, _brute_force(model, params, x1, x2, trace)) <= 1e-10


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_linear_model_closed_form(parameterization):
    """f = m_W x W + m_b b: Θ(x, x')_{kk'} = (m_W² x·x' + m_b²) δ_kk'."""
    spec = models.ArchSpec(widths=(), num_outputs=3, b_std=0.7, w_std=1.3, readout_w_std=1.3,
                           parameterization=parameterization)
    model, params, x1, x2 = _setup(spec, input_shape=(2, 3))
    m_w, m_b = models.multipliers(model, model.layers[0], params[0]["W"])
    per_output = m_w ** 2 * x1.reshape(6, -1) @ x2.reshape(4, -1).T + m_b ** 2
    for engine in ("layerwise", "generic"):
        traced = ntk.empirical_ntk(model, params, x1, x2, engine=engine)
        full = ntk.empirical_ntk(model, params, x1, x2, trace_outputs=False, engine=engine)
        np.testing.assert_allclose(traced, 3 * per_output, rtol=1e-12)
        np.testing.assert_allclose(full, per_output[:, :, None, None] * np.eye(3), rtol=1e-12,
                                   atol=1e-14)


@pytest.mark.parametrize("engine", ["layerwise", "generic"])
def test_symmetric_psd_and_default_x2(engine):
    model, params, x1, _ = _setup(MLP_SPECS[3], n1=9)
    k = ntk.empirical_ntk(model, params, x1, engine=engine)
    np.testing.assert_allclose(k, ntk.empirical_ntk(model, params, x1, x1, engine=engine),
                               rtol=1e-12)
    np.testing.assert_allclose(k, k.T, rtol=1e-12)
    assert np.linalg.eigvalsh(np.asarray(k)).min() >= -1e-10 * np.abs(k).max()
    full = ntk.empirical_ntk(model, params, x1, trace_outputs=False, engine=engine)
    flat = np.asarray(full).transpose(0, 2, 1, 3).reshape(9 * 4, 9 * 4)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-12, atol=1e-14)
    assert np.linalg.eigvalsh(flat).min() >= -1e-10 * np.abs(flat).max()


def test_symmetric_tiling_matches_generic(monkeypatch, assembly):
    """x2=None: Grams from upper tiles or strips only (small tiles forced, uneven split) are
    exact."""
    monkeypatch.setattr(ntk._tiles, "TRACED_TILE_ROWS", 3)
    monkeypatch.setattr(ntk._tiles, "FULL_TILE_ROWS", 9)
    model, params, x1, _ = _setup(MLP_SPECS[3], n1=11)
    for trace in (True, False):
        lw = ntk.empirical_ntk(model, params, x1, trace_outputs=trace, engine="layerwise",
                               per_layer=True)
        gen = ntk.empirical_ntk(model, params, x1, trace_outputs=trace, engine="generic",
                                per_layer=True)
        for a, b in zip(lw.parts, gen.parts, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13 * np.abs(b).max())
        other = jax.tree_util.tree_map(lambda a: 0.9 * a, params)  # inside lax.map as well
        series = ntk.series_ntk(model, [params, other], x1, trace_outputs=trace)
        for got, p in zip(series, (params, other), strict=True):
            want = ntk.empirical_ntk(model, p, x1, trace_outputs=trace, engine="generic")
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13 * np.abs(want).max())


@pytest.mark.parametrize("engine,batch_size", [("layerwise", 3), ("layerwise", 7), ("generic", 2)])
def test_blocked_equals_unblocked(engine, batch_size):
    """Blocks that do not divide N (zero padding), one block, and b = 2 for the generic path."""
    model, params, x1, x2 = _setup(MLP_SPECS[1], n1=7, n2=5)
    for trace in (True, False):
        for other in (None, x2):
            one = ntk.empirical_ntk(model, params, x1, other, trace_outputs=trace,
                                    engine=engine, per_layer=True)
            blk = ntk.empirical_ntk(model, params, x1, other, trace_outputs=trace,
                                    engine=engine, per_layer=True, block_size=batch_size)
            np.testing.assert_allclose(blk.total, one.total, rtol=1e-12)
            for a, b in zip(blk.parts, one.parts, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_series_matches_single_checkpoints():
    model, _, x1, x2 = _setup(MLP_SPECS[2])
    series = [model.init(jax.random.PRNGKey(s), (5,)) for s in range(3)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *series)
    for trace in (True, False):
        out = ntk.series_ntk(model, series, x1, x2, trace_outputs=trace, per_layer=True)
        out_stacked = ntk.series_ntk(model, stacked, x1, x2, trace_outputs=trace)
        assert out.total.shape[0] == 3 and len(out.parts) == len(model.layers)
        for t, p in enumerate(series):
            single = ntk.empirical_ntk(model, p, x1, x2, trace_outputs=trace, per_layer=True)
            np.testing.assert_allclose(out.total[t], single.total, rtol=1e-12)
            np.testing.assert_allclose(out_stacked[t], single.total, rtol=1e-12)
            for a, b in zip(out.parts, single.parts, strict=True):
                np.testing.assert_allclose(a[t], b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec,shape,engine", [
    (MLP_SPECS[3], (5,), "layerwise"), (MLP_SPECS[4], (5,), "layerwise"),
    (MLP_SPECS[0], (5,), "layerwise"), (MLP_SPECS[3], (5,), "generic"),
    (CNN_SPEC, (8, 8, 1), "generic")], ids=["mlp3", "mlp4-nobias", "linear", "generic", "cnn"])
def test_ntk_matvec_matches_dense(spec, shape, engine):
    model, params, x1, _ = _setup(spec, input_shape=shape, n1=5)
    key = jax.random.PRNGKey(3)
    k = ntk.empirical_ntk(model, params, x1)
    v = jax.random.normal(key, (5,))
    mv = ntk.ntk_matvec(model, params, x1, engine=engine)
    np.testing.assert_allclose(mv(v), k @ v, rtol=1e-10)
    full = ntk.empirical_ntk(model, params, x1, trace_outputs=False)
    w = jax.random.normal(key, (5, spec.num_outputs))
    mv = ntk.ntk_matvec(model, params, x1, trace_outputs=False, engine=engine)
    np.testing.assert_allclose(mv(w), jnp.einsum("nmkj,mj->nk", full, w), rtol=1e-10)
    if engine == "layerwise":
        np.testing.assert_allclose(ntk.ntk_diagonal(model, params, x1), np.diag(k), rtol=1e-12)


def test_bad_input_raises_named_errors():
    model, params, x1, x2 = _setup(MLP_SPECS[1])
    cases = [
        (dict(params=params[:1]), "params"),
        (dict(params=(params[0], {"W": params[1]["W"]})), r"params\[1\]"),
        (dict(params=(params[0], {"W": params[1]["W"][:, :2], "b": params[1]["b"][:2]})),
         r"params\[1\]\['W'\]"),
        (dict(x1=x1[:, :4]), "x1"),
        (dict(x1=x1[0]), "x1"),
        (dict(x2=x2[:, :4]), "x2"),
        (dict(x1=x1[:0]), "x1: the probe set is empty"),
        (dict(x2=x2[:0]), "x2: the probe set is empty"),
        (dict(x1=x1.at[2, 1].set(jnp.nan)), "x1: contains NaN"),
        (dict(x2=x2.at[0, 0].set(jnp.inf)), "x2: contains NaN"),
        (dict(params=(params[0], {**params[1], "b": params[1]["b"].at[0].set(jnp.nan)})),
         r"params\[1\]\['b'\]: contains NaN or Inf"),
        (dict(engine="fast"), "engine"),
    ]
    base = dict(params=params, x1=x1, x2=x2)
    for change, match in cases:
        kw = {**base, **change}
        with pytest.raises(NtkplastError, match=match):
            ntk.empirical_ntk(model, kw["params"], kw["x1"], kw["x2"],
                              engine=kw.get("engine", "auto"))
    cnn, cparams, cx, _ = _setup(CNN_SPEC, input_shape=(8, 8, 1), n1=2)
    with pytest.raises(NtkplastError, match="x1: a cnn takes images"):
        ntk.empirical_ntk(cnn, cparams, cx.reshape(2, -1))
    with pytest.raises(NtkplastError, match="block_size"):
        ntk.empirical_ntk(model, params, x1, block_size=0)


# ---------------------------------------------------------------- neural-tangents (full env)

NT_ENGINES = ["layerwise", "generic", "nt:ntk_vector_products", "nt:structured_derivatives"]


@pytest.mark.nt
@pytest.mark.parametrize("trace", [True, False])
@pytest.mark.parametrize("spec", MLP_SPECS[1:], ids=lambda s: f"w{s.widths}-{s.parameterization}")
def test_engines_match_nt_jacobian_contraction(spec, trace):
    model, params, x1, x2 = _setup(spec)
    for other in (x2, None):
        ref = ntk.empirical_ntk(model, params, x1, other, trace_outputs=trace,
                                engine="nt:jacobian_contraction")
        for engine in NT_ENGINES:
            k = ntk.empirical_ntk(model, params, x1, other, trace_outputs=trace, engine=engine)
            assert k.shape == ref.shape
            assert _rel(k, ref) <= 1e-10, engine


@pytest.mark.nt
def test_per_layer_parts_match_nt():
    model, params, x1, x2 = _setup(MLP_SPECS[3])
    ref = ntk.empirical_ntk(model, params, x1, x2, per_layer=True,
                            engine="nt:jacobian_contraction")
    lw = ntk.empirical_ntk(model, params, x1, x2, per_layer=True, engine="layerwise")
    for a, b in zip(lw.parts, ref.parts, strict=True):
        assert _rel(a, b) <= 1e-10


@pytest.mark.nt
@pytest.mark.parametrize("trace", [True, False])
def test_cnn_engines_match_nt(trace):
    model, params, x1, x2 = _setup(CNN_SPEC, input_shape=(8, 8, 1), n1=3, n2=2)
    ref = ntk.empirical_ntk(model, params, x1, x2, trace_outputs=trace,
                            engine="nt:jacobian_contraction")
    for engine in ("layerwise", "generic", "nt:structured_derivatives"):
        k = ntk.empirical_ntk(model, params, x1, x2, trace_outputs=trace, engine=engine)
        assert _rel(k, ref) <= 1e-10, engine


@pytest.mark.nt
def test_kernel_regime_convergence():
    """NTK-param ReLU MLP: ‖Θ_emp − Θ_∞‖/‖Θ_∞‖ shrinks roughly like 1/√width (Jacot 2018)."""
    widths, seeds = (64, 256, 1024), range(4)
    x = jax.random.normal(jax.random.PRNGKey(9), (6, 5))
    errs = []
    for w in widths:
        spec = models.ArchSpec(widths=(w, w), num_outputs=2, parameterization="ntk", b_std=0.1)
        model = models.build(spec)
        inf = ntk.infinite_width_ntk(model, x)
        errs.append(np.mean([np.linalg.norm(ntk.empirical_ntk(
            model, model.init(jax.random.PRNGKey(s), (5,)), x) - inf) / np.linalg.norm(inf)
            for s in seeds]))
    assert errs[0] > errs[1] > errs[2]
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.8 < slope < -0.3, (errs, slope)
    full = ntk.infinite_width_ntk(model, x, trace_outputs=False)
    np.testing.assert_allclose(np.einsum("nmkk->nm", full), inf, rtol=1e-12)


def test_module_constants():
    assert set(ntk.ENGINES) >= {"auto", "layerwise", "generic", "nt:structured_derivatives"}
    assert ntk.MEMORY_BUDGET_BYTES > 0 and math.log2(ntk.MEMORY_BUDGET_BYTES) > 20
