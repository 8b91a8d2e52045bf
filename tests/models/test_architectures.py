"""Near-isometric and modern blocks: GroupSort/MaxMin, leaky ReLU, LayerNorm, residual skips.

Closed forms (orthogonal GroupSort layers are exactly isometric, a zeroed residual branch is the
identity, LayerNorm's Jacobian has rank d − 1) and every NTK engine against a float64
brute-force Jacobian contraction over the flattened parameters.
"""

from __future__ import annotations

import importlib.util
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brute_force import brute_force_parts, perturbed
from trees import assert_trees_equal

from ntkplast import dormancy, isometry, models, ntk
from ntkplast.errors import NtkplastError
from ntkplast.regularizers import resets

NEW_BLOCKS = {
    "leaky_relu": dict(activation="leaky_relu", negative_slope=0.2),
    "groupsort4": dict(activation="groupsort", group_size=4),
    "maxmin": dict(activation="maxmin"),
    "layer_norm": dict(layer_norm=True),
    "layer_norm_plain": dict(layer_norm=True, layer_norm_affine=False),
    "residual": dict(residual=True),
    "residual_post_norm": dict(residual=True, layer_norm=True, activation="maxmin"),
    "residual_pre_norm": dict(residual=True, layer_norm=True, pre_norm=True),
    "pre_norm_ntk_nobias": dict(residual=True, layer_norm=True, pre_norm=True, use_bias=False,
                                parameterization="ntk"),
}


@pytest.fixture(autouse=True)
def _float64(x64):
    """Every test here compares against float64 references."""


@pytest.mark.parametrize("name", sorted(NEW_BLOCKS))
def test_engines_match_float64_brute_force(name):
    model = models.build(dict(widths=[8, 8, 8], num_outputs=3, b_std=0.1, **NEW_BLOCKS[name]))
    params = perturbed(model, jax.random.PRNGKey(0), (5,))
    xa = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    xb = jax.random.normal(jax.random.PRNGKey(2), (3, 5))
    both = brute_force_parts(model, params, jnp.concatenate([xa, xb]))
    want, want_sym = [w[:4, 4:] for w in both], [w[:4, :4] for w in both]
    engines = ["layerwise", "generic"]
    if name == "layer_norm" and importlib.util.find_spec("neural_tangents"):
        engines.append("nt:structured_derivatives")  # neural-tangents on the same function
    for engine, trace, (x2, ref) in itertools.product(engines, (False, True),
                                                      ((xb, want), (None, want_sym))):
        got = ntk.empirical_ntk(model, params, xa, x2, trace_outputs=trace, per_layer=True,
                                engine=engine)
        refs = [np.trace(r, axis1=2, axis2=3) if trace else r for r in ref]
        assert len(got.parts) == len(refs)
        for g, r in zip(got.parts, refs):
            np.testing.assert_allclose(np.asarray(g), r, rtol=0, atol=1e-10, err_msg=engine)
        np.testing.assert_allclose(np.asarray(got.total), sum(refs), rtol=0, atol=1e-10)


@pytest.mark.parametrize("group_size", [2, 4])
def test_groupsort_readout_shortcut_matches_brute_force(group_size):
    """The traced kernel's last GroupSort layer from d·g columns (R_g[rank_i] rows), not the
    K·d backward signals: equal to the float64 brute force (two equal inputs), both kernel paths and
    the matrix-free operator."""
    model = models.build(dict(widths=[8, 8], num_outputs=6, activation="groupsort",
                              group_size=group_size, b_std=0.1))
    params = perturbed(model, jax.random.PRNGKey(7), (5,))
    x = jax.random.normal(jax.random.PRNGKey(8), (6, 5))
    x = x.at[5].set(x[4])  # two equal inputs
    factors = ntk._layerwise.layer_factors(model, params, x, trace=True)
    assert factors[1][0].g.shape == (6, 8 * group_size)  # the shortcut, not 6 · 8 columns
    both = brute_force_parts(model, params, x)
    ref = [np.trace(r, axis1=2, axis2=3) for r in both]
    for x2, cut in ((None, slice(None)), (x[3:], slice(3, None))):
        got = ntk.empirical_ntk(model, params, x, x2, per_layer=True, engine="layerwise")
        for g, r in zip(got.parts, ref, strict=True):
            np.testing.assert_allclose(np.asarray(g), r[:, cut], rtol=0, atol=1e-10)
    v = jax.random.normal(jax.random.PRNGKey(9), (6,))
    np.testing.assert_allclose(np.asarray(ntk.ntk_matvec(model, params, x)(v)),
                               sum(ref) @ np.asarray(v), atol=1e-10)


