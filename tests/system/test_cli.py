"""The CLI: the demo writes a 30-task series per method; bad input is one line and exit 2."""

import json
import os
import pathlib

import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints
from ntkplast.training import config


@pytest.mark.slow
def test_demo_quick_compares_the_methods_and_reruns_cheaply(tmp_path):
    args = ("demo", "--quick", "--no-progress", "--probe-size", "32", "--seeds", "1",
            "--out", "demo")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for method in ("adam", "adamo", "isometry"):
        run = checkpoints.open_run(tmp_path / "demo" / method / "seed0")
        assert run.complete and len(run.manifest["tasks"]) == 30
        assert len(run) == 1 + 30  # initialisation and every task end
        assert run.manifest["tasks"][3]["plasticity_measure"] == "train_accuracy"
        assert "plasticity_loss_baseline" in run.manifest["tasks"][3]
        assert run.manifest["config"].get("method", {}).get("name", "adam") == method
        for name in ("metrics.csv", "metrics.jsonl", "spectra.npz"):
            assert (run.path / "analysis" / name).exists()
    for name in ("plasticity", "theory", "kernel_regime", "diagnostics_adam", "rivals_adam",
                 "ntk_spectra_adamo", "jacobian_spectra_isometry", "ntk_layer_shares_adam"):
        assert (tmp_path / "demo" / "figures" / f"{name}.png").exists()
    assert "online accuracy" in proc.stdout and "figures:" in proc.stdout
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000
    checkpoint_files = sorted((tmp_path / "demo").glob("*/seed0/*.npz"))
    assert len(checkpoint_files) == 3 * 31
    stamp = {p: p.stat().st_mtime_ns for p in checkpoint_files}
    again = run_cli(*args, cwd=tmp_path)  # finished runs are skipped, analyses come from the cache
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in checkpoint_files} == stamp
    other = run_cli(*args[:-2], "--out", "demo", "--set", "train.learning_rate=0.1", cwd=tmp_path)
    assert_one_line_error(other, "different configuration")


