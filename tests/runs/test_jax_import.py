"""Checkpoints written by other JAX code: a Flax linen, a Flax nnx and an Equinox MLP, trained
a few steps by the loops below (plain optax, not ntkplast's), written with Orbax, are imported
and analysed from the command line; their tables match the same network built as an ArchSpec."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast import analysis, models
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints, jax_import
from ntkplast.table import Table

optax = pytest.importorskip("optax")
ocp = pytest.importorskip("orbax.checkpoint")
eqx = pytest.importorskip("equinox")
nn = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")
serialization = pytest.importorskip("flax.serialization")

D_IN, WIDTH, K, STEPS = 6, 8, 3, (0, 2, 4)
X = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (16, D_IN)), np.float32)
Y = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (16,), 0, K))


def loss(logits):
    return optax.softmax_cross_entropy_with_integer_labels(logits, Y).mean()


class Linen(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(WIDTH)(x))
        x = jnp.tanh(nn.Dense(WIDTH)(x))
        return nn.Dense(K)(x)


class Nnx(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(D_IN, WIDTH, rngs=rngs)
        self.fc2 = nnx.Linear(WIDTH, WIDTH, rngs=rngs)
        self.fc3 = nnx.Linear(WIDTH, K, rngs=rngs)

    def __call__(self, x):
        return self.fc3(jnp.tanh(self.fc2(jnp.tanh(self.fc1(x)))))


def train_and_save(framework, folder):
    """A few SGD steps with each framework's own idiom; Orbax CheckpointManager saves at
    STEPS. Returns each saved step's weights as ntkplast params, converted by hand."""
    mgr = ocp.CheckpointManager(folder)
    tx = optax.sgd(0.5)
    saved = {}
    if framework == "linen":
        module = Linen()
        params = module.init(jax.random.PRNGKey(2), X)["params"]
        opt = tx.init(params)
        for step in range(max(STEPS) + 1):
            if step in STEPS:  # a train state with more than the parameters in it
                mgr.save(step, args=ocp.args.StandardSave({"params": params, "step": step}))
                saved[step] = tuple({"W": params[f"Dense_{i}"]["kernel"],
                                     "b": params[f"Dense_{i}"]["bias"]} for i in range(3))
            grads = jax.grad(lambda p: loss(module.apply({"params": p}, X)))(params)
            updates, opt = tx.update(grads, opt)
            params = optax.apply_updates(params, updates)
    elif framework == "nnx":
        model = Nnx(nnx.Rngs(2))
        graphdef, state = nnx.split(model, nnx.Param)
        opt = tx.init(state)
        for step in range(max(STEPS) + 1):
            model = nnx.merge(graphdef, state)
            if step in STEPS:
                mgr.save(step, args=ocp.args.StandardSave(nnx.state(model, nnx.Param)))
                saved[step] = tuple({"W": m.kernel[...], "b": m.bias[...]}
                                    for m in (model.fc1, model.fc2, model.fc3))
            grads = jax.grad(lambda s: loss(nnx.merge(graphdef, s)(X)))(state)
            updates, opt = tx.update(grads, opt)
            state = optax.apply_updates(state, updates)
    else:
        model = eqx.nn.MLP(D_IN, K, WIDTH, 2, activation=jnp.tanh, key=jax.random.PRNGKey(2))
        opt = tx.init(eqx.filter(model, eqx.is_inexact_array))
        for step in range(max(STEPS) + 1):
            if step in STEPS:
                mgr.save(step, args=ocp.args.StandardSave(eqx.filter(model,
                                                                     eqx.is_inexact_array)))
                saved[step] = tuple({"W": layer.weight.T, "b": layer.bias}
                                    for layer in model.layers)
            grads = eqx.filter_grad(lambda m: loss(jax.vmap(m)(X)))(model)
            updates, opt = tx.update(grads, opt)
            model = eqx.apply_updates(model, updates)
    mgr.wait_until_finished()
    return saved


def reference_run(folder, saved):
    """The same network as an ArchSpec, its checkpoints written by ntkplast itself."""
    spec = models.ArchSpec(widths=(WIDTH, WIDTH), num_outputs=K, activation="tanh")
    folder.mkdir()
    entries = []
    for step, params in saved.items():
        name = checkpoints.checkpoint_name(step)
        checkpoints.save_arrays(folder / name, checkpoints.params_to_arrays(
            tuple({k: jnp.asarray(v) for k, v in p.items()} for p in params)))
        entries.append({"file": name, "step": step, "task": 0, "kind": "imported",
                        "metrics": {}})
    checkpoints.write_manifest(folder, {
        "format": checkpoints.FORMAT, "format_version": checkpoints.FORMAT_VERSION,
        "model": spec.to_dict(), "input_shape": [D_IN], "checkpoints": entries,
        "complete": True})


