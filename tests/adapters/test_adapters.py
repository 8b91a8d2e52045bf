"""Adapters: Flax linen, Flax nnx, Equinox and plain-function models give the kernel and the
layer spectra of the same network built as an ArchSpec, and match float64 brute force on the
framework's own function."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntkplast import adapters, dormancy, isometry, models, ntk
from ntkplast.errors import NtkplastError

flax = pytest.importorskip("flax")
eqx = pytest.importorskip("equinox")
nn = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")

WIDTHS, D_IN, K = (8, 8), 5, 3


def reference(activation="relu"):
    spec = models.ArchSpec(widths=WIDTHS, num_outputs=K, activation=activation)
    model = models.build(spec)
    params = tuple({"W": p["W"], "b": 0.1 * jax.random.normal(jax.random.PRNGKey(i), p["b"].shape)}
                   for i, p in enumerate(model.init(jax.random.PRNGKey(3), (D_IN,))))
    x = jax.random.normal(jax.random.PRNGKey(4), (6, D_IN))
    return model, params, x


PHI = {"relu": jax.nn.relu, "tanh": jnp.tanh}


class LinenMLP(nn.Module):
    act: str

    @nn.compact
    def __call__(self, x):
        for w in WIDTHS:
            x = PHI[self.act](nn.Dense(w)(x))
        return nn.Dense(K)(x)


def linen_model(params, act):
    variables = {"params": {f"Dense_{i}": {"kernel": p["W"], "bias": p["b"]}
                            for i, p in enumerate(params)}}
    return LinenMLP(act), variables


class NnxMLP(nnx.Module):
    def __init__(self, act, rngs):
        sizes = (D_IN, *WIDTHS, K)
        self.act = PHI[act]
        self.fc0, self.fc1, self.fc2 = (nnx.Linear(a, b, rngs=rngs)
                                        for a, b in zip(sizes, sizes[1:]))

    def __call__(self, x):
        return self.fc2(self.act(self.fc1(self.act(self.fc0(x)))))


def _assign(variable, value):
    """Set an nnx Variable: ``set_value`` in flax 0.12 (where the ``.value`` setter is
    deprecated), ``.value =`` in flax 0.8 (which has no ``set_value``)."""
    if hasattr(variable, "set_value"):
        variable.set_value(value)
    else:
        variable.value = value


def nnx_model(params, act):
    m = NnxMLP(act, nnx.Rngs(0))
    for layer, p in zip((m.fc0, m.fc1, m.fc2), params):
        _assign(layer.kernel, jnp.asarray(p["W"]))
        _assign(layer.bias, jnp.asarray(p["b"]))
    return m


def equinox_model(params, act):
    m = eqx.nn.MLP(D_IN, K, WIDTHS[0], len(WIDTHS), activation=PHI[act],
                   key=jax.random.PRNGKey(0))
    for i, p in enumerate(params):
        m = eqx.tree_at(lambda t, i=i: (t.layers[i].weight, t.layers[i].bias), m,
                        (jnp.asarray(p["W"]).T, jnp.asarray(p["b"])))
    return m


def adapt(framework, params, x, act, **kw):
    if framework == "linen":
        module, variables = linen_model(params, act)
        return adapters.from_linen(module, variables, x, **kw), (
            lambda v, xb: module.apply(v, xb), variables)
    if framework == "nnx":
        m = nnx_model(params, act)
        graphdef, state = nnx.split(m)
        return adapters.from_nnx(m, x, **kw), (
            lambda s, xb: nnx.merge(graphdef, s)(xb), state)
    m = equinox_model(params, act)
    arrays, static = eqx.partition(m, eqx.is_inexact_array)
    return adapters.from_equinox(m, x, **kw), (
        lambda a, xb: jax.vmap(eqx.combine(a, static))(xb), arrays)


def brute_force_ntk(apply, tree, x):
    """float64: the full Jacobian of the framework's own function by reverse mode over the
    flattened parameters, then J Jᵀ in numpy (no ntkplast engine involved)."""
    flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                                        tree))
    jac = np.asarray(jax.jacrev(lambda f: apply(unravel(f), x))(flat))  # N × K × P
    return np.einsum("nkp,mkp->nm", jac, jac)


@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("framework", ["linen", "nnx", "equinox"])
def test_adapter_is_the_archspec_network(framework, act):
    model, params, x = reference(act)
    adapted, _ = adapt(framework, params, x, act)
    assert adapted.spec == model.spec  # activation found by checking the outputs
    for got, want in zip(adapted.params, params):
        np.testing.assert_array_equal(got["W"], want["W"])
        np.testing.assert_array_equal(got["b"], want["b"])
    np.testing.assert_allclose(ntk.empirical_ntk(adapted.model, adapted.params, x),
                               ntk.empirical_ntk(model, params, x), rtol=1e-6, atol=1e-6)
    got = isometry.layer_spectra(adapted.model, adapted.params, x).summaries
    want = isometry.layer_spectra(model, params, x).summaries
    np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("framework", ["linen", "nnx", "equinox"])
def test_adapter_kernel_matches_float64_brute_force(framework, x64):
    model, params, x = reference("tanh")
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    x = jnp.asarray(x, jnp.float64)
    adapted, (apply, tree) = adapt(framework, params, x, "tanh", activation="tanh")
    want = brute_force_ntk(apply, tree, x)
    np.testing.assert_allclose(ntk.empirical_ntk(adapted.model, adapted.params, x), want,
                               rtol=1e-10, atol=1e-10)


def test_linen_layers_are_the_captured_dense_outputs():
    model, params, x = reference("relu")
    module, variables = linen_model(params, "relu")
    adapted = adapters.from_linen(module, variables, x)
    _, state = module.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    captured = [state["intermediates"][f"Dense_{i}"]["__call__"][0] for i in range(3)]
    pre, _ = adapted.model.intermediates(adapted.params, x)
    for z, c in zip(pre, captured):
        np.testing.assert_allclose(z, c, rtol=1e-6, atol=1e-6)


def test_isometry_matches_brute_force_on_captured_layers(x64):
    """J_l = diag(φ'(z_l)) W_lᵀ from the linen kernels and captured Dense outputs, numpy SVD."""
    model, params, x = reference("tanh")
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    x = jnp.asarray(x, jnp.float64)
    module, variables = linen_model(params, "tanh")
    adapted = adapters.from_linen(module, variables, x)
    _, state = module.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    got = isometry.layer_spectra(adapted.model, adapted.params, x).summaries
    for i in range(3):
        kernel = np.asarray(variables["params"][f"Dense_{i}"]["kernel"])
        z = np.asarray(state["intermediates"][f"Dense_{i}"]["__call__"][0])
        gate = 1 - np.tanh(z) ** 2 if i < 2 else np.ones_like(z)
        s = np.linalg.svd(gate[:, :, None] * kernel.T[None], compute_uv=False)
        assert got[i].chi == pytest.approx(np.mean(s**2), rel=1e-10)
        lam = s**2
        index = np.mean(np.exp(np.mean(np.log(lam), axis=1)) / np.mean(lam, axis=1))
        assert got[i].isometry_index == pytest.approx(index, rel=1e-9)


def plain_model(activation):
    phi = PHI[activation]

    def hidden(i):
        def f(p, u):
            z = u @ p[f"w{i}"] + p[f"b{i}"]
            return z, phi(z)
        return f

    def readout(p, u):
        z = u @ p["w2"] + p["b2"]
        return z, z

    layers = (hidden(0), hidden(1), readout)

    def apply(p, x):
        u = x
        for f in layers:
            u = f(p, u)[1]
        return u

    return adapters.FunctionModel(apply, layers)


def test_function_model_matches_the_archspec_network():
    model, params, x = reference("relu")
    params = jax.tree_util.tree_map(lambda a: a.at[:, :2].set(-1.0) if a.ndim == 2 else a,
                                    params)  # a dead unit or two for dormancy to find
    tree = {f"{k.lower()}{i}": p[k] for i, p in enumerate(params) for k in ("W", "b")}
    fm = plain_model("relu")
    np.testing.assert_allclose(fm.apply(tree, x), model.apply(params, x), rtol=1e-6)
    got = adapters.empirical_ntk(fm, tree, x, per_layer=True)
    want = ntk.empirical_ntk(model, params, x, per_layer=True)  # the layerwise engine
    # leaves group by module: here each leaf is its own module, so sum W and b parts per layer
    assert adapters.layer_names(tree) == ["params"]
    np.testing.assert_allclose(got.total, want.total, rtol=1e-5, atol=1e-5)
    got_d = adapters.unit_scores(fm, tree, x)
    want_d = dormancy.unit_scores(model, params, x)
    for g, w in zip(got_d, want_d, strict=True):
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-6)
        assert (g.dead_count, g.srank) == (w.dead_count, w.srank)
        assert g.effective_rank == pytest.approx(w.effective_rank, rel=1e-5)
    got_s = adapters.layer_spectra(fm, tree, x).summaries
    want_s = isometry.layer_spectra(model, params, x).summaries
    np.testing.assert_allclose(np.array(got_s, dtype=float), np.array(want_s, dtype=float),
                               rtol=1e-5, atol=1e-6)