@pytest.mark.parametrize("name", ["groupsort4", "layer_norm", "residual_pre_norm"])
def test_matrix_free_operator_matches_brute_force(name):
    model = models.build(dict(widths=[8, 8], num_outputs=3, **NEW_BLOCKS[name]))
    params = perturbed(model, jax.random.PRNGKey(3), (5,))
    x = jax.random.normal(jax.random.PRNGKey(4), (6, 5))
    full = sum(brute_force_parts(model, params, x))
    traced = np.trace(full, axis1=2, axis2=3)
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (6,)))
    np.testing.assert_allclose(np.asarray(ntk.ntk_matvec(model, params, x)(jnp.asarray(v))),
                               traced @ v, atol=1e-10)
    vk = np.asarray(jax.random.normal(jax.random.PRNGKey(6), (6, 3)))
    got = ntk.ntk_matvec(model, params, x, trace_outputs=False)(jnp.asarray(vk))
    np.testing.assert_allclose(np.asarray(got), np.einsum("nmkj,mj->nk", full, vk), atol=1e-10)
    np.testing.assert_allclose(np.asarray(ntk.ntk_diagonal(model, params, x)), np.diag(traced),
                               atol=1e-10)


@pytest.mark.parametrize("activation", ["groupsort", "maxmin"])
def test_orthogonal_groupsort_layers_are_exact_isometries(activation):
    d = 8
    model = models.build(dict(widths=[d, d, d], num_outputs=d, activation=activation,
                              group_size=4, init="orthogonal", w_std=1.0, readout_w_std=1.0))
    params = model.init(jax.random.PRNGKey(0), (d,))
    x = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (16, d))
    spectra = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    for layer in spectra.layers:  # every σ of every layer Jacobian on every input is 1
        np.testing.assert_allclose(layer.singular_values, 1.0, atol=1e-12)
        np.testing.assert_allclose(layer.chi, 1.0, atol=1e-12)
        np.testing.assert_allclose(layer.mean_sigma4, 1.0, atol=1e-12)
        assert layer.exact and layer.summary.units_off == 0
    io = isometry.input_output_spectra(model, params, x)
    np.testing.assert_allclose(io.singular_values, 1.0, atol=1e-12)  # ∂f/∂x is orthogonal
    jac = jax.vmap(jax.jacrev(lambda xi: model.apply(params, xi[None])[0]))(x)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", jac, jac),
                               np.broadcast_to(np.eye(d), (16, d, d)), atol=1e-12)


def test_groupsort_sorts_groups_descending_and_maxmin_is_group_two():
    z = jnp.array([[1.0, 3.0, -2.0, 0.5, 4.0, -1.0]])
    np.testing.assert_array_equal(models.group_sort(z, 3), [[3.0, 1.0, -2.0, 4.0, 0.5, -1.0]])
    maxmin = models.activation_fn(models.build(dict(activation="maxmin", widths=[6])).layers[0])
    np.testing.assert_array_equal(maxmin(z), [[3.0, 1.0, 0.5, -2.0, 4.0, -1.0]])


