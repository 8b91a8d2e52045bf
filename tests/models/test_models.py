"""Models: shapes, parameterizations and initialisations against closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import models
from ntkplast.errors import NtkplastError


def _linear_jacobian_svals(model, params, x):
    jac = jax.jacobian(lambda v: model.apply(params, v[None])[0])(x)
    return np.linalg.svd(np.asarray(jac).reshape(jac.shape[0], -1), compute_uv=False)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize("depth", [1, 3, 6])
def test_orthogonal_linear_network_is_isometric(parameterization, depth):
    """A deep linear net with orthogonal weights has every input-output singular value σ_w^L."""
    width, scale = 32, 1.3
    spec = models.ArchSpec(widths=(width,) * depth, num_outputs=width, activation="linear",
                           init="orthogonal", w_std=scale, readout_w_std=scale,
                           parameterization=parameterization, use_bias=False)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(depth), (width,))
    svals = _linear_jacobian_svals(model, params, jnp.ones(width))
    np.testing.assert_allclose(svals, scale ** (depth + 1), rtol=2e-5)


def test_delta_orthogonal_conv_is_isometric():
    """Delta-orthogonal conv layer (Xiao et al. 2018): the linear map is σ_w times an isometry."""
    spec = models.ArchSpec(kind="cnn", widths=(4,), num_outputs=3, activation="linear",
                           init="orthogonal", w_std=1.0, use_bias=False)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (6, 6, 4))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 6, 4))
    layer = model.layers[0]
    z = models.layer_pre_activation(model, layer, params[0], x)
    np.testing.assert_allclose(np.linalg.norm(z), np.linalg.norm(x), rtol=1e-5)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_parameterizations_give_the_same_function(init):
    """NTK and standard parameterization define the same function distribution: with the
    same key, the effective weights m_W·W agree exactly, hence the logits."""
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 7))
    outs = []
    for par in ("standard", "ntk"):
        spec = models.ArchSpec(widths=(16, 8), num_outputs=3, parameterization=par, init=init,
                               b_std=0.1)
        model = models.build(spec)
        outs.append(model.apply(model.init(jax.random.PRNGKey(0), (7,)), x))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def test_gaussian_init_variance():
    """Standard Gaussian init: Var W = σ_w²/fan_in (He for relu)."""
    model = models.build(models.ArchSpec(widths=(2000,), num_outputs=1))
    w = np.asarray(model.init(jax.random.PRNGKey(0), (500,))[0]["W"])
    assert abs(w.var() * 500 / 2.0 - 1) < 0.01


def test_cnn_shapes_and_intermediates():
    spec = models.ArchSpec(kind="cnn", widths=(4, 6), dense_widths=(12,), num_outputs=10)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (8, 8, 1))
    assert [p["W"].shape for p in params] == [(3, 3, 1, 4), (3, 3, 4, 6), (24, 12), (12, 10)]
    x = jnp.ones((3, 8, 8, 1))
    pre, post = model.intermediates(params, x)
    assert model.apply(params, x).shape == (3, 10)
    assert [z.shape for z in pre] == [(3, 8, 8, 4), (3, 4, 4, 6), (3, 12), (3, 10)]
    assert len(post) == 3
    np.testing.assert_array_equal(post[0], jax.nn.relu(pre[0]))


def test_mlp_flattens_images():
    model = models.build(models.ArchSpec(widths=(5,), num_outputs=2))
    params = model.init(jax.random.PRNGKey(0), (4, 4, 1))
    assert params[0]["W"].shape == (16, 5)
    assert model.apply(params, jnp.ones((2, 4, 4, 1))).shape == (2, 2)


def test_spec_round_trip_and_errors():
    spec = models.ArchSpec(widths=(3, 4), activation="tanh", parameterization="ntk")
    assert models.ArchSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(NtkplastError, match="unknown key"):
        models.ArchSpec.from_dict({"widht": [3]})
    with pytest.raises(NtkplastError, match="activation"):
        models.ArchSpec(activation="swish")
    with pytest.raises(NtkplastError, match="widths"):
        models.ArchSpec.from_dict({"widths": "abc"})
    with pytest.raises(NtkplastError, match="layers"):
        model = models.build(spec)
        model.apply(model.init(jax.random.PRNGKey(0), (3,))[:1], jnp.ones((1, 3)))


def test_he_default_scale():
    assert models.ArchSpec().hidden_w_std == pytest.approx(math.sqrt(2))
    assert models.ArchSpec(activation="tanh").hidden_w_std == 1.0


@pytest.mark.nt
@pytest.mark.parametrize("spec", [
    models.ArchSpec(widths=(16, 8), num_outputs=3, parameterization="ntk", b_std=0.1),
    models.ArchSpec(widths=(16, 8), num_outputs=3, parameterization="standard", b_std=0.1),
    models.ArchSpec(widths=(12,), num_outputs=2, activation="erf", init="orthogonal",
                    use_bias=False),
    models.ArchSpec(widths=(12,), num_outputs=2, activation="tanh", parameterization="ntk"),
    models.ArchSpec(kind="cnn", widths=(4, 5), dense_widths=(7,), num_outputs=3, b_std=0.2,
                    parameterization="ntk"),
    models.ArchSpec(kind="cnn", widths=(3,), num_outputs=2, activation="gelu"),
], ids=["mlp-ntk", "mlp-standard", "erf-orth-nobias", "tanh", "cnn-ntk", "cnn-gelu"])
def test_stax_apply_agrees(spec):
    """ntkplast's apply and the stax triple's apply_fn agree on the same parameters."""
    from ntkplast.ntk import _stax as stax_bridge

    model = models.build(spec)
    shape = (8, 8, 1) if spec.kind == "cnn" else (6,)
    params = model.init(jax.random.PRNGKey(0), shape)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, *shape))
    _, apply_fn, kernel_fn = stax_bridge.to_stax(spec)
    got = apply_fn(stax_bridge.to_stax_params(model, params), x)
    np.testing.assert_allclose(got, model.apply(params, x), rtol=1e-5, atol=1e-6)
    assert kernel_fn(x, None, "ntk").shape == (4, 4)


@pytest.mark.nt
def test_stax_init_matches_parameter_shapes():
    from ntkplast.ntk import _stax as stax_bridge

    spec = models.ArchSpec(kind="cnn", widths=(4,), dense_widths=(6,), num_outputs=3)
    init_fn, _, _ = stax_bridge.to_stax(spec)
    _, stax_params = init_fn(jax.random.PRNGKey(0), (1, 8, 8, 1))
    model = models.build(spec)
    ours = stax_bridge.to_stax_params(model, model.init(jax.random.PRNGKey(0), (8, 8, 1)))
    assert jax.tree_util.tree_map(jnp.shape, tuple(stax_params)) == \
        jax.tree_util.tree_map(jnp.shape, ours)
