"""CReLU, φ(z) = [relu(z), relu(−z)]: the forward pass by hand, the doubled fan-in of the next
layer, every NTK engine against a float64 brute-force Jacobian contraction, the layer spectra
(the weights' singular values on every input), the diagnostics that refuse it, and a run."""

import dataclasses
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brute_force import brute_force_parts, perturbed

from ntkplast import dormancy, isometry, models, ntk, training
from ntkplast.errors import NtkplastError
from ntkplast.regularizers import resets


def test_forward_by_hand():
    model = models.build(dict(widths=[2], num_outputs=1, activation="crelu"))
    params = ({"W": jnp.array([[1.0, -1.0], [2.0, 0.5]]), "b": jnp.array([0.0, 1.0])},
              {"W": jnp.array([[1.0], [2.0], [3.0], [4.0]]), "b": jnp.array([0.5])})
    x = jnp.array([[1.0, 1.0], [-1.0, 0.0]])
    # z = x W + b: [[3, 0.5], [-1, 2]]; φ(z) = [[3, 0.5, 0, 0], [0, 2, 1, 0]]
    logits, pre, post = models.forward(model, params, x)
    np.testing.assert_allclose(pre[0], [[3.0, 0.5], [-1.0, 2.0]])
    np.testing.assert_allclose(post[0], [[3.0, 0.5, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0]])
    np.testing.assert_allclose(logits, [[3.0 + 1.0 + 0.5], [4.0 + 3.0 + 0.5]])


def test_init_doubles_the_next_fan_in():
    spec = models.ArchSpec(widths=(300, 200), num_outputs=3, activation="crelu")
    assert spec.hidden_w_std == pytest.approx(np.sqrt(2.0)) and spec.gram_target == 2.0
    assert models.ArchSpec.from_dict(spec.to_dict()) == spec
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (5,))
    assert [p["W"].shape for p in params] == [(5, 300), (600, 200), (400, 3)]
    np.testing.assert_allclose(np.std(np.asarray(params[1]["W"])), np.sqrt(2 / 600), rtol=0.02)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 5))
    pre, _ = model.intermediates(params, x)  # the He gain keeps E z² across the layers
    q1, q2 = float(jnp.mean(pre[0] ** 2)), float(jnp.mean(pre[1] ** 2))
    assert abs(q2 / q1 - 1) < 0.15
    cnn = models.build(dict(kind="cnn", widths=[3, 4], dense_widths=[5], num_outputs=2,
                            activation="crelu"))
    shapes = [p["W"].shape for p in cnn.init(jax.random.PRNGKey(0), (8, 8, 2))]
    assert shapes == [(3, 3, 2, 3), (3, 3, 6, 4), (2 * 2 * 8, 5), (10, 2)]


def test_crelu_preserves_norms_and_its_jacobian_has_orthonormal_columns(x64):
    z = jax.random.normal(jax.random.PRNGKey(0), (7,))
    np.testing.assert_allclose(jnp.linalg.norm(models.crelu(z)), jnp.linalg.norm(z))
    jac = np.asarray(jax.jacfwd(models.crelu)(z))  # 14 × 7
    np.testing.assert_allclose(jac.T @ jac, np.eye(7), atol=0)


VARIANTS = {"plain": dict(), "layer_norm": dict(layer_norm=True),
            "residual_pre_norm": dict(residual=True, layer_norm=True, pre_norm=True),
            "ntk_orthogonal": dict(parameterization="ntk", init="orthogonal")}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ntk_engines_match_float64_brute_force(x64, name):
    model = models.build(dict(widths=[6, 6], num_outputs=3, b_std=0.1, activation="crelu",
                              **VARIANTS[name]))
    assert ntk.resolve_engine(model, "auto") == "layerwise"  # through each block's vjp
    params = perturbed(model, jax.random.PRNGKey(0), (5,))
    xa = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    xb = jax.random.normal(jax.random.PRNGKey(2), (3, 5))
    both = brute_force_parts(model, params, jnp.concatenate([xa, xb]))
    for engine in ("generic", "layerwise"):
        for trace in (False, True):
            got = ntk.empirical_ntk(model, params, xa, xb, trace_outputs=trace, per_layer=True,
                                    engine=engine)
            for g, r in zip(got.parts, both, strict=True):
                r = r[:4, 4:]
                np.testing.assert_allclose(np.asarray(g), np.trace(r, axis1=2, axis2=3)
                                           if trace else r, rtol=0, atol=1e-10, err_msg=engine)
    full = sum(both)
    v = jax.random.normal(jax.random.PRNGKey(3), (7,))
    x = jnp.concatenate([xa, xb])
    np.testing.assert_allclose(np.asarray(ntk.ntk_matvec(model, params, x)(v)),
                               np.trace(full, axis1=2, axis2=3) @ np.asarray(v), atol=1e-10)