@pytest.mark.parametrize("group_size", [2, 3, 4, 12])
def test_groupsort_derivative_is_the_sorting_permutation(group_size):
    """Forward- and reverse-mode Jacobians equal the permutation matrix of a stable descending
    argsort (numpy), ties included; second derivatives exist and vanish (piecewise linear)."""
    z = np.round(np.random.default_rng(group_size).standard_normal((3, 2 * group_size)), 1)
    z[0, 1] = z[0, 0]  # a tie inside a group
    z[1, :group_size] = 0.5  # a whole group tied
    for row in z:
        perm = np.concatenate([g0 + np.argsort(-row[g0:g0 + group_size], kind="stable")
                               for g0 in range(0, row.size, group_size)])
        want = np.eye(row.size)[perm]  # output r is input perm[r]
        for jac in (jax.jacfwd, jax.jacrev):
            got = jac(lambda v: models.group_sort(v, group_size))(jnp.asarray(row))
            np.testing.assert_array_equal(got, want)
    w = jnp.asarray(np.arange(2.0 * group_size))
    hess = jax.hessian(lambda v: jnp.sum(w * models.group_sort(v, group_size)))(
        jnp.asarray(z[2]))
    np.testing.assert_array_equal(hess, 0.0)


def test_zeroed_residual_branch_is_the_identity():
    model = models.build(dict(widths=[6, 6, 6], num_outputs=2, residual=True, layer_norm=True,
                              pre_norm=True, b_std=0.2))
    assert [layer.skip for layer in model.layers] == [False, True, True, False]
    params = list(perturbed(model, jax.random.PRNGKey(0), (4,)))
    for i in (1, 2):  # zero each branch's weights and bias
        params[i] = {**params[i], "W": jnp.zeros_like(params[i]["W"]),
                     "b": jnp.zeros_like(params[i]["b"])}
    params = tuple(params)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    u1 = jax.nn.relu(x @ params[0]["W"] + params[0]["b"])
    for i in (1, 2):
        np.testing.assert_array_equal(models.block_map(model, model.layers[i], params[i], u1), u1)
    spectra = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    for i in (1, 2):
        np.testing.assert_allclose(spectra.layers[i].singular_values, 1.0, atol=1e-12)


def test_layer_norm_formula_and_jacobian_rank():
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 7))
    g, b = jnp.linspace(0.5, 2.0, 7), jnp.linspace(-1.0, 1.0, 7)
    zn = np.asarray(z)
    want = (zn - zn.mean(1, keepdims=True)) / np.sqrt(zn.var(1, keepdims=True) + models.LN_EPS)
    np.testing.assert_allclose(models.layer_norm(z, {"ln_scale": g, "ln_bias": b}),
                               want * np.asarray(g) + np.asarray(b), atol=1e-12)
    jac = jax.vmap(jax.jacfwd(lambda zi: models.layer_norm(zi, {})))(z)
    for j in np.asarray(jac):
        assert np.linalg.matrix_rank(j) == 6          # rank d − 1
        np.testing.assert_allclose(j @ np.ones(7), 0.0, atol=1e-12)  # annihilates 1
    # in a network: a LayerNorm + leaky-ReLU layer's Jacobian has exactly one zero σ
    model = models.build(dict(widths=[8, 8], num_outputs=3, layer_norm=True,
                              activation="leaky_relu"))
    params = perturbed(model, jax.random.PRNGKey(1), (8,))
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 8))
    spectra = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    assert [s.summary.zeros for s in spectra.layers] == [1.0, 1.0, 0.0]


def test_block_jacobian_moments_match_explicit_jacobians():
    model = models.build(dict(widths=[8, 8], num_outputs=3, residual=True, layer_norm=True,
                              activation="groupsort", group_size=4))
    params = perturbed(model, jax.random.PRNGKey(0), (5,))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
    spectra = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    inputs = models.block_inputs(model, params, x)
    for layer, p, u, got in zip(model.layers, params, inputs, spectra.layers):
        def one(ui, layer=layer, p=p):
            return models.block_map(model, layer, p, ui[None])[0]

        jac = np.stack([jax.jacrev(one)(ui) for ui in u])
        sv = np.linalg.svd(jac, compute_uv=False)
        np.testing.assert_allclose(got.singular_values, sv, atol=1e-12)
        np.testing.assert_allclose(got.chi, (sv ** 2).mean(axis=1), atol=1e-12)
        np.testing.assert_allclose(got.mean_sigma4, (sv ** 4).mean(axis=1), atol=1e-12)


