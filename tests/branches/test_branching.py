"""Branch folders: the control retraces its parent byte for byte, each intervention's first
checkpoint moved what it says, branches resume, and the paired effect is the paired t-test of
the manifests' numbers."""

import json
import shutil

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli
from conftest import tiny_config
from scipy import stats as scipy_stats

from ntkplast import branches, dormancy, ntk, training
from ntkplast.branches import branching
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    """Two vectorised seeds (``pair/seed1``, ``pair/seed2``) and one seed trained alone
    (``alone``), three tasks each, a checkpoint every 5 of each task's 10 steps."""
    root = tmp_path_factory.mktemp("parents")
    cfg = tiny_config(num_tasks=3)
    training.train_seeds(cfg, [1, 2], [root / "pair/seed1", root / "pair/seed2"],
                         progress=False)
    training.train_run(tiny_config(seed=3, num_tasks=3), root / "alone", progress=False)
    return root


@pytest.fixture(scope="module")
def branched(parents, tmp_path_factory):
    out = tmp_path_factory.mktemp("branches")
    made = branches.branch(parents / "pair", [0, 1], ["scale_output:2", "orthogonalize",
                                                      "reset_dead"], out=out, progress=False)
    return out, made


def _digests(run_dir):
    return {c["step"]: c["sha256"] for c in checkpoints.read_manifest(run_dir)["checkpoints"]}


def _shared_record(record):
    return {k: v for k, v in record.items() if k != "accuracy_on_tasks"}


@pytest.mark.parametrize("parent", ["pair/seed1", "pair/seed2", "alone"])
def test_the_control_reproduces_the_parent_byte_for_byte(parents, branched, tmp_path, parent):
    if parent == "alone":
        out = tmp_path / "alone"
        branches.branch(parents / "alone", [1], [], out=out, progress=False)
        control = out / "alone/at1/none"
    else:
        control = branched[0] / parent.split("/")[1] / "at0/none"
    mine, theirs = _digests(control), _digests(parents / parent)
    assert len(mine) == 3  # the start, then the next task's periodic and task-end checkpoints
    assert all(theirs[step] == digest for step, digest in mine.items())
    original = checkpoints.read_manifest(parents / parent)["tasks"]
    for record in checkpoints.read_manifest(control)["tasks"]:
        assert _shared_record(record) == _shared_record(original[record["task"]])


def test_branches_are_ordered_and_labelled(branched):
    out, made = branched
    assert [(b.parent.label, b.at, b.intervention.label) for b in made[:4]] == [
        ("seed1", 0, "none"), ("seed1", 0, "scale_output:2"), ("seed1", 0, "orthogonalize:1"),
        ("seed1", 0, "reset_dead:0")]
    assert len(made) == 2 * 2 * 4
    manifest = checkpoints.read_manifest(out / "seed2/at1/scale_output_2")
    assert manifest["branch"]["at_task"] == 1 and manifest["branch"]["tasks"] == 1
    assert manifest["config"]["stream"]["num_tasks"] == 3 and manifest["complete"]
    assert manifest["model"]["output_scale"] == 2.0
    assert manifest["vectorised_seeds"] == [1, 2]


def _start(run_dir):
    run = checkpoints.open_run(run_dir)
    return run, run.params(0)


def test_scale_output_start_scales_the_ntk_trace_by_c_squared(branched):
    out, _ = branched
    control, p0 = _start(out / "seed1/at1/none")
    scaled, p1 = _start(out / "seed1/at1/scale_output_2")
    x = streams.make_stream(control.manifest["config"]["stream"])[2].x_test[:12]
    k0 = np.asarray(ntk.empirical_ntk(control.model, p0, x), np.float64)
    k1 = np.asarray(ntk.empirical_ntk(scaled.model, p1, x), np.float64)
    np.testing.assert_allclose(np.trace(k1) / np.trace(k0), 4.0, rtol=1e-5)
    e0, e1 = np.linalg.eigvalsh(k0), np.linalg.eigvalsh(k1)
    np.testing.assert_allclose(e1[-1] / e1[0], e0[-1] / e0[0], rtol=1e-3)
    d0 = [dormancy.dead_units(a) for a in control.model.intermediates(p0, x)[1]]
    d1 = [dormancy.dead_units(a) for a in scaled.model.intermediates(p1, x)[1]]
    assert all(np.array_equal(a, b) for a, b in zip(d0, d1, strict=True))


