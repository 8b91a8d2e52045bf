"""analyze(): one tidy table over a checkpoint series, cached, resumable, robust to bad files."""

import json

import jax
import numpy as np
import pytest

from ntkplast import analysis, models, ntk, spectra, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints
from ntkplast.table import Table

SETTINGS = analysis.Settings(probe_size=24, spectra_subsample=4)


def test_table_covers_every_family_and_checkpoint(tiny_run, tmp_path):
    table = analysis.analyze(tiny_run, SETTINGS, out_dir=tmp_path, progress=False)
    run = checkpoints.open_run(tiny_run)
    assert sorted(set(table.columns["checkpoint"].tolist())) == list(range(len(run)))
    metrics = set(table.columns["metric"].tolist())
    for m in ("ntk_condition", "ntk_effective_rank", "kernel_distance_init", "kernel_alignment",
              "jac_isometry_index", "io_chi", "weight_chi", "dormant_fraction_tau0",
              "feature_srank", "test_accuracy", "online_accuracy", "loss",
              "kernel_distance_init_deflated", "kernel_distance_prev_deflated",
              "jac_isometry_deviation", "io_isometry_deviation", "weight_isometry_deviation"):
        assert m in metrics, m
    assert set(table.select("ntk_trace_share").columns["layer"].tolist()) == \
        {"layer0", "layer1", "layer2"}
    assert set(table.select("ntk_condition_at_floor").columns["layer"].tolist()) == \
        {"all", "layer0", "layer1", "layer2"}
    # the first checkpoint has nothing before it
    first = table.select("kernel_distance_prev").columns["checkpoint"]
    assert 0 not in first.tolist() and len(first) == len(run) - 1
    for name in ("metrics.csv", "metrics.jsonl", "spectra.npz", "probe.npz", "settings.json"):
        assert (tmp_path / name).exists()
    assert Table.read_csv(tmp_path / "metrics.csv") == table
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(table) and set(json.loads(lines[0])) == set(table.columns)


def test_values_match_direct_computation(tiny_run, tmp_path):
    """The table's NTK numbers are those of ntk.empirical_ntk on the recorded probe set."""
    table = analysis.analyze(tiny_run, analysis.Settings(metrics=("ntk",), probe_size=24),
                             out_dir=tmp_path, progress=False)
    run = checkpoints.open_run(tiny_run)
    x = checkpoints.load_arrays(tmp_path / "probe.npz")["x"]
    k1 = np.asarray(ntk.empirical_ntk(run.model, run.params(1), x), np.float64)
    k2 = np.asarray(ntk.empirical_ntk(run.model, run.params(2), x), np.float64)
    _, trace = table.series("ntk_trace")
    assert trace[2] == pytest.approx(np.trace(k2), rel=1e-5)
    _, dist = table.series("kernel_distance_prev")
    assert dist[1] == pytest.approx(float(spectra.kernel_distance(k1, k2)), abs=1e-5)
    parts = table.select("ntk_trace_share")
    shares = parts.columns["value"][parts.columns["checkpoint"] == 2]
    assert shares.sum() == pytest.approx(1.0, abs=1e-5)
    k0 = np.asarray(ntk.empirical_ntk(run.model, run.params(0), x), np.float64)
    for name, (a, b) in (("prev", (k1, k2)), ("init", (k0, k2))):
        _, got = table.series(f"kernel_distance_{name}_deflated")  # from checkpoint 1 on
        assert got[1] == pytest.approx(_deflated_float64(a, b), abs=1e-5), name


def _deflated_float64(k1, k2):
    """Fort's distance between K − λ_1 u_1 u_1ᵀ of each kernel (numpy's float64 eigh)."""
    parts = []
    for k in (k1, k2):
        lam, vec = np.linalg.eigh(k)
        parts.append(k - lam[-1] * np.outer(vec[:, -1], vec[:, -1]))
    a, b = parts
    return 1 - np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))


