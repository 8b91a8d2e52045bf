"""The churn family: its rows against direct computations, for ntkplast and function models."""

import textwrap
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import models
from ntkplast.analysis.churn_family import churn_family
from ntkplast.analysis.families import KernelHistory
from ntkplast.runs import checkpoints
from ntkplast.runs.function_models import FunctionSpec

X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)


def _run(tmp_path, spec, params_list, input_shape=(4,)):
    tmp_path.mkdir(parents=True, exist_ok=True)
    manifest = checkpoints.new_manifest(spec, input_shape, complete=True)
    for step, params in enumerate(params_list):
        checkpoints.append_checkpoint(tmp_path, manifest, params, step=step, task=0,
                                      kind="periodic")
    return checkpoints.open_run(tmp_path)


def _series(spec, n=3):
    model = models.build(spec)
    return model, [model.init(jax.random.PRNGKey(k), (4,)) for k in range(n)]


def _rows(rows):
    return {(layer, metric): value for layer, metric, value in rows}


def _flat(p):
    return np.concatenate([np.asarray(v, np.float64).ravel() for v in jax.tree_util.tree_leaves(p)])


def test_first_checkpoint_has_no_churn_and_zero_distance(tmp_path):
    spec = models.ArchSpec(widths=(6, 5), num_outputs=3, activation="tanh")
    _, series = _series(spec)
    run = _run(tmp_path, spec, series)
    rows, raw = churn_family(run, run.params(0), jnp.asarray(X), KernelHistory(None))
    got = _rows(rows)
    assert not any(m in ("output_churn", "prediction_churn") for _, m in got)
    for layer in ("all", "layer0", "layer1", "layer2"):
        assert got[(layer, "param_distance_init")] == 0.0
        assert got[(layer, "param_distance_init_rel")] == 0.0
    assert {layer for layer, m in got if m == "feature_norm"} == {"layer0", "layer1"}
    assert {layer for layer, m in got if m == "saturation_fraction"} == {"layer0", "layer1"}
    assert set(raw) == {"saturation_frequency/0", "saturation_frequency/1"}


def test_rows_match_direct_computation(tmp_path):
    spec = models.ArchSpec(widths=(6, 5), num_outputs=3, activation="tanh")
    model, series = _series(spec)
    run = _run(tmp_path, spec, series)
    history = KernelHistory(None)
    history.push(None, None, 0, run.digest(0), 0)
    history.push(None, None, 1, run.digest(1), 1)
    params = run.params(2)
    got = _rows(churn_family(run, params, jnp.asarray(X), history)[0])
    f1 = np.asarray(model.apply(run.params(1), X), np.float64)
    f2 = np.asarray(model.apply(params, X), np.float64)
    assert got[("all", "output_churn")] == pytest.approx(np.mean((f2 - f1) ** 2), rel=1e-5)
    assert got[("all", "prediction_churn")] == pytest.approx(
        np.mean(np.argmax(f1, 1) != np.argmax(f2, 1)))
    theta0 = run.params(0)
    d = np.linalg.norm(_flat(params) - _flat(theta0))
    assert got[("all", "param_distance_init")] == pytest.approx(d, rel=1e-5)
    assert got[("all", "param_distance_init_rel")] == pytest.approx(
        d / np.linalg.norm(_flat(theta0)), rel=1e-5)
    for li in range(3):
        assert got[(f"layer{li}", "param_distance_init")] == pytest.approx(
            np.linalg.norm(_flat(params[li]) - _flat(theta0[li])), rel=1e-5)
    _, post = model.intermediates(params, X)
    for li, a in enumerate(post):
        a = np.asarray(a, np.float64)
        assert got[(f"layer{li}", "feature_norm")] == pytest.approx(
            np.mean(np.linalg.norm(a, axis=1)), rel=1e-5)
        assert got[(f"layer{li}", "feature_variance")] == pytest.approx(
            np.mean(np.var(a, axis=0)), rel=1e-5)