def test_function_model_layer_spectra_is_the_isometry_result_type():
    """One return type: :class:`isometry.LayerSpectra`, with the per-input arrays and full
    spectra that ``isometry.layer_spectra`` gives on every input."""
    model, params, x = reference("relu")
    tree = {f"{k.lower()}{i}": p[k] for i, p in enumerate(params) for k in ("W", "b")}
    got = adapters.layer_spectra(plain_model("relu"), tree, x)
    want = isometry.layer_spectra(model, params, x, spectra_subsample=None)
    assert type(got) is type(want) is isometry.LayerSpectra
    np.testing.assert_array_equal(got.subsample, want.subsample)
    for g, w in zip(got.layers, want.layers, strict=True):
        assert type(g) is isometry.JacobianSpectrum
        assert (g.n, g.exact) == (w.n, w.exact)
        np.testing.assert_allclose(g.singular_values, w.singular_values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.chi, w.chi, rtol=1e-5)
        np.testing.assert_allclose(g.mean_sigma4, w.mean_sigma4, rtol=1e-5)
        np.testing.assert_array_equal(g.units_off, w.units_off)
        assert g.summary.units_off == float(np.mean(g.units_off))


def test_function_model_per_layer_parts_follow_modules():
    model, params, x = reference("tanh")
    tree = {f"layer{i}": {"w": p["W"], "b": p["b"]} for i, p in enumerate(params)}
    phi = PHI["tanh"]

    def apply(p, x):
        u = x
        for i in range(3):
            z = u @ p[f"layer{i}"]["w"] + p[f"layer{i}"]["b"]
            u = phi(z) if i < 2 else z
        return u

    got = adapters.empirical_ntk(adapters.FunctionModel(apply), tree, x, per_layer=True)
    want = ntk.empirical_ntk(model, params, x, per_layer=True)
    assert adapters.layer_names(tree) == ["layer0", "layer1", "layer2"]
    for g, w in zip(got.parts, want.parts, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_function_model_kernel_compiles_once(x64):
    """Three identical calls trace the user's ``apply`` once (a Python counter inside it runs
    only while jax traces), and the kernel is the float64 brute force's."""
    _, params, x = reference("tanh")
    tree = {f"layer{i}": {"w": jnp.asarray(p["W"], jnp.float64),
                          "b": jnp.asarray(p["b"], jnp.float64)} for i, p in enumerate(params)}
    x = jnp.asarray(x, jnp.float64)
    traces = []

    def apply(p, xb):
        traces.append(xb.shape)
        u = xb
        for i in range(3):
            z = u @ p[f"layer{i}"]["w"] + p[f"layer{i}"]["b"]
            u = jnp.tanh(z) if i < 2 else z
        return u

    fm = adapters.FunctionModel(apply)
    got = [adapters.empirical_ntk(fm, tree, x)]
    once = len(traces)
    assert once > 0
    got += [adapters.empirical_ntk(fm, tree, x) for _ in range(2)]
    assert len(traces) == once  # three identical calls, one trace
    got.append(adapters.empirical_ntk(adapters.FunctionModel(apply), tree, x))
    assert len(traces) == once  # an equal FunctionModel (same functions) reuses it too
    want = brute_force_ntk(apply, tree, x)
    for g in got:
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-10)