def test_condition_at_floor_rows_match_float64_eigenvalues(tiny_run, tmp_path):
    """ntk_condition_at_floor is 1 exactly where numpy's float64 λ_min ≤ eps·λ_max (eps = N·ε₃₂),
    and there ntk_condition is the cap 1/eps: the readout's Θ_L = K·(A Aᵀ + 1), with A the
    24 × 12 last hidden activations, has rank ≤ 13 < 24, the hidden layers' parts full rank."""
    n = 24
    table = analysis.analyze(tiny_run, analysis.Settings(metrics=("ntk",), probe_size=n),
                             out_dir=tmp_path, progress=False)
    run = checkpoints.open_run(tiny_run)
    x = checkpoints.load_arrays(tmp_path / "probe.npz")["x"]
    eps = n * float(np.finfo(np.float32).eps)  # a Python float, float64 under numpy 2 too
    total, parts = ntk.empirical_ntk(run.model, run.params(2), x, per_layer=True)
    flags = table.select("ntk_condition_at_floor")
    conds = table.select("ntk_condition")
    for layer, kernel in zip(["all", "layer0", "layer1", "layer2"], [total, *parts]):
        lam = np.linalg.eigvalsh(np.asarray(kernel, np.float64))
        want = lam[0] <= eps * lam[-1]
        got = flags.columns["value"][(flags.columns["checkpoint"] == 2)
                                     & (flags.columns["layer"] == layer)]
        cond = conds.columns["value"][(conds.columns["checkpoint"] == 2)
                                      & (conds.columns["layer"] == layer)]
        assert got.tolist() == [float(want)], layer
        assert want == (layer == "layer2")
        if want:
            assert cond[0] == pytest.approx(1 / eps, rel=1e-9)
        else:
            assert cond[0] == pytest.approx(lam[-1] / lam[0], rel=1e-3)


def test_isometry_deviation_rows_match_the_stored_spectra(tiny_run, tmp_path):
    """jac_, io_ and weight_isometry_deviation: the mean of ((σ² − 1)/(σ² + 1))² over every
    stored σ, zeros included (float64 numpy); the ReLU layers' units off put them near 1/2."""
    table = analysis.analyze(tiny_run, analysis.Settings(metrics=("isometry",), probe_size=8),
                             out_dir=tmp_path, progress=False)
    arrays = checkpoints.load_arrays(tmp_path / "spectra.npz")

    def want(s):
        sq = np.asarray(s, np.float64) ** 2
        return np.mean(((sq - 1) / (sq + 1)) ** 2)

    for prefix, keys in (("jac_", [f"jac_sv/{li}/2" for li in range(3)]), ("io_", ["io_sv/2"]),
                         ("weight_", [f"weight_sv/{li}/2" for li in range(3)])):
        rows = table.select(f"{prefix}isometry_deviation")
        got = rows.columns["value"][rows.columns["checkpoint"] == 2]
        np.testing.assert_allclose(got, [want(arrays[k]) for k in keys], rtol=1e-5)
    for layer in ("layer0", "layer1"):  # ReLU, 12 units: each zero σ (a unit off) counts 1
        _, dev = table.series("jac_isometry_deviation", layer)
        _, zeros = table.series("jac_zeros", layer)
        assert np.all(zeros > 0) and np.all(dev >= zeros / 12)



def test_spectra_and_overlap_match_numpy_float64(tiny_run, tmp_path):
    """Eigenvalues of the kernel and of each layer's part, and the top-10 eigenspace overlap,
    as numpy's float64 eigh of ntk.empirical_ntk's kernels (one decomposition each, threaded)."""
    table = analysis.analyze(tiny_run, analysis.Settings(metrics=("ntk",), probe_size=24),
                             out_dir=tmp_path, progress=False)
    run = checkpoints.open_run(tiny_run)
    x = checkpoints.load_arrays(tmp_path / "probe.npz")["x"]
    arrays = checkpoints.load_arrays(tmp_path / "spectra.npz")
    tops = []
    for i in (1, 2):
        total, parts = ntk.empirical_ntk(run.model, run.params(i), x, per_layer=True)
        lam, vec = np.linalg.eigh(np.asarray(total, np.float64))
        scale = lam[-1]
        np.testing.assert_allclose(arrays[f"ntk_eigenvalues/{i}"], lam[::-1], rtol=0,
                                   atol=1e-5 * scale)
        for li, part in enumerate(parts):
            ref = np.linalg.eigvalsh(np.asarray(part, np.float64))[::-1]
            np.testing.assert_allclose(arrays[f"ntk_layer_eigenvalues/{li}/{i}"], ref, rtol=0,
                                       atol=1e-5 * scale)
        tops.append(vec[:, ::-1][:, :10])
    rows = table.select("eigenspace_overlap_prev")
    got = rows.columns["value"][rows.columns["checkpoint"] == 2][0]
    assert got == pytest.approx(np.sum((tops[0].T @ tops[1]) ** 2) / 10, abs=1e-4)

