"""Probe files (``--probe FILE.npz`` of analyze and of import): one reader, every array checked.

``output_check.read_probe_file`` refuses, naming the file and the array, what made analyze
crash (a ``y`` shorter than ``x``, a string ``x``), skip every checkpoint (a ``y`` longer than
``x``) or report a NaN alignment (labels beyond the classes, a 2-D ``y``); the import's reference
reads through it too.
"""

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast import analysis
from ntkplast.analysis import probes
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints, output_check

SHAPE = (8, 8, 1)  # the tiny run's inputs (permuted digits)
X = np.random.default_rng(0).normal(size=(12, *SHAPE)).astype(np.float32)
Y = np.arange(12) % 10


def _refused(path, fragment, *names, **kw):
    """read_probe_file refuses ``path`` with one line naming the file, ``fragment``, ``names``."""
    with pytest.raises(NtkplastError) as e:
        output_check.read_probe_file(path, kw.pop("input_shape", SHAPE), **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and fragment in msg, msg
    for name in names:
        assert name in msg, msg
    return msg


def _x_strings():
    return np.array([["a"] * 64] * 4)


BAD = {  # name: (arrays, fragment of the message, read_probe_file keywords)
    "no_x": ({"y": Y}, "no array 'x'", {}),
    "x_strings": ({"x": _x_strings()}, "real numbers", {}),
    "x_complex": ({"x": X.astype(np.complex64)}, "real numbers", {}),
    "x_bool": ({"x": X > 0}, "real numbers", {}),
    "x_nan": ({"x": np.where(np.arange(12)[:, None, None, None] == 3, np.nan, X)},
              "not finite", {}),
    "x_inf": ({"x": np.where(X > 1, np.inf, X)}, "not finite", {}),
    "x_beyond_float32": ({"x": X.astype(np.float64) * 1e300}, "not finite", {}),
    "x_no_batch_axis": ({"x": X[0, :, 0, 0]}, "batch axis", {}),
    "x_no_rows": ({"x": X[:0]}, "no rows", {}),
    "x_wrong_shape": ({"x": X[:, :7]}, "per-example shape", {}),
    "y_fractional": ({"x": X, "y": Y + 0.5}, "integer", {}),
    "y_nan": ({"x": X, "y": np.where(Y == 3, np.nan, Y)}, "integer", {}),
    "y_strings": ({"x": X, "y": Y.astype(str)}, "integer", {}),
    "y_bool": ({"x": X, "y": Y > 4}, "integer", {}),
    "y_2d": ({"x": X, "y": np.stack([Y, Y], 1)}, "1-D", {}),
    "y_short": ({"x": X, "y": Y[:5]}, "5 labels", {}),
    "y_long": ({"x": X, "y": np.arange(20) % 10}, "20 labels", {}),
    "y_below_minus_one": ({"x": X, "y": np.where(Y == 3, -2, Y)}, "outside -1 .. 9",
                          {"num_classes": 10}),
    "y_num_classes": ({"x": X, "y": np.where(Y == 3, 10, Y)}, "outside -1 .. 9",
                      {"num_classes": 10}),
    "y_huge": ({"x": X, "y": np.full(12, 10**12)}, "outside -1 ..", {}),
    "y_huge_unsigned": ({"x": X, "y": np.full(12, 2**64 - 1, np.uint64)}, "outside -1 ..", {}),
    "outputs_1d": ({"x": X, "outputs": np.zeros(12)}, "2-D", {}),
    "outputs_3d": ({"x": X, "outputs": np.zeros((12, 3, 1))}, "2-D", {}),
    "outputs_rows": ({"x": X, "outputs": np.zeros((11, 3))}, "shape (11, 3)", {}),
    "outputs_scalar": ({"x": X, "outputs": np.float32(1)}, "2-D", {}),
    "outputs_no_columns": ({"x": X, "outputs": np.zeros((12, 0))}, "K >= 1", {}),
    "y_scalar": ({"x": X, "y": np.int64(1)}, "1-D", {}),
    "x_scalar": ({"x": np.float32(1)}, "batch axis", {}),
    "x_no_values": ({"x": np.zeros((12, 0))}, "no values", {"input_shape": None}),
    "outputs_inf": ({"x": X, "outputs": np.full((12, 3), np.inf)}, "not finite", {}),
    "outputs_strings": ({"x": X, "outputs": np.full((12, 3), "a")}, "real numbers", {}),
    "step_negative": ({"x": X, "step": np.int64(-1)}, "step must be one integer", {}),
    "unknown_array": ({"x": X, "labels": Y}, "unknown array", {}),
}
ARRAY_NAMED = {"no_x": "x", "unknown_array": "labels"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_flaw_is_refused_naming_file_and_array(tmp_path, case):
    arrays, fragment, kw = BAD[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    name = ARRAY_NAMED.get(case, case.split("_")[0])
    _refused(path, fragment, name, **kw)


def test_object_x_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([object()] * 3, dtype=object))
    _refused(path, "object arrays are refused")


def test_valid_files_are_read_with_their_types(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, x=(X * 10).astype(np.int16), y=np.where(Y == 3, -1, Y).astype(np.float64),
             outputs=np.ones((12, 3), np.float32), step=np.int64(7))
    got = output_check.read_probe_file(path, SHAPE, num_classes=10)
    x, y, outputs, step = got  # a named tuple
    assert x.dtype == np.float32 and x.shape == (12, *SHAPE)
    assert y.dtype == np.int64 and y.tolist() == np.where(Y == 3, -1, Y).tolist()
    assert outputs.dtype == np.float64 and outputs.shape == (12, 3) and step == 7
    np.savez(path, x=X)  # only x: no labels, no outputs, the first checkpoint
    got = output_check.read_probe_file(path)  # any per-example shape without input_shape
    assert got.y is None and got.outputs is None and got.step == output_check.FIRST
    assert output_check.LABEL_BOUND == 2**16


def test_reference_needs_outputs_and_reads_through_the_same_checks(tmp_path):
    path = tmp_path / "ref.npz"
    np.savez(path, x=X.reshape(12, -1), outputs=np.zeros((12, 3)), step=np.int64(4))
    (x, outputs), step = output_check.read_reference(path)
    assert x.shape == (12, 64) and outputs.shape == (12, 3) and step == 4
    np.savez(path, x=X.reshape(12, -1))
    with pytest.raises(NtkplastError, match="no array.*outputs"):
        output_check.read_reference(path)
    np.savez(path, x=np.where(X > 1, np.nan, X).reshape(12, -1), outputs=np.zeros((12, 3)))
    with pytest.raises(NtkplastError, match="x .*not finite"):
        output_check.read_reference(path)


@pytest.mark.parametrize("y, fragment", [
    (Y[:5], "5 labels"),                       # was an IndexError once subsampled
    (np.arange(20) % 10, "20 labels"),         # was every checkpoint skipped
    (np.full(12, 10**12), "outside -1 .. 9"),  # was a NaN alignment
    (np.full(12, 10), "outside -1 .. 9"),      # beyond the manifest's num_classes
])
def test_build_probe_refuses_labels_that_do_not_fit(tiny_run, tmp_path, y, fragment):
    run = checkpoints.open_run(tiny_run)
    path = tmp_path / "p.npz"
    np.savez(path, x=X, y=y)
    with pytest.raises(NtkplastError, match=fragment):
        probes.build_probe(run, str(path), 8, 0)


def test_label_bound_falls_back_to_the_models_outputs(tiny_run_copy, tmp_path):
    manifest = json.loads((tiny_run_copy / "manifest.json").read_text())
    del manifest["num_classes"]  # a foreign run: the model's 10 outputs bound the labels
    (tiny_run_copy / "manifest.json").write_text(json.dumps(manifest))
    run = checkpoints.open_run(tiny_run_copy)
    path = tmp_path / "p.npz"
    np.savez(path, x=X, y=np.full(12, 10))
    with pytest.raises(NtkplastError, match="outside -1 .. 9"):
        probes.build_probe(run, str(path), 8, 0)


def test_valid_probe_file_is_analysed_without_skips(tiny_run, tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, x=X, y=np.where(Y == 3, 4, Y).astype(np.uint8), step=np.int64(0))
    table = analysis.analyze(tiny_run, analysis.Settings(metrics=("ntk",), probe=str(path),
                                                         probe_size=12),
                             out_dir=tmp_path / "out", progress=False)
    assert "checkpoint_skipped" not in table.columns["metric"].tolist()
    _, alignment = table.series("kernel_alignment")
    assert len(alignment) == len(checkpoints.open_run(tiny_run)) and np.all(np.isfinite(alignment))


@pytest.mark.parametrize("arrays, fragments", [
    ({"x": X, "y": Y[:5]}, ("y has 5 labels", "x has 12 rows")),
    ({"x": _x_strings()}, ("x must hold real numbers",)),
    ({"x": X, "y": np.stack([Y, Y], 1)}, ("y must be 1-D",)),
])
def test_cli_analyze_refuses_bad_probe_files_in_one_line(tiny_run, tmp_path, arrays, fragments):
    np.savez(tmp_path / "bad.npz", **arrays)
    proc = run_cli("analyze", str(tiny_run), "--probe", "bad.npz", "--metrics", "ntk",
                   "--probe-size", "8", "--out", "out", "--no-progress", cwd=tmp_path)
    assert_one_line_error(proc, "bad.npz", *fragments)
    assert not (tmp_path / "out" / "metrics.csv").exists()


def test_cli_analyze_accepts_a_valid_probe_file(tiny_run, tmp_path):
    np.savez(tmp_path / "ok.npz", x=X, y=Y)
    proc = run_cli("analyze", str(tiny_run), "--probe", "ok.npz", "--metrics", "ntk",
                   "--probe-size", "8", "--out", "out", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = (tmp_path / "out" / "metrics.csv").read_text()
    assert "kernel_alignment" in rows and "checkpoint_skipped" not in rows


def _flax_source(folder):
    """A Flax MLP's msgpack (6 → 12 → 3, tanh) in ``folder``; its inputs and outputs."""
    flax = pytest.importorskip("flax")
    import jax
    import jax.numpy as jnp

    class Net(flax.linen.Module):
        @flax.linen.compact
        def __call__(self, x):
            h = jnp.tanh(flax.linen.Dense(12)(x))
            return flax.linen.Dense(3)(h)

    net = Net()
    x = np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)
    params = net.init(jax.random.PRNGKey(0), x)["params"]
    folder.mkdir()
    (folder / "ckpt_0.msgpack").write_bytes(flax.serialization.to_bytes(params))
    return x, np.asarray(net.apply({"params": params}, x))


def test_cli_import_refuses_a_bad_reference_in_one_line(tmp_path):
    x, outputs = _flax_source(tmp_path / "src")
    np.savez(tmp_path / "ok.npz", x=x, outputs=outputs)
    ok = run_cli("import", "src", "run", "--framework", "flax", "--probe", "ok.npz", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert checkpoints.open_run(tmp_path / "run").spec.activation == "tanh"
    np.savez(tmp_path / "inf.npz", x=x, outputs=np.where(outputs > 0, np.inf, outputs))
    assert_one_line_error(run_cli("import", "src", "run2", "--framework", "flax", "--probe",
                                  "inf.npz", cwd=tmp_path), "inf.npz", "outputs", "not finite")
    np.savez(tmp_path / "narrow.npz", x=x[:, :5], outputs=outputs)  # the network takes 6
    assert_one_line_error(run_cli("import", "src", "run3", "--framework", "flax", "--probe",
                                  "narrow.npz", cwd=tmp_path), "per-example shape (5,)")
    assert not (tmp_path / "run2").exists() and not (tmp_path / "run3").exists()