def test_unrecognised_networks_are_refused_with_the_difference():
    model, params, x = reference("relu")

    class Gelu(nn.Module):
        @nn.compact
        def __call__(self, x):
            for w in WIDTHS:
                x = nn.gelu(nn.Dense(w)(x))  # the tanh approximation: no ntkplast activation
            return nn.Dense(K)(x)

    _, variables = linen_model(params, "relu")
    with pytest.raises(NtkplastError, match="no ntkplast network .* reproduces"):
        adapters.from_linen(Gelu(), variables, x)
    with pytest.raises(NtkplastError, match="batch_stats"):
        adapters.from_linen(Gelu(), {**variables, "batch_stats": {}}, x)
    with pytest.raises(NtkplastError, match="layer functions"):
        adapters.unit_scores(adapters.FunctionModel(lambda p, x: x), {}, x)


def test_ntkplast_imports_without_flax_or_equinox():
    code = ("import sys, ntkplast, ntkplast.adapters; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'equinox', "
            "'orbax'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_layers_named_against_their_running_order_are_put_in_order():
    """A compact module that builds its outer layer first, ``Dense(12)(tanh(Dense(12)(x)))``,
    names the outer one ``Dense_0``; the shapes chain either way, so only the outputs tell."""
    class Nested(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(12)(nn.tanh(nn.Dense(12)(x)))

    module = Nested()
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 12))
    variables = module.init(jax.random.PRNGKey(1), x)
    adapted = adapters.from_linen(module, variables, x)
    assert adapted.spec.activation == "tanh" and adapted.max_error < 1e-5
    inner, outer = variables["params"]["Dense_1"], variables["params"]["Dense_0"]
    np.testing.assert_array_equal(adapted.params[0]["W"], inner["kernel"])
    np.testing.assert_array_equal(adapted.params[1]["W"], outer["kernel"])
    with pytest.raises(NtkplastError, match="nor in 1 other layer order"):
        adapters.from_linen(module, variables, x, activation="relu")