def test_weight_norms_match_numpy(tiny_run, tmp_path):
    table = analysis.analyze(tiny_run, analysis.Settings(metrics=("isometry",), probe_size=8),
                             out_dir=tmp_path, progress=False)
    params = checkpoints.open_run(tiny_run).params(2)  # standard parameterization: M = W
    per_layer = [np.linalg.norm(np.asarray(p["W"], np.float64)) for p in params]
    got = table.select("weight_fro_norm")
    got = got.columns["value"][got.columns["checkpoint"] == 2]
    np.testing.assert_allclose(got, per_layer, rtol=1e-5)
    _, total = table.series("weight_norm")
    assert total[2] == pytest.approx(np.sqrt(np.sum(np.square(per_layer))), rel=1e-5)


def test_rerun_uses_cache_and_killed_analysis_resumes(tiny_run, tmp_path, monkeypatch):
    full = analysis.analyze(tiny_run, SETTINGS, out_dir=tmp_path / "a", progress=False)
    real = analysis.analyze_checkpoint
    calls = []

    def dies_at_three(run, i, *args):
        if i == 3:
            raise KeyboardInterrupt
        calls.append(i)
        return real(run, i, *args)

    monkeypatch.setattr(analysis.driver, "analyze_checkpoint", dies_at_three)
    with pytest.raises(KeyboardInterrupt):
        analysis.analyze(tiny_run, SETTINGS, out_dir=tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "metrics.csv").exists()
    monkeypatch.setattr(analysis.driver, "analyze_checkpoint",
                        lambda run, i, *a: calls.append(i) or real(run, i, *a))
    resumed = analysis.analyze(tiny_run, SETTINGS, out_dir=tmp_path / "b", progress=False)
    assert calls == [0, 1, 2, 3, 4]  # 0-2 before the kill, 3-4 after: none twice
    assert resumed == full
    calls.clear()
    assert analysis.analyze(tiny_run, SETTINGS, out_dir=tmp_path / "b", progress=False) == full
    assert calls == []


def test_foreign_run_needs_a_probe_file(tmp_path):
    spec = models.ArchSpec(widths=(8,), num_outputs=3)
    model = models.build(spec)
    entries = []
    for i in range(2):
        checkpoints.save_arrays(tmp_path / f"c{i}.npz", checkpoints.params_to_arrays(
            model.init(jax.random.PRNGKey(i), (5,))))
        entries.append({"file": f"c{i}.npz", "step": i})
    checkpoints.write_manifest(tmp_path, {"format": "ntkplast-run", "format_version": 1,
                                          "model": spec.to_dict(), "input_shape": [5],
                                          "checkpoints": entries})
    with pytest.raises(NtkplastError, match="--probe"):
        analysis.analyze(tmp_path, progress=False)
    checkpoints.save_arrays(tmp_path / "probe_in.npz",
                            {"x": np.random.default_rng(0).normal(size=(10, 5))})
    s = analysis.Settings(probe=str(tmp_path / "probe_in.npz"), probe_size=10)
    table = analysis.analyze(tmp_path, s, progress=False)
    assert "kernel_alignment" not in table.columns["metric"].tolist()  # no labels given
    assert table.series("ntk_trace")[1].shape == (2,)