def test_groupsort_dormancy_counts_units_that_never_win():
    model = models.build(dict(widths=[4], num_outputs=2, activation="maxmin", use_bias=False))
    w = jnp.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, -1.0]])
    params = ({"W": w}, {"W": jnp.ones((4, 2))})
    # x ≥ 0: unit 0 (= x_0) vs unit 1 (= x_1) each win sometimes; unit 2 (= x_1) always beats
    # unit 3 (= −x_1) when x_1 > 0, so unit 3 never wins its group
    x = jnp.array([[1.0, 2.0], [3.0, 0.5], [0.2, 0.1]])
    (layer,) = dormancy.unit_scores(model, params, x)
    np.testing.assert_array_equal(layer.dead_mask, [False, False, False, True])
    np.testing.assert_allclose(layer.active_frequency, [2 / 3, 1 / 3, 1.0, 0.0])
    assert layer.dead_fraction == 0.25


def test_specs_build_from_plain_data_and_bad_ones_name_the_field():
    for name, extra in NEW_BLOCKS.items():
        spec = models.ArchSpec.from_dict(dict(widths=[8, 8], **extra))
        assert models.ArchSpec.from_dict(spec.to_dict()) == spec, name
    with pytest.raises(NtkplastError, match="multiple of 4"):
        models.ArchSpec(activation="groupsort", group_size=4, widths=(8, 6))
    with pytest.raises(NtkplastError, match="pre_norm"):
        models.ArchSpec(pre_norm=True, layer_norm=True)
    with pytest.raises(NtkplastError, match="group_size"):
        models.ArchSpec(activation="groupsort", group_size=1)
    with pytest.raises(NtkplastError, match="negative_slope"):
        models.ArchSpec(activation="leaky_relu", negative_slope=1.5)
    assert models.ArchSpec(activation="maxmin").hidden_w_std == 1.0
    np.testing.assert_allclose(models.ArchSpec(activation="leaky_relu",
                                               negative_slope=0.2).hidden_w_std,
                               np.sqrt(2 / 1.04))


def test_resets_refuse_skips_and_groupsort():
    for extra in (dict(residual=True), dict(activation="maxmin")):
        model = models.build(dict(widths=[8, 8], **extra))
        with pytest.raises(NtkplastError, match="outgoing weights"):
            resets.redo(model)
        with pytest.raises(NtkplastError, match="outgoing weights"):
            resets.continual_backprop(model)


def test_cnn_blocks_with_norm_and_skip():
    model = models.build(dict(kind="cnn", widths=[4, 4], num_outputs=3, layer_norm=True,
                              residual=True, activation="maxmin"))
    params = perturbed(model, jax.random.PRNGKey(0), (8, 8, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1))
    want = sum(brute_force_parts(model, params, x))
    got = ntk.empirical_ntk(model, params, x, trace_outputs=False)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-10)
    spectra = isometry.layer_spectra(model, params, x, spectra_subsample=2)
    assert all(np.all(np.isfinite(s.chi)) for s in spectra.layers)


def test_stax_conversion_of_the_new_blocks():
    stax_bridge = pytest.importorskip("neural_tangents") and ntk
    for extra in (dict(activation="leaky_relu", negative_slope=0.1),
                  dict(layer_norm=True, layer_norm_affine=False),
                  dict(residual=True, layer_norm=True, layer_norm_affine=False, pre_norm=True),
                  dict(residual=True, b_std=0.1)):
        spec = models.ArchSpec(widths=(8, 8, 8), num_outputs=3, **extra)
        model = models.build(spec)
        params = perturbed(model, jax.random.PRNGKey(0), (5,))
        x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
        _, apply_fn, _ = stax_bridge.to_stax(spec)
        np.testing.assert_allclose(np.asarray(apply_fn(ntk.to_stax_params(model, params), x)),
                                   np.asarray(model.apply(params, x)), atol=1e-10)
    with pytest.raises(NtkplastError, match="no maxmin layer"):
        ntk.to_stax(models.ArchSpec(activation="maxmin"))
    with pytest.raises(NtkplastError, match="layer_norm_affine"):
        model = models.build(dict(layer_norm=True))
        ntk.to_stax_params(model, model.init(jax.random.PRNGKey(0), (5,)))


