"""PyTorch import: same outputs and NTK as PyTorch, no pickle code runs, run folders analyse."""

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast import analysis, models, ntk
from ntkplast.convert import state_dicts
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints, interop

safetensors_numpy = pytest.importorskip("safetensors.numpy")


# ---- references -----------------------------------------------------------------------------

def _torch_mlp(torch, d_in, widths, k):
    layers, d = [torch.nn.Flatten()], d_in
    for w in widths:
        layers += [torch.nn.Linear(d, w), torch.nn.ReLU()]
        d = w
    layers.append(torch.nn.Linear(d, k))
    return torch.nn.Sequential(*layers)


def _torch_cnn(torch, c_in, channels, dense, k, hw, kernel=3):
    layers, c = [], c_in
    for ch in channels:
        layers += [torch.nn.Conv2d(c, ch, kernel, padding=kernel // 2), torch.nn.ReLU(),
                   torch.nn.AvgPool2d(2)]
        c, hw = ch, hw // 2
    layers.append(torch.nn.Flatten())
    d = c * hw * hw
    for w in dense:
        layers += [torch.nn.Linear(d, w), torch.nn.ReLU()]
        d = w
    layers.append(torch.nn.Linear(d, k))
    return torch.nn.Sequential(*layers)


def _numpy_state_dict(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def _torch_ntk(torch, net, x):
    """Output-traced empirical NTK by Jacobian contraction with torch.func, in float64."""
    from torch.func import functional_call, jacrev, vmap

    net = net.double()
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f(p, xi):
        return functional_call(net, p, (xi[None],))[0]

    jac = vmap(jacrev(f), (None, 0))(params, x.double())
    return sum(torch.einsum("nkp,mkp->nm", j.flatten(2), j.flatten(2))
               for j in jac.values()).numpy()


def _relative(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


CASES = {  # name: (builder, ntkplast input shape H×W×C)
    "mlp_vector": (lambda t: _torch_mlp(t, 12, (16, 16), 5), (12,)),
    "mlp_image_rgb": (lambda t: _torch_mlp(t, 4 * 4 * 3, (16,), 4), (4, 4, 3)),
    "cnn_one_block": (lambda t: _torch_cnn(t, 1, (4,), (), 10, 8), (8, 8, 1)),
    "cnn_two_blocks_rgb": (lambda t: _torch_cnn(t, 3, (4, 5), (6,), 3, 8), (8, 8, 3)),
    "cnn_kernel5": (lambda t: _torch_cnn(t, 2, (3,), (), 2, 4, kernel=5), (4, 4, 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_imported_model_matches_pytorch_outputs_and_ntk(name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    build, shape = CASES[name]
    net = build(torch)
    spec, params = interop.state_dict_to_params(_numpy_state_dict(net), input_shape=shape)
    assert spec.kind == ("cnn" if name.startswith("cnn") else "mlp")
    model = models.build(spec)
    x_nhwc = np.random.default_rng(1).normal(size=(7, *shape)).astype(np.float32)
    x_torch = torch.from_numpy(np.moveaxis(x_nhwc, -1, 1).copy() if len(shape) == 3 else x_nhwc)
    with torch.no_grad():
        want = net(x_torch).numpy()
    np.testing.assert_allclose(np.asarray(model.apply(params, x_nhwc)), want,
                               rtol=1e-5, atol=1e-5)
    theta = ntk.empirical_ntk(model, params, x_nhwc)
    assert _relative(theta, _torch_ntk(torch, net, x_torch)) < 1e-4


def test_named_modules_are_ordered_by_shapes_and_pt_files_load(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.readout = torch.nn.Linear(8, 3)  # registered first: order must come from shapes
            self.hidden = torch.nn.Linear(6, 8)
            self.inp = torch.nn.Linear(5, 6)

        def forward(self, x):
            return self.readout(torch.relu(self.hidden(torch.relu(self.inp(x)))))

    torch.manual_seed(0)
    net = Net()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    torch.save({"epoch": 3, "model_state_dict": net.state_dict()}, tmp_path / "wrapped.pth")
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    for name in ("net.pt", "wrapped.pth"):
        spec, params = interop.state_dict_to_params(interop.load_torch(tmp_path / name))
        assert spec.widths == (6, 8) and spec.num_outputs == 3
        np.testing.assert_allclose(models.build(spec).apply(params, x), want, atol=1e-5)


def test_pickle_payload_in_pt_file_is_refused_and_never_runs(tmp_path):
    torch = pytest.importorskip("torch")
    marker, control = tmp_path / "pwned", tmp_path / "control"

    class Payload:
        def __init__(self, path):
            self.path = path

        def __reduce__(self):
            return (exec, (f"open({str(self.path)!r}, 'w').write('ran')",))

    (tmp_path / "src").mkdir()
    evil = tmp_path / "src" / "evil_1.pt"
    torch.save({"0.weight": torch.zeros(2, 2), "x": Payload(marker)}, evil)
    with pytest.raises(NtkplastError, match="evil_1.pt.*refused"):
        interop.load_torch(evil)
    with pytest.raises(NtkplastError, match="evil_1.pt.*refused"):
        interop.import_folder(tmp_path / "src", tmp_path / "run")
    assert not marker.exists() and not (tmp_path / "run").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    # control: the same payload does run when unpickled without weights_only
    torch.save({"x": Payload(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.read_text() == "ran"


# ---- without torch ---------------------------------------------------------------------------

def _mlp_state_dict(rng, sizes=(6, 9, 9, 4), prefix=""):
    sd, j = {}, 0
    for d_in, d_out in zip(sizes, sizes[1:]):
        sd[f"{prefix}{j}.weight"] = rng.normal(size=(d_out, d_in)).astype(np.float32) / 3
        sd[f"{prefix}{j}.bias"] = rng.normal(size=(d_out,)).astype(np.float32) / 3
        j += 2
    return sd


def _numpy_mlp(sd, x):
    names = sorted({k.rpartition(".")[0] for k in sd}, key=state_dicts._natural_key)
    for i, m in enumerate(names):
        x = x @ sd[f"{m}.weight"].T + sd[f"{m}.bias"]
        if i < len(names) - 1:
            x = np.maximum(x, 0)
    return x


def test_safetensors_round_trip_without_torch(tmp_path):
    rng = np.random.default_rng(0)
    sd = _mlp_state_dict(rng, sizes=(6, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 4), prefix="net.")
    safetensors_numpy.save_file(sd, str(tmp_path / "m.safetensors"))
    loaded = interop.load_safetensors(tmp_path / "m.safetensors")
    assert set(loaded) == set(sd)
    spec, params = interop.state_dict_to_params(loaded)  # net.10 after net.2: natural order
    assert spec.widths == (9,) * 10 and spec.num_outputs == 4
    x = rng.normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_allclose(models.build(spec).apply(params, x), _numpy_mlp(sd, x),
                               rtol=1e-5, atol=1e-5)


def test_ntk_parameterization_spec_computes_the_same_function():
    rng = np.random.default_rng(0)
    sd = _mlp_state_dict(rng)
    x = rng.normal(size=(3, 6)).astype(np.float32)
    spec, params = interop.state_dict_to_params(
        sd, {"widths": [9, 9], "num_outputs": 4, "parameterization": "ntk", "b_std": 0.1})
    assert spec.parameterization == "ntk"
    np.testing.assert_allclose(models.build(spec).apply(params, x), _numpy_mlp(sd, x),
                               rtol=1e-5, atol=1e-5)


BAD_STATE_DICTS = {
    "batchnorm": ({"0.weight": np.ones((4, 3)), "1.weight": np.ones(4), "1.bias": np.ones(4),
                   "1.running_mean": np.ones(4)}, "1.running_mean"),
    "layernorm": ({"0.weight": np.ones((4, 3)), "1.weight": np.ones(4)}, "1.weight"),
    "conv1d": ({"0.weight": np.ones((4, 3, 3)), "1.weight": np.ones((2, 4))}, "Conv1d"),
    "no_chain": ({"0.weight": np.ones((4, 3)), "1.weight": np.ones((2, 5))},
                 "no layer order fits"),
    "ambiguous": ({"a.weight": np.ones((4, 4)), "b.weight": np.ones((4, 4))},
                  "key_order"),
    "even_kernel": ({"0.weight": np.ones((4, 1, 2, 2)), "2.weight": np.ones((2, 64))},
                    "odd square kernel"),
    "ints": ({"0.weight": np.ones((4, 3), np.int64)}, "finite floats"),
    "mixed_bias": ({"0.weight": np.ones((4, 3)), "0.bias": np.ones(4),
                    "1.weight": np.ones((2, 4))}, "biases"),
}


@pytest.mark.parametrize("name", sorted(BAD_STATE_DICTS))
def test_unsupported_state_dicts_are_named(name):
    sd, fragment = BAD_STATE_DICTS[name]
    with pytest.raises(NtkplastError, match=fragment):
        interop.state_dict_to_params(sd, input_shape=(8, 8, 1) if "kernel" in name else None)


def test_cnn_without_pooling_is_refused_with_the_layout_hint():
    sd = {"0.weight": np.ones((4, 1, 3, 3), np.float32), "3.weight": np.ones((2, 4 * 8 * 8))}
    with pytest.raises(NtkplastError, match="AvgPool2d"):
        interop.state_dict_to_params(sd, input_shape=(8, 8, 1))
    with pytest.raises(NtkplastError, match="input_shape"):
        interop.state_dict_to_params(sd)


def test_key_order_and_spec_resolve_what_shapes_cannot():
    rng = np.random.default_rng(0)
    sd = {"b.weight": rng.normal(size=(4, 4)), "a.weight": rng.normal(size=(4, 4))}
    spec, params = interop.state_dict_to_params(sd, {"widths": [4], "num_outputs": 4,
                                                     "use_bias": False, "activation": "tanh"},
                                                key_order=["b", "a.weight"])
    assert spec.activation == "tanh"
    np.testing.assert_array_equal(params[0]["W"], sd["b.weight"].T.astype(np.float32))
    with pytest.raises(NtkplastError, match="do not match"):
        interop.state_dict_to_params(sd, {"widths": [5], "num_outputs": 4, "use_bias": False},
                                     key_order=["a", "b"])


def _write_folder(folder, steps, rng):
    folder.mkdir()
    for s in steps:
        path = folder / f"model_step{s}.safetensors"
        safetensors_numpy.save_file(_mlp_state_dict(rng), str(path))
    (folder / "notes.txt").write_text("not a checkpoint 123")


def test_import_folder_then_analyze(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "torch_run"
    _write_folder(src, (100, 20, 0), rng)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    run = interop.import_folder(src, tmp_path / "run", pattern=r"step(\d+)",
                                activation="relu")
    assert [c.step for c in run] == [0, 20, 100] and len(run) == 3
    assert [c["source"] for c in run.manifest["checkpoints"]] == [
        "model_step0.safetensors", "model_step20.safetensors", "model_step100.safetensors"]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    sd = safetensors_numpy.load_file(str(src / "model_step20.safetensors"))
    x = rng.normal(size=(6, 6)).astype(np.float32)
    np.testing.assert_allclose(run.model.apply(run.params(1), x), _numpy_mlp(sd, x),
                               rtol=1e-5, atol=1e-5)
    checkpoints.save_arrays(tmp_path / "probe.npz", {"x": x})
    settings = analysis.Settings(metrics=("ntk", "dormancy"), probe=str(tmp_path / "probe.npz"),
                                 probe_size=6)
    table = analysis.analyze(tmp_path / "run", settings, progress=False)
    assert sorted(set(table.columns["checkpoint"].tolist())) == [0, 1, 2]
    assert "ntk_trace" in set(table.columns["metric"].tolist())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_import_folder_bad_input_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    _write_folder(src, (1, 2), rng)
    safetensors_numpy.save_file({"0.weight": np.ones((3, 3, 3), np.float32)},
                                str(src / "model_step3.safetensors"))
    with pytest.raises(NtkplastError, match="model_step3.safetensors.*Conv1d"):
        interop.import_folder(src, tmp_path / "run", activation="relu")
    with pytest.raises(NtkplastError, match="no files"):
        interop.import_folder(src, tmp_path / "run", pattern=r"epoch(\d+)")
    twice = src / "model_step01.safetensors"
    twice.write_bytes((src / "model_step1.safetensors").read_bytes())
    with pytest.raises(NtkplastError, match="step01.* both have number 1 .*narrow the pattern"):
        interop.import_folder(src, tmp_path / "run", pattern=r"step(\d+)\.")
    twice.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text("{}")
    with pytest.raises(NtkplastError, match="already exists"):
        interop.import_folder(src, tmp_path / "run", pattern=r"step([12])\.")
    assert json.loads((tmp_path / "run" / "manifest.json").read_text()) == {}


def test_cli_import_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    _write_folder(tmp_path / "src", (5, 7), rng)
    (tmp_path / "spec.toml").write_text("[model]\nwidths = [9, 9]\nnum_outputs = 4\n"
                                        "activation = 'tanh'\n")
    ok = run_cli("import", "src", "run", "--spec", "spec.toml", "--pattern", r"step(\d+)",
              cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "2 checkpoints" in ok.stdout
    run = checkpoints.open_run(tmp_path / "run")
    assert run.spec.activation == "tanh" and [c.step for c in run] == [5, 7]
    assert_one_line_error(run_cli("import", "src", "run", cwd=tmp_path), "already exists")
    assert_one_line_error(run_cli("import", "nope", "run2", cwd=tmp_path), "nope")
    assert_one_line_error(run_cli("import", "src", "run2", "--pattern", "epoch(\\d+)",
                                cwd=tmp_path), "no files")
    assert_one_line_error(run_cli("import", "src", "run2", "--input-shape", "2,x",
                                cwd=tmp_path), "--input-shape")
    (tmp_path / "bad.json").write_text('{"widths": [3]}')
    assert_one_line_error(run_cli("import", "src", "run2", "--spec", "bad.json", cwd=tmp_path),
                           "do not match")
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("pre_norm", [False, True])
def test_residual_layernorm_groupsort_modules_import_with_their_spec(pre_norm):
    """Named PyTorch modules (embedding, residual blocks with LayerNorm, GroupSort, head): the
    imported network computes the same function and the same NTK (γ and β included)."""
    torch = pytest.importorskip("torch")

    class GroupSort(torch.nn.Module):
        def __init__(self, group_size):
            super().__init__()
            self.group_size = group_size

        def forward(self, z):
            g = z.reshape(*z.shape[:-1], -1, self.group_size)
            return torch.sort(g, dim=-1, descending=True).values.reshape(z.shape)

    class Block(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            self.linear, self.norm, self.act = torch.nn.Linear(d, d), torch.nn.LayerNorm(d), \
                GroupSort(4)

        def forward(self, u):
            if pre_norm:
                return u + self.act(self.linear(self.norm(u)))
            return u + self.act(self.norm(self.linear(u)))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.embed_norm = torch.nn.Linear(5, 8), torch.nn.LayerNorm(8)
            self.blocks = torch.nn.ModuleList([Block(8), Block(8)])
            self.final_norm, self.head = torch.nn.LayerNorm(8), torch.nn.Linear(8, 3)
            self.act = GroupSort(4)

        def forward(self, x):
            u = self.act(self.embed(x) if pre_norm else self.embed_norm(self.embed(x)))
            for block in self.blocks:
                u = block(u)
            return self.head(self.final_norm(u) if pre_norm else u)

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # move γ, β off 1, 0 so a misplaced norm shows
        for name, p in net.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    state = _numpy_state_dict(net)
    drop = ("embed_norm",) if pre_norm else ("final_norm",)  # unused modules of each variant
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    spec = dict(widths=[8, 8, 8], num_outputs=3, activation="groupsort", group_size=4,
                layer_norm=True, residual=True, pre_norm=pre_norm)
    norms = ["blocks.0.norm", "blocks.1.norm"]
    order = ["embed"] + ([] if pre_norm else ["embed_norm"]) + ["blocks.0.linear"] + norms[:1] \
        + ["blocks.1.linear"] + norms[1:] + (["final_norm"] if pre_norm else []) + ["head"]
    spec, params = interop.state_dict_to_params(state, spec, key_order=order)
    model = models.build(spec)
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), want, rtol=1e-5, atol=1e-5)
    theta = ntk.empirical_ntk(model, params, x)  # the unused norm has zero gradient in torch
    assert _relative(theta, _torch_ntk(torch, net, torch.from_numpy(x))) < 1e-4


def test_layernorm_modules_without_a_spec_that_has_them_are_refused():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.ReLU(),
                              torch.nn.Linear(6, 2))
    with pytest.raises(NtkplastError, match="normalisation modules"):
        interop.state_dict_to_params(_numpy_state_dict(net))