def test_nan_checkpoint_is_skipped_with_a_warning_row(tiny_run_copy):
    bad = tiny_run_copy
    run = checkpoints.open_run(bad)
    arrays = run.arrays(2)
    arrays["params/0/W"] = np.full_like(arrays["params/0/W"], np.nan)
    checkpoints.save_arrays(bad / run[2].file, arrays)
    with pytest.warns(UserWarning, match="skipping checkpoint 2"):
        table = analysis.analyze(bad, SETTINGS, progress=False)
    skipped = table.select("checkpoint_skipped")
    assert skipped.columns["checkpoint"].tolist() == [2]
    assert len(table.select(layer=None).columns["checkpoint"]) > 0


@pytest.mark.parametrize("kw, message", [
    (dict(metrics=("ntk", "vibes")), "vibes"),
    (dict(engine="fast"), "engine"),
    (dict(probe_size=1), "probe_size"),
])
def test_settings_errors(kw, message):
    with pytest.raises(NtkplastError, match=message):
        analysis.Settings(**kw)


def test_probe_sources(tiny_run):
    from ntkplast.analysis import probes

    run = checkpoints.open_run(tiny_run)
    seen = probes.build_probe(run, "seen", 20, 0)
    assert seen.x.shape == (20, 8, 8, 1) and seen.fingerprint() == \
        probes.build_probe(run, "seen", 20, 0).fingerprint()
    assert probes.build_probe(run, "seen", 20, 1).fingerprint() != seen.fingerprint()
    one = probes.build_probe(run, "task:1", 20, 0)
    stream = streams.make_stream(run.manifest["config"]["stream"])
    x1, _ = stream.test_set(1)
    assert all((x1 == row).all(axis=(1, 2, 3)).any() for row in one.x)
    with pytest.raises(NtkplastError, match="task:<k>"):
        probes.build_probe(run, "task:9", 20, 0)


def test_seen_probe_never_repeats_an_input(tiny_run, tmp_path):
    """Label-shuffling tasks share their images: the probe takes each image at most once, while
    a stream of distinct inputs keeps the plain per-task draw."""
    from ntkplast.analysis import probes

    cfg = training.RunConfig(model=models.ArchSpec(widths=(8,), num_outputs=10),
                             stream=streams.StreamSpec(kind="shuffled_labels", num_tasks=4),
                             train=training.TrainConfig(steps_per_task=2, batch_size=8))
    shuffled = checkpoints.open_run(training.train_run(cfg, tmp_path / "sh", progress=False).path)
    probe = probes.build_probe(shuffled, "seen", 200, 0)
    assert len(probe.x) == 200
    assert len({row.tobytes() for row in probe.x}) == 200
    run = checkpoints.open_run(tiny_run)  # permuted: the draw is rng.choice per task, as before
    stream = streams.make_stream(run.manifest["config"]["stream"])
    rng = np.random.default_rng([0, 7])
    expect = [stream.test_set(t)[0][np.sort(rng.choice(len(stream.test_set(t)[1]), n, False))]
              for t, n in ((0, 10), (1, 10))]
    np.testing.assert_array_equal(probes.build_probe(run, "seen", 20, 0).x,
                                  np.concatenate(expect))


def test_table_basics():
    t = Table.from_rows([(0, 0, 0, "all", "a", 1.0), (1, 5, 0, "all", "a", 2.0),
                         (1, 5, 0, "layer0", "b", float("nan"))])
    steps, values = t.series("a")
    assert steps.tolist() == [0, 5] and values.tolist() == [1.0, 2.0]
    assert len(t.select(layer="layer0")) == 1
    assert b'"value": null' in t.to_jsonl_bytes()
    with pytest.raises(NtkplastError, match="missing column"):
        Table({"value": [1.0]})