def test_cnn_ntk_matches_float64_brute_force(x64):
    model = models.build(dict(kind="cnn", widths=[3, 4], num_outputs=2, activation="crelu",
                              b_std=0.1))
    params = perturbed(model, jax.random.PRNGKey(0), (6, 6, 2))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 6, 6, 2))
    want = sum(brute_force_parts(model, params, x))
    for engine in ("generic", "layerwise"):
        got = ntk.empirical_ntk(model, params, x, trace_outputs=False, engine=engine)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-10, err_msg=engine)


def test_layer_spectra_are_the_weight_spectra(x64):
    """J_l = J_φ L_l with J_φ orthonormal columns: σ(J_l) = σ(m_W W_l) on every input; no
    structural zeros counted, no unit off (z ≠ 0)."""
    model = models.build(dict(widths=[6, 4], num_outputs=3, activation="crelu", b_std=0.1))
    params = perturbed(model, jax.random.PRNGKey(0), (5,))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
    spectra = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    for p, s in zip(params, spectra.layers, strict=True):
        sv = np.linalg.svd(np.asarray(p["W"]), compute_uv=False)
        assert s.n == len(sv)
        np.testing.assert_allclose(s.singular_values, np.broadcast_to(sv, (6, len(sv))),
                                   atol=1e-10)
        np.testing.assert_allclose(s.chi, np.full(6, np.mean(sv ** 2)), atol=1e-10)
        assert s.summary.zeros == 0 and s.summary.units_off == 0


def test_dormancy_reads_the_two_features_of_each_unit():
    model = models.build(dict(widths=[3], num_outputs=2, activation="crelu", use_bias=False))
    params = ({"W": jnp.array([[1.0, -1.0, 1.0]])}, {"W": jnp.ones((6, 2))})
    x = jnp.array([[1.0], [2.0]])  # z = (x, −x, x) > 0, < 0, > 0 on every input
    (layer,) = dormancy.unit_scores(model, params, x)
    np.testing.assert_array_equal(layer.dead_mask, [False, True, False, True, False, True])


def test_what_cannot_take_crelu_refuses():
    model = models.build(dict(widths=[8, 8], activation="crelu"))
    with pytest.raises(NtkplastError, match="outgoing weights.*activation='crelu'"):
        resets.redo(model)
    with pytest.raises(NtkplastError, match="activation='crelu'"):
        resets.continual_backprop(model)
    if importlib.util.find_spec("neural_tangents"):
        with pytest.raises(NtkplastError, match="no crelu layer"):
            ntk.to_stax(model.spec)


def test_a_crelu_run_completes(tmp_path, tiny_config):
    cfg = tiny_config(widths=(8, 8))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, activation="crelu"))
    run = training.train_run(cfg, tmp_path / "run", progress=False)
    assert run.manifest["complete"]
    assert [p["W"].shape for p in run.params(-1)] == [(64, 8), (16, 8), (16, 10)]


def test_pytorch_state_dicts_of_crelu_networks_convert(x64):
    """A PyTorch-layout CReLU CNN (``torch.cat([relu(z), relu(-z)], dim=1)``, NCHW, OIHW):
    the layer order is inferred with the doubled fan-ins and the outputs agree."""
    from jax import lax

    from ntkplast.convert.state_dicts import state_dict_to_params

    rng = np.random.default_rng(0)
    sd = {"c1.weight": rng.standard_normal((3, 2, 3, 3)), "c1.bias": rng.standard_normal(3),
          "fc1.weight": rng.standard_normal((5, 6 * 2 * 2)), "fc1.bias": rng.standard_normal(5),
          "fc2.weight": rng.standard_normal((4, 10)), "fc2.bias": rng.standard_normal(4)}

    def cat(h):
        return jnp.concatenate([jax.nn.relu(h), jax.nn.relu(-h)], axis=1)

    def torch_forward(x):  # NCHW
        h = lax.conv_general_dilated(x, jnp.asarray(sd["c1.weight"]), (1, 1), "SAME",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = cat(h + sd["c1.bias"][None, :, None, None])
        n, c, hh, ww = h.shape
        h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).mean(axis=(3, 5)).reshape(n, -1)
        h = cat(h @ sd["fc1.weight"].T + sd["fc1.bias"])
        return h @ sd["fc2.weight"].T + sd["fc2.bias"]

    spec, params = state_dict_to_params(sd, input_shape=(4, 4, 2), activation="crelu")
    assert spec.widths == (3,) and spec.dense_widths == (5,)
    x = jnp.asarray(rng.standard_normal((3, 2, 4, 4)))
    np.testing.assert_allclose(models.build(spec).apply(params, jnp.transpose(x, (0, 2, 3, 1))),
                               torch_forward(x), atol=1e-10)