BAD_CONFIGS = {
    "unknown_key": ("[train]\nlearnin_rate = 0.1\n", "learnin_rate"),
    "wrong_type": ("[model]\nwidths = 'wide'\n", "model.widths"),
    "bad_toml": ("[model\n", "not valid TOML"),
    "bad_value": ("[train]\noptimizer = 'lion'\n", "train.optimizer"),
    "unknown_table": ("[optim]\nlr = 1\n", "optim"),
    "bad_dataset": ("[stream]\ndataset = 'imagenet'\n", "imagenet"),
    "unknown_method": ("[method]\nname = 'adamw'\n", "method.name"),
    "bad_method_option": ("[method]\nname = 'adamo'\ntau = 0.1\n", "tau"),
    "bad_method_value": ("[method]\nname = 'adamo'\nlam = -1.0\n[train]\nsteps_per_task = 1\n",
                         "lam"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_exit_2(tmp_path, name):
    text, fragment = BAD_CONFIGS[name]
    (tmp_path / "c.toml").write_text(text)
    assert_one_line_error(run_cli("train", "c.toml", cwd=tmp_path), fragment)


def test_missing_config_and_missing_data(tmp_path):
    assert_one_line_error(run_cli("train", "nope.toml", cwd=tmp_path), "nope.toml")
    (tmp_path / "c.toml").write_text("[stream]\ndataset = 'mnist'\n")
    proc = run_cli("train", "c.toml", "--data-dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert_one_line_error(proc, "train-images-idx3-ubyte", "empty")


def test_bad_arguments_are_one_line(tmp_path):
    assert_one_line_error(run_cli("trian", cwd=tmp_path), "trian")
    assert_one_line_error(run_cli("demo", "--set", "nonsense", cwd=tmp_path), "nonsense")


@pytest.mark.parametrize("name", ["run\x1b[2J\x1b[31m", "run\x07\x00x", "run\u202eexe.txt"])
def test_a_name_with_control_characters_is_shown_escaped(tmp_path, name):
    """A folder or config name reaches the message as text: a terminal escape in it would
    clear the screen or recolour it, a bidi override would reorder it (issue 35)."""
    if "\x00" in name:  # no file name or argument holds NUL: a config value does
        (tmp_path / "c.toml").write_text('[model]\nkind = "run\\u0007\\u0000x"\n')
        proc = run_cli("train", "c.toml", cwd=tmp_path)
    else:
        proc = run_cli("analyze", name, cwd=tmp_path)
    assert_one_line_error(proc)
    assert not any(c in proc.stderr for c in "\x1b\x07\x00\u202e")
    assert ascii(name[3:5])[1:-1] in proc.stderr


def test_resume_of_a_non_run_folder(tmp_path):
    (tmp_path / "c.toml").write_text("")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("[]")
    proc = run_cli("train", "c.toml", "--out", "out", "--resume", cwd=tmp_path)
    assert_one_line_error(proc, "manifest.json")


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("seed = 4\n[model]\nwidths = [8, 8]\n[train]\nsteps_per_task = 3\n")
    cfg = config.load_config(path, ["train.learning_rate=0.5", "stream.num_tasks=7", "seed=1"])
    assert cfg.seed == 1 and cfg.model.widths == (8, 8) and cfg.train.learning_rate == 0.5
    assert cfg.stream.num_tasks == 7 and cfg.train.steps_per_task == 3
    assert config.config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(NtkplastError, match="section.key=value"):
        config.apply_overrides({}, ["novalue"])


def test_a_whole_section_set_to_a_value_is_refused(tmp_path):
    with pytest.raises(NtkplastError, match=r"\[model\] is a table"):
        config.apply_overrides({}, ["model=1", "model.kind=mlp"])
    table = config.apply_overrides({}, ["model={kind = 'mlp', widths = [4]}", "model.widths=[5]"])
    assert table["model"] == {"kind": "mlp", "widths": [5]}
    (tmp_path / "c.toml").write_text("model = 1\n")
    assert_one_line_error(run_cli("train", "c.toml", "--set", "model.kind=mlp", cwd=tmp_path),
                          "[model] in the config is not a table")
    assert_one_line_error(run_cli("train", "c.toml", "--set", "model=1", "--set",
                                  "model.kind=mlp", cwd=tmp_path), "[model] is a table")


def _tiny_overrides(path):
    """``--set`` options that shrink a shipped run config to seconds: 2 tasks of 32 examples, a
    few steps (or one pass, or one epoch, as the config trains), every checkpoint kept."""
    train = config.read_toml(path).get("train", {})
    sets = ["stream.num_tasks=2", "stream.train_size=32", "train.batch_size=8",
            "train.checkpoint_every=0"]
    if not train.get("online"):
        sets.append("train.epochs_per_task=1" if "epochs_per_task" in train
                    else "train.steps_per_task=2")
    return [a for s in sets for a in ("--set", s)]


SHIPPED = sorted(p for p in (pathlib.Path(__file__).parents[2] / "configs").rglob("*.toml")
                 if p.parent.name not in ("grids", "paper", "rl"))  # grids: sweeps; rl: tests/rl


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_config_trains_at_a_tiny_size(tmp_path, path):
    from ntkplast import data

    dataset = config.load_config(path).stream.dataset
    try:
        data.load_dataset(dataset)
    except NtkplastError as e:
        pytest.skip(f"{path.name} needs {dataset!r}, which is not on this machine: {e}"[:300])
    proc = run_cli("train", str(path), "--out", "run", "--no-progress", *_tiny_overrides(path),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "over 2 tasks" in proc.stdout and "last task " in proc.stdout
    assert checkpoints.open_run(tmp_path / "run").complete


def test_shipped_configs_parse():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
    names = [n for n in sorted(os.listdir(root)) if n.endswith(".toml")]
    assert names
    for name in names:
        cfg = config.load_config(os.path.join(root, name))
        assert cfg.stream.num_tasks >= 20


def test_shipped_grids_expand():
    from ntkplast.experiments import sweep

    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "grids")
    for name in sorted(os.listdir(root)):
        grid = sweep.load_grid(os.path.join(root, name))
        points = sweep.expand(grid)
        assert points and all(sweep.point_config(grid, p, name) for p in points)


def test_analyze_and_figures_errors(tmp_path):
    assert_one_line_error(run_cli("analyze", "nowhere", cwd=tmp_path), "nowhere")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(
        '{"format": "ntkplast-run", "format_version": 7}')
    assert_one_line_error(run_cli("analyze", "run", cwd=tmp_path), "upgrade ntkplast")
    assert_one_line_error(run_cli("figures", "run", cwd=tmp_path), "ntkplast analyze")
    assert_one_line_error(run_cli("analyze", "run", "--metrics", "ntk,vibes", cwd=tmp_path),
                           "vibes")