def test_orthogonalize_start_has_unit_scaled_weight_singular_values(branched):
    _, params = _start(branched[0] / "seed2/at0/orthogonalize_1")
    for p in params:
        w = np.asarray(p["W"], np.float64)
        np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False),
                                   np.sqrt(w.shape[1] / w.shape[0]), rtol=1e-5)


def test_reset_dead_start_revives_the_units_it_reset_and_keeps_the_rest(branched):
    out, _ = branched
    control, before = _start(out / "seed1/at1/none")
    reset, after = _start(out / "seed1/at1/reset_dead_0")
    x = streams.make_stream(control.manifest["config"]["stream"])[1].x_train[
        :branching.INTERVENTION_INPUTS]
    was = [np.asarray(dormancy.dead_units(a)) for a in control.model.intermediates(before, x)[1]]
    now = [np.asarray(dormancy.dead_units(a)) for a in reset.model.intermediates(after, x)[1]]
    assert reset.manifest["branch"]["did"]["units_reset"] == [int(m.sum()) for m in was]
    for w, n in zip(was, now, strict=True):
        assert not np.any(n[w])
    for layer, (old, new) in enumerate(zip(before, after, strict=True)):
        cols = was[layer] if layer < len(was) else np.zeros(old["W"].shape[1], bool)
        rows = was[layer - 1] if layer > 0 else np.zeros(old["W"].shape[0], bool)
        keep = ~cols[None, :] & ~rows[:, None]
        np.testing.assert_array_equal(np.asarray(new["W"])[keep], np.asarray(old["W"])[keep])


