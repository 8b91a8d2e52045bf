"""The structured (layerwise) engine on CNNs against a float64 brute-force Jacobian contraction.

The reference ravels every parameter and contracts the dense N·K × P Jacobian of jacfwd; the
engine never forms it (per-example conv weight gradients from input patches, Dense factors).
"""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import models, ntk

pytestmark = pytest.mark.usefixtures("x64")

CNN_SPECS = {
    "one-block": dict(widths=(4,), b_std=0.1),
    "two-blocks-dense": dict(widths=(3, 5), dense_widths=(6,), activation="tanh", b_std=0.2),
    "k5-ntk-nobias-leaky": dict(widths=(4,), kernel_size=5, parameterization="ntk",
                                use_bias=False, activation="leaky_relu", init="orthogonal"),
    "k2-even-padding": dict(widths=(4, 3), kernel_size=2, b_std=0.1),
    "residual": dict(widths=(4, 4), residual=True, b_std=0.1),
    "pre-norm-residual": dict(widths=(4, 4), residual=True, layer_norm=True, pre_norm=True),
    "layernorm": dict(widths=(4, 6), layer_norm=True),
    "maxmin-layernorm-no-affine": dict(widths=(4, 6), activation="maxmin", layer_norm=True,
                                       layer_norm_affine=False),
}


def _setup(kw, n1=4, n2=3, shape=(8, 8, 2)):
    model = models.build(models.ArchSpec(kind="cnn", num_outputs=3, **kw))
    k0, k1, k2 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = model.init(k0, shape)
    # nonzero LayerNorm γ, β away from their init, so their factors are exercised generically
    params = tuple({k: v + 0.3 * jax.random.normal(jax.random.fold_in(k0, i), v.shape)
                    if k.startswith("ln_") else v for k, v in p.items()}
                   for i, p in enumerate(params))
    return (model, params, jax.random.normal(k1, (n1,) + shape),
            jax.random.normal(k2, (n2,) + shape))