@pytest.mark.parametrize("shape", [(7, 7), (9, 4), (3, 8)])
def test_cayley_map_is_semi_orthogonal_for_any_free_parameter(shape):
    for seed in range(3):
        w = 2.0 * jax.random.normal(jax.random.PRNGKey(seed), shape)
        q = np.asarray(models.cayley_stiefel(w))
        assert q.shape == shape
        gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
        np.testing.assert_allclose(gram, np.eye(min(shape)), atol=1e-12)
    # an independent check of the formula on a square W: (I + S)⁻¹(I − S), S = W − Wᵀ
    w = np.asarray(jax.random.normal(jax.random.PRNGKey(9), (5, 5)))
    s = w - w.T
    np.testing.assert_allclose(np.asarray(models.cayley_stiefel(jnp.asarray(w))),
                               np.linalg.solve(np.eye(5) + s, np.eye(5) - s), atol=1e-12)


def test_orthogonal_groupsort_network_stays_isometric_while_training():
    import optax

    d = 8
    model = models.build(dict(widths=[d, d], num_outputs=d, activation="groupsort",
                              group_size=4, weight_constraint="orthogonal", w_std=1.0))
    params = model.init(jax.random.PRNGKey(0), (d,))
    x = jax.random.normal(jax.random.PRNGKey(1), (16, d))
    y = jax.random.normal(jax.random.PRNGKey(2), (16, d))
    opt = optax.adam(0.1)
    state = opt.init(params)
    loss = jax.jit(jax.value_and_grad(lambda p: jnp.mean((model.apply(p, x) - y) ** 2)))
    first = None
    for _ in range(20):
        value, grads = loss(params)
        first = value if first is None else first
        updates, state = opt.update(grads, state)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)[0]) < 0.9 * float(first)      # it learns ...
    spectra = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    for layer in spectra.layers:                             # ... and stays exactly isometric
        np.testing.assert_allclose(layer.singular_values, 1.0, atol=1e-10)
    for s in isometry.weight_spectra(model, params):
        np.testing.assert_allclose(s, 1.0, atol=1e-10)
    # the NTK is taken in the free parameters: generic (the auto choice) matches brute force
    want = sum(brute_force_parts(model, params, x[:5]))
    got = ntk.empirical_ntk(model, params, x[:5], trace_outputs=False)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-10)
    with pytest.raises(NtkplastError, match="free parameters"):
        ntk.empirical_ntk(model, params, x[:5], engine="layerwise")


def test_methods_and_resets_refuse_orthogonal_layers():
    from ntkplast import regularizers

    model = models.build(dict(widths=[8, 8], weight_constraint="orthogonal"))
    with pytest.raises(NtkplastError, match="free parameters"):
        regularizers.make_hooks({"name": "isometry"}, model, (5,), 1e-3)
    with pytest.raises(NtkplastError, match="outgoing weights"):
        resets.redo(model)
    with pytest.raises(NtkplastError, match="weight_constraint"):
        models.ArchSpec(kind="cnn", widths=(4,), weight_constraint="orthogonal")


def test_layer_norm_parameters_survive_a_checkpoint(tmp_path):
    from ntkplast.runs import checkpoints

    model = models.build(dict(widths=[6, 6], layer_norm=True, residual=True, pre_norm=True))
    params = perturbed(model, jax.random.PRNGKey(0), (4,))
    checkpoints.save_arrays(tmp_path / "c.npz", checkpoints.params_to_arrays(params))
    back = checkpoints.arrays_to_params(checkpoints.load_arrays(tmp_path / "c.npz"))
    assert [sorted(p) for p in back] == [sorted(p) for p in params]
    assert_trees_equal(params, back)