def _table_from_cache(run_dir, out):
    """The table as analyze() built it in memory before the rows were streamed: one Table per
    checkpoint from its cache entry, concatenated."""
    run = checkpoints.open_run(run_dir)
    cache = out / "cache" / json.loads((out / "settings.json").read_text())["cache_key"]
    tables = []
    for i in range(len(run)):
        (entry,) = cache.glob(f"{run[i].file.rsplit('.', 1)[0]}.*.npz")
        arrays = checkpoints.load_arrays(entry)
        n = len(arrays["value"])
        tables.append(Table({"checkpoint": np.full(n, i), "step": np.full(n, run[i].step),
                             "task": np.full(n, run[i].task), "layer": arrays["layer"],
                             "metric": arrays["metric"], "value": arrays["value"]}))
    return Table.concat(tables)


def test_streamed_files_are_those_of_the_whole_table(tiny_run, tmp_path):
    table = analysis.analyze(tiny_run, SETTINGS, out_dir=tmp_path, progress=False)
    whole = _table_from_cache(tiny_run, tmp_path)
    assert len(whole) > len(checkpoints.open_run(tiny_run))  # several rows per checkpoint
    assert (tmp_path / "metrics.csv").read_bytes() == whole.to_csv_bytes()
    assert (tmp_path / "metrics.jsonl").read_bytes() == whole.to_jsonl_bytes()
    assert len(table) == len(whole) and table == whole


def test_rows_held_do_not_grow_with_the_checkpoints(tiny_run, tmp_path, monkeypatch):
    """No Table of more than one checkpoint's rows is built while analysing, nor read back."""
    sizes = []
    real_init = Table.__init__

    def counting_init(self, columns):
        real_init(self, columns)
        sizes.append(len(self.columns["value"]))

    monkeypatch.setattr(Table, "__init__", counting_init)
    table = analysis.analyze(tiny_run, SETTINGS, out_dir=tmp_path, progress=False)
    held = max(sizes)
    assert len(table) == sum(sizes)  # len() read nothing back
    per_checkpoint = np.bincount(Table.read_csv(tmp_path / "metrics.csv").columns["checkpoint"])
    assert held == per_checkpoint.max() and held < len(table) / 4


def test_killed_rerun_keeps_the_finished_files_and_resumes(tiny_run, tmp_path, monkeypatch):
    """An analysis killed mid-series leaves the previous metrics files byte for byte and no
    temporaries; re-running it resumes from the cache and writes a fresh analysis's files."""
    out = tmp_path / "out"
    analysis.analyze(tiny_run, SETTINGS, out_dir=out, progress=False)
    before = {f: (out / f).read_bytes() for f in ("metrics.csv", "metrics.jsonl", "spectra.npz")}
    ntk_only = analysis.Settings(metrics=("ntk",), probe_size=24)
    real = analysis.analyze_checkpoint
    calls = []

    def dies_at_three(run, i, *args):
        if i == 3:
            raise RuntimeError("killed")
        calls.append(i)
        return real(run, i, *args)

    monkeypatch.setattr(analysis.driver, "analyze_checkpoint", dies_at_three)
    with pytest.raises(RuntimeError, match="killed"):
        analysis.analyze(tiny_run, ntk_only, out_dir=out, progress=False)
    assert {f: (out / f).read_bytes() for f in before} == before
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(analysis.driver, "analyze_checkpoint", real)
    resumed = analysis.analyze(tiny_run, ntk_only, out_dir=out, progress=False)
    assert calls == [0, 1, 2]
    fresh = analysis.analyze(tiny_run, ntk_only, out_dir=tmp_path / "fresh", progress=False)
    for f in ("metrics.csv", "metrics.jsonl"):
        assert (out / f).read_bytes() == (tmp_path / "fresh" / f).read_bytes()
    assert resumed == fresh


def test_returned_table_is_a_snapshot_and_pickles_whole(tiny_run, tmp_path):
    import pickle

    s = analysis.Settings(metrics=("plasticity",), probe_size=8)
    table = analysis.analyze(tiny_run, s, out_dir=tmp_path, progress=False)
    written = Table.read_csv(tmp_path / "metrics.csv")
    analysis.analyze(tiny_run, analysis.Settings(metrics=("dormancy",), probe_size=8),
                     out_dir=tmp_path, progress=False)  # replaces metrics.csv
    plain = pickle.loads(pickle.dumps(table))
    assert type(plain) is Table and plain == written and table == written