def test_a_finished_branch_is_left_alone_and_an_interrupted_one_resumes(parents, tmp_path,
                                                                        monkeypatch):
    out = tmp_path / "out"
    calls = []
    real = training.train_seeds

    def killed(*args, **kwargs):  # the start checkpoints are written, then the process dies
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_seeds", killed)
    with pytest.raises(KeyboardInterrupt):
        branches.branch(parents / "pair", [1], ["orthogonalize"], out=out, progress=False)
    start = _digests(out / "seed1/at1/none")
    assert len(start) == 1 and calls
    monkeypatch.setattr(training, "train_seeds", real)
    branches.branch(parents / "pair", [1], ["orthogonalize"], out=out, progress=False)
    theirs = _digests(parents / "pair/seed1")
    assert all(theirs[s] == d for s, d in _digests(out / "seed1/at1/none").items())
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    branches.branch(parents / "pair", [1], ["orthogonalize"], out=out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")} == files


def test_a_folder_holding_another_branch_is_refused(parents, tmp_path):
    out = tmp_path / "out"
    branches.branch(parents / "alone", [0], [], out=out, progress=False)
    shutil.copytree(out / "alone/at0/none", tmp_path / "elsewhere")
    moved = out / "alone/at1/none"
    shutil.copytree(tmp_path / "elsewhere", moved)
    with pytest.raises(NtkplastError, match="holds another run or branch"):
        branches.branch(parents / "alone", [1], [], out=out, progress=False)


@pytest.mark.parametrize(("at", "tasks", "match"), [
    ([2], 1, "0 … 1"), ([1], 2, "at most 1"), ([], 1, "at least one"), ([0], 0, "--tasks")])
def test_bad_branch_points_and_budgets_are_refused(parents, tmp_path, at, tasks, match):
    with pytest.raises(NtkplastError, match=match):
        branches.branch(parents / "alone", at, [], out=tmp_path / "o", tasks=tasks,
                        progress=False)


def test_runs_without_a_configuration_are_refused(parents, tmp_path):
    run = shutil.copytree(parents / "alone", tmp_path / "imported")
    manifest = checkpoints.read_manifest(run)
    del manifest["config"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NtkplastError, match="not trained by ntkplast"):
        branches.branch(run, [0], [], out=tmp_path / "o", progress=False)


def test_the_paired_effect_is_the_paired_t_test_of_the_manifests(branched):
    out, _ = branched
    comparison = branches.compare_branches(out, probe_size=16)

    def score(path):
        return [t["plasticity_score"] for t in checkpoints.read_manifest(path)["tasks"]][0]

    for effect in comparison.effects:
        slug = branches.parse_intervention(effect.intervention).slug
        a = [np.mean([score(out / f"seed{s}/at{k}/{slug}") for k in (0, 1)]) for s in (1, 2)]
        b = [np.mean([score(out / f"seed{s}/at{k}/none") for k in (0, 1)]) for s in (1, 2)]
        d = np.subtract(a, b)
        assert effect.overall.n_pairs == 2
        np.testing.assert_allclose(effect.overall.diff, d.mean(), atol=1e-12)
        if np.std(d) > 0:
            ref = scipy_stats.ttest_rel(a, b)
            np.testing.assert_allclose(effect.overall.p_value, ref.pvalue, rtol=1e-9)
            low, high = ref.confidence_interval(0.95)
            np.testing.assert_allclose([effect.overall.ci_low, effect.overall.ci_high],
                                       [low, high], rtol=1e-9)
        assert sorted(effect.per_point) == [0, 1]
    moved = {e.intervention: e.moved for e in comparison.effects}
    trace = moved["scale_output:2"]["ntk_trace"]
    np.testing.assert_allclose(trace[1] / trace[0], 4.0, rtol=1e-5)
    np.testing.assert_allclose(*moved["scale_output:2"]["ntk_condition"], rtol=1e-3)
    assert moved["scale_output:2"]["dead_fraction"][0] == moved["scale_output:2"][
        "dead_fraction"][1]
    text = "\n".join(comparison.lines())
    assert "R = 2" in text and "scale_output:2 − none" in text


def test_a_branch_is_analysable_like_any_run(branched, tmp_path):
    from ntkplast import analysis

    table = analysis.analyze(branched[0] / "seed2/at0/scale_output_2",
                             analysis.Settings(metrics=("ntk", "dormancy", "plasticity"),
                                               probe_size=8), out_dir=tmp_path, progress=False)
    assert sorted(set(table.columns["checkpoint"].tolist())) == [0, 1, 2]
    assert "checkpoint_skipped" not in set(table.columns["metric"].tolist())
    assert len(table.series("train_accuracy", "all")[0]) == 1  # the one task it trained


def test_two_interventions_are_compared_on_their_common_pairs(branched):
    out, _ = branched
    rows = branches.read_branches(out, probe_size=16)
    effect = branches.branch_contrast(rows, "reset_dead:0", "scale_output:2")
    by = {(r.parent, r.at, r.intervention): r.plasticity for r in rows}
    d = [np.mean([by[(s, k, "reset_dead:0")] - by[(s, k, "scale_output:2")] for k in (0, 1)])
         for s in ("seed1", "seed2")]
    np.testing.assert_allclose(effect.overall.diff, np.mean(d), atol=1e-12)
    assert effect.overall.label == "reset_dead:0 − scale_output:2"
    assert branches.branch_contrast(rows, "reset_dead:0", "grow").overall is None


def test_cli_branch_prints_the_effects_and_refuses_bad_input(parents, tmp_path):
    proc = run_cli("branch", str(parents / "pair"), "--at", "1", "--intervention",
                   "scale_output:0.5", "--out", str(tmp_path / "b"), "--no-progress",
                   "--probe-size", "16", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "scale_output:0.5 − none: paired difference" in proc.stdout and "R = 2" in proc.stdout
    for name in ("effects.txt", "branches.csv", "branch_effects.png", "branch_effects.pdf",
                 "report.html"):
        assert (tmp_path / "b" / name).is_file()
    rows = (tmp_path / "b/branches.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2
    page = (tmp_path / "b/report.html").read_text()
    assert "counterfactual branches" in page and "scale_output:0.5 − none" in page
    assert page.count("<tr>") == 1 + 2 * 2 and "data:image/png;base64" in page
    assert_one_line_error(run_cli("branch", str(parents / "pair"), "--at", "x", cwd=tmp_path),
                          "--at 'x'")
    assert_one_line_error(run_cli("branch", str(parents / "pair"), "--at", "1", "--intervention",
                                  "grow", "--out", str(tmp_path / "c"), cwd=tmp_path),
                          "unknown name 'grow'")


def test_interventions_draw_from_the_seed_and_branch_point(parents, tmp_path):
    """Two outputs of the same branch agree bit for bit (explicit keys, no hidden state)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        branches.branch(parents / "alone", [1], ["reset_dead:0.5"], out=out, progress=False)
    assert _digests(a / "alone/at1/reset_dead_0.5") == _digests(b / "alone/at1/reset_dead_0.5")