def test_planted_saturated_units_are_counted(tmp_path):
    spec = models.ArchSpec(widths=(8, 5), num_outputs=3, activation="erf")
    _, series = _series(spec, n=1)
    p = list(series[0])
    p[0] = {**p[0], "b": p[0]["b"].at[jnp.array([1, 6])].set(50.0)}
    run = _run(tmp_path, spec, [tuple(p)])
    rows, raw = churn_family(run, run.params(0), jnp.asarray(X), SimpleNamespace(
        init_index=None, prev_index=None))
    assert _rows(rows)[("layer0", "saturation_fraction")] == pytest.approx(2 / 8)
    assert raw["saturation_frequency/0"][[1, 6]].tolist() == [1.0, 1.0]


def test_saturation_is_read_after_a_post_norm_and_skipped_for_relu(tmp_path):
    spec = models.ArchSpec(widths=(6,), num_outputs=3, activation="tanh", layer_norm=True)
    model, series = _series(spec, n=1)
    first = {**series[0][0], "ln_scale": series[0][0]["ln_scale"] * 3.0}  # γ = 3: |u| > 3 often
    run = _run(tmp_path / "ln", spec, [(first,) + series[0][1:]])
    params = run.params(0)
    _, raw = churn_family(run, params, jnp.asarray(X), SimpleNamespace(init_index=None,
                                                                       prev_index=None))
    pre, _ = model.intermediates(params, X)
    u = np.asarray(models.layer_norm(pre[0], params[0]), np.float64)
    want = np.mean(1 - np.tanh(u) ** 2 < 0.01, axis=0)
    assert 0 < want.sum() and not np.allclose(want, np.mean(np.abs(np.asarray(pre[0])) > 2.9932,
                                                            axis=0))
    np.testing.assert_allclose(raw["saturation_frequency/0"], want)
    spec = models.ArchSpec(widths=(6,), num_outputs=3)
    _, series = _series(spec, n=1)
    run = _run(tmp_path / "relu", spec, series)
    rows, raw = churn_family(run, run.params(0), jnp.asarray(X), SimpleNamespace(
        init_index=None, prev_index=None))
    assert raw == {} and not any(m == "saturation_fraction" for _, m, _ in rows)
    assert any(m == "feature_norm" for _, m, _ in rows)


MODULE = textwrap.dedent('''
    import jax.numpy as jnp

    def _dense(name, act):
        def f(variables, u):
            p = variables["params"][name]
            z = u @ p["w"] + p["b"]
            return z, act(z)
        return f

    LAYERS = (_dense("d0", jnp.tanh), _dense("d1", lambda z: z))

    def apply(variables, x):
        u = x
        for f in LAYERS:
            _, u = f(variables, u)
        return u
''')


@pytest.mark.parametrize("with_layers", [True, False])
def test_function_model(tmp_path, monkeypatch, with_layers):
    name = f"churn_fn_{with_layers}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(1)

    def variables(scale):
        return {"params": {"d0": {"w": rng.normal(size=(4, 6)).astype(np.float32),
                                  "b": np.zeros(6, np.float32)},
                           "d1": {"w": rng.normal(size=(6, 3)).astype(np.float32),
                                  "b": np.zeros(3, np.float32)}},
                "stats": {"mean": np.full(6, scale, np.float32)}}

    spec = FunctionSpec(f"{name}:apply", f"{name}:LAYERS" if with_layers else None,
                        trainable="params")
    run = _run(tmp_path / "run", spec, [variables(0.0), variables(5.0)])
    history = SimpleNamespace(init_index=0, prev_index=0)
    params = run.params(1)
    got = _rows(churn_family(run, params, jnp.asarray(X), history)[0])
    init = run.params(0)
    d = np.linalg.norm(_flat(params["params"]) - _flat(init["params"]))  # "stats" left out
    assert got[("all", "param_distance_init")] == pytest.approx(d, rel=1e-5)
    assert {layer for layer, m in got if m.startswith("param_distance")} == {"all"}
    assert ("all", "output_churn") in got
    assert not any(m == "saturation_fraction" for _, m in got)  # activation not named
    assert any(m == "feature_norm" for _, m in got) == with_layers