@pytest.mark.parametrize("framework", ["linen", "nnx", "equinox"])
def test_orbax_checkpoints_import_and_analyse_like_the_archspec_network(framework, tmp_path):
    saved = train_and_save(framework, tmp_path / "ckpts")
    assert not np.allclose(saved[0][0]["W"], saved[4][0]["W"])  # it did train
    np.savez(tmp_path / "probe.npz", x=X)
    fw = "equinox" if framework == "equinox" else "flax"
    ok = run_cli("import", "ckpts", "run", "--framework", fw, "--activation", "tanh",
                 cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    ok = run_cli("analyze", "run", "--probe", "probe.npz", "--probe-size", "16",
                 "--metrics", "ntk,isometry,dormancy", "--no-progress", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    run = checkpoints.open_run(tmp_path / "run")
    assert [c.step for c in run] == list(STEPS)
    assert run.manifest["imported_from"]["framework"] == fw
    assert run.manifest["imported_from"]["formats"] == ["orbax"]
    reference_run(tmp_path / "ref", saved)
    settings = analysis.Settings(metrics=("ntk", "isometry", "dormancy"),
                                 probe=str(tmp_path / "probe.npz"), probe_size=16)
    want = analysis.analyze(tmp_path / "ref", settings, progress=False)
    got = Table.read_csv(tmp_path / "run" / "analysis" / "metrics.csv")
    assert len(got) == len(want) > 50
    for c in ("checkpoint", "step", "layer", "metric"):
        np.testing.assert_array_equal(got.columns[c], want.columns[c])
    np.testing.assert_allclose(got.columns["value"], want.columns["value"], rtol=2e-4,
                               atol=1e-5)


def test_msgpack_and_safetensors_files_import(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    module = Linen()
    params = module.init(jax.random.PRNGKey(2), X)["params"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "epoch_3.msgpack").write_bytes(serialization.to_bytes({"params": params}))
    flat = {f"params/Dense_{i}/{k}": np.asarray(params[f"Dense_{i}"][k])
            for i in range(3) for k in ("kernel", "bias")}
    safetensors_numpy.save_file(flat, str(src / "epoch_7.safetensors"))
    (src / "notes.txt").write_text("not a checkpoint")
    run = jax_import.import_jax_folder(src, tmp_path / "run", activation="tanh",
                                       pattern=r"epoch_(\d+)")
    assert [c.step for c in run] == [3, 7]
    assert run.manifest["imported_from"]["formats"] == ["msgpack", "safetensors"]
    for i in range(2):
        np.testing.assert_allclose(run.model.apply(run.params(i), X),
                                   module.apply({"params": params}, X), rtol=1e-6)


def test_pickles_and_unknown_layouts_are_refused_and_leave_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    marker = tmp_path / "ran"
    (src / "step_1.pkl").write_bytes(
        b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR.")
    with pytest.raises(NtkplastError, match=r"step_1\.pkl: refused.*unpickling"):
        jax_import.import_jax_folder(src, tmp_path / "run")
    assert not marker.exists()
    (src / "step_1.pkl").unlink()
    (src / "step_2.msgpack").write_bytes(serialization.to_bytes(
        {"params": {"Embed_0": {"embedding": np.ones((4, 3), np.float32)}}}))
    with pytest.raises(NtkplastError, match="unsupported entry 'Embed_0.embedding'"):
        jax_import.import_jax_folder(src, tmp_path / "run")
    (src / "step_2.msgpack").write_bytes(b"\xc1 not msgpack")
    with pytest.raises(NtkplastError, match="not a readable Flax msgpack"):
        jax_import.import_jax_folder(src, tmp_path / "run")
    with pytest.raises(NtkplastError, match="tree path 'state.params' has no 'state'"):
        (src / "step_2.msgpack").write_bytes(serialization.to_bytes({"params": {}}))
        jax_import.import_jax_folder(src, tmp_path / "run", tree_path="state.params")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    assert_one_line_error(run_cli("import", "src", "run", "--framework", "flax", cwd=tmp_path),
                          "no parameters")
    (src / "step_2.msgpack").unlink()
    (src / "3.orbax-checkpoint-tmp-1712").mkdir()  # a save that never finished: skipped
    with pytest.raises(NtkplastError, match="no Orbax checkpoint folders"):
        jax_import.import_jax_folder(src, tmp_path / "run")
    step_meta = tmp_path / "orbax" / "ckpt_a"
    step_meta.mkdir(parents=True)
    (step_meta / "_CHECKPOINT_METADATA").write_text(json.dumps({"step": 12}))
    assert jax_import._step(step_meta, jax_import.re.compile(r"(\d+)")) == 12