def _brute_parts(model, params, x1, x2):
    """Per-layer full kernels from the dense Jacobian of the raveled parameters (N × N' × K × K)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    jac = jax.jit(jax.jacfwd(lambda v, x: model.apply(unravel(v), x)))
    j1, j2 = np.asarray(jac(flat, x1)), np.asarray(jac(flat, x2))
    sizes = np.cumsum([0] + [jax.flatten_util.ravel_pytree(p)[0].size for p in params])
    return [np.einsum("nkp,mjp->nmkj", j1[..., lo:hi], j2[..., lo:hi])
            for lo, hi in zip(sizes[:-1], sizes[1:], strict=True)]


@pytest.fixture(params=["per-example", "positions"])
def route(request, monkeypatch, fresh_kernels):
    """Every conv layer contracted per example, or over position pairs (forced; compiled
    kernels of the other route are not reused)."""
    monkeypatch.setattr(ntk._factors, "positions_cheaper",
                        lambda *args: request.param == "positions")
    return request.param


@pytest.mark.parametrize("name", list(CNN_SPECS))
def test_conv_engine_matches_brute_force(name, route):
    model, params, x1, x2 = _setup(CNN_SPECS[name])
    assert ntk.resolve_engine(model, "auto") == "layerwise"
    for other in (x2, None):  # x2 ≠ x1, and the symmetric x2 = x1 path
        full = _brute_parts(model, params, x1, x1 if other is None else other)
        scale = max(np.abs(r).max() for r in full)
        for trace in (True, False):
            ref = [np.einsum("nmkk->nm", r) for r in full] if trace else full
            out = ntk.empirical_ntk(model, params, x1, other, trace_outputs=trace,
                                    per_layer=True)
            assert len(out.parts) == len(ref)
            for got, want in zip(out.parts, ref, strict=True):
                assert np.abs(np.asarray(got) - want).max() <= 1e-10 * scale
            assert np.abs(np.asarray(out.total) - sum(ref)).max() <= 1e-10 * scale
    traced = ntk.empirical_ntk(model, params, x1)  # the summed (not per-layer) path
    assert np.abs(np.asarray(traced) - sum(np.einsum("nmkk->nm", r) for r in full)
                  ).max() <= 1e-10 * scale


def test_conv_engine_symmetric_tiles(monkeypatch, route, assembly):
    """x2 = x1 assembled from upper tiles or strips (small tiles forced, the last one
    overlapping; strips of uneven size). Conv layers over position pairs always take square
    tiles (their blocks are sized for them), so that route runs tiles under both."""
    monkeypatch.setattr(ntk._tiles, "TRACED_TILE_ROWS", 2)
    monkeypatch.setattr(ntk._tiles, "FULL_TILE_ROWS", 6)
    model, params, x1, _ = _setup(CNN_SPECS["two-blocks-dense"], n1=7)
    assert 1 < ntk._tiles.tile_size(7, 3) < 7 and 1 < ntk._tiles.tile_size(7, 1) < 7
    full = _brute_parts(model, params, x1, x1)
    scale = max(np.abs(r).max() for r in full)
    for trace in (True, False):
        ref = [np.einsum("nmkk->nm", r) for r in full] if trace else full
        out = ntk.empirical_ntk(model, params, x1, trace_outputs=trace, per_layer=True)
        for got, want in zip(out.parts, ref, strict=True):
            assert np.abs(np.asarray(got) - want).max() <= 1e-10 * scale


def test_conv_engine_blocked_and_series():
    """Blocks over probe points and a checkpoint series give the one-call kernel."""
    model, params, x1, _ = _setup(CNN_SPECS["two-blocks-dense"], n1=7)
    one = ntk.empirical_ntk(model, params, x1, trace_outputs=False)
    blocked = ntk.empirical_ntk(model, params, x1, trace_outputs=False, block_size=3)
    np.testing.assert_allclose(blocked, one, rtol=1e-12, atol=1e-14)
    other = jax.tree_util.tree_map(lambda a: 0.9 * a, params)
    series = ntk.series_ntk(model, [params, other], x1)
    np.testing.assert_allclose(series[1], ntk.empirical_ntk(model, other, x1), rtol=1e-12)


@pytest.mark.parametrize("trace", [True, False], ids=["traced", "full"])
def test_conv_matvec_and_diagonal(trace):
    model, params, x1, _ = _setup(CNN_SPECS["layernorm"], n1=5)
    k = np.asarray(ntk.empirical_ntk(model, params, x1, trace_outputs=trace, engine="generic"))
    v = jax.random.normal(jax.random.PRNGKey(3), (5,) if trace else (5, 3))
    mv = ntk.ntk_matvec(model, params, x1, trace_outputs=trace)  # auto: layerwise factors
    want = k @ v if trace else np.einsum("nmkj,mj->nk", k, v)
    np.testing.assert_allclose(mv(v), want, rtol=1e-10)
    if trace:
        np.testing.assert_allclose(ntk.ntk_diagonal(model, params, x1), np.diag(k), rtol=1e-10)


def test_auto_block_size_counts_conv_gradients(monkeypatch):
    """The automatic block size bounds the per-example conv gradients, not just the widths."""
    model, params, x1, _ = _setup(CNN_SPECS["two-blocks-dense"], n1=6)
    x1 = jnp.asarray(x1, jnp.float32)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    grads = 3 * (3 * 3 * 2 * 3 + 3 * 3 * 3 * 5)  # K · k²·C_in·C_out over the two conv layers
    monkeypatch.setattr(ntk, "MEMORY_BUDGET_BYTES", 2 * 3 * grads * 4)
    b = ntk._blocking.auto_block(model, "layerwise", params, x1, 6, True, False)
    assert b is not None and b <= 3


def test_positions_route_is_chosen_on_small_maps_only():
    """Contraction over position pairs where FLOPs favour it (a 2 × 2 map), per example on a
    32 × 32 map and whenever a block's position pairs exceed the entry bound."""
    small = ntk._factors.Pairing(100, 100, 100, 100)
    assert ntk._factors.positions_cheaper(small, 4, 9 * 32, 64, 10, trace=False)
    assert not ntk._factors.positions_cheaper(small, 1024, 9 * 32, 64, 10, trace=False)
    assert not ntk._factors.positions_cheaper(small, 1024, 27, 32, 10, trace=True)
    huge = ntk._factors.Pairing(100, 100, 10_000, 10_000)
    assert not ntk._factors.positions_cheaper(huge, 4, 9 * 32, 64, 10, trace=False)
    # end to end: a 4 × 4 input pooled to 2 × 2 puts the second conv layer over positions
    model, params, x1, x2 = _setup(dict(widths=(3, 8)), n1=6, n2=5, shape=(4, 4, 2))
    pairing = ntk._factors.Pairing(6, 5, 6, 5)
    factors = ntk._factors.layer_factors(model, params, x1, False, pairing)
    assert [f.f is not None and f.f.ndim == 3 for f in factors[1]] == [True]
    full = _brute_parts(model, params, x1, x2)
    out = ntk.empirical_ntk(model, params, x1, x2, trace_outputs=False, per_layer=True)
    for got, want in zip(out.parts, full, strict=True):
        assert np.abs(np.asarray(got) - want).max() <= 1e-10 * np.abs(full[1]).max()
