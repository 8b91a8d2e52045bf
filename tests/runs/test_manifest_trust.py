"""A manifest cannot lie: non-finite literals, steps out of order and an edited step, task or
resume metric of an unfinished run are refused before training continues (issue 35, items 4 and
12), and nothing is written before the refusal."""

import json

import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast import training
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints

TINY_TOML = """seed = 1
[model]
widths = [12, 12]
num_outputs = 10
[stream]
kind = "permuted"
num_tasks = 2
[train]
steps_per_task = 10
checkpoint_every = 5
batch_size = 16
reference_tasks = "none"
"""


def _partial(tiny_config, tmp_path):
    """An unfinished tiny run (stopped after 3 chunks: checkpoints at steps 0, 5, 10, 15)."""
    cfg = tiny_config(reference_tasks="none")
    run_dir = tmp_path / "run"
    training.train_run(cfg, run_dir, progress=False, stop_after_chunks=3)
    assert not checkpoints.open_run(run_dir).complete
    return cfg, run_dir


def _edit(run_dir, change):
    path = run_dir / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m, indent=1))


def _files(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir()}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_literal_in_the_manifest_is_refused(tiny_run_copy, literal):
    path = tiny_run_copy / "manifest.json"
    text = path.read_text()
    path.write_text(text.replace('"task_step": 5', f'"task_step": 5, "loss": {literal}', 1))
    with pytest.raises(NtkplastError, match=f"{literal.lstrip('-')}.*not a finite number"):
        checkpoints.open_run(tiny_run_copy)


def test_resume_of_a_manifest_with_nan_writes_nothing(tiny_config, tmp_path):
    cfg, run_dir = _partial(tiny_config, tmp_path)
    path = run_dir / "manifest.json"
    path.write_text(path.read_text().replace('"task_step": 5', '"task_step": 5, "x": NaN', 1))
    before = _files(run_dir)
    with pytest.raises(NtkplastError, match="NaN"):
        training.train_run(cfg, run_dir, progress=False, resume=True)
    assert _files(run_dir) == before


@pytest.mark.parametrize("steps, message", [([0, 5, 5, 15], "strictly increasing"),
                                            ([0, 10, 5, 15], "strictly increasing")])
def test_steps_out_of_order_are_refused(tiny_config, tmp_path, steps, message):
    _, run_dir = _partial(tiny_config, tmp_path)

    def set_steps(m):
        for entry, step in zip(m["checkpoints"], steps, strict=True):
            entry["step"] = step
    _edit(run_dir, set_steps)
    with pytest.raises(NtkplastError, match=message):
        checkpoints.open_run(run_dir)


@pytest.mark.parametrize("field, value", [("step", 12), ("task", 0), ("task_step", 3),
                                          ("kind", "task_end"), ("online_score_sum", 1.5)])
def test_an_edited_resume_field_is_refused_against_the_checkpoint(tiny_config, tmp_path, field,
                                                                  value):
    cfg, run_dir = _partial(tiny_config, tmp_path)
    last = checkpoints.read_manifest(run_dir)["checkpoints"][-1]
    assert (last["step"], last["task"], last["kind"]) == (15, 1, "periodic")

    def change(m):
        entry = m["checkpoints"][-1]
        (entry if field in ("step", "task", "kind") else entry["metrics"])[field] = value
    _edit(run_dir, change)
    before = _files(run_dir)
    with pytest.raises(NtkplastError, match=f"{field}.*checkpoint itself records"):
        training.train_run(cfg, run_dir, progress=False, resume=True)
    assert _files(run_dir) == before


def test_an_edited_step_is_one_line_and_exit_2_from_the_cli(tiny_config, tmp_path):
    _, run_dir = _partial(tiny_config, tmp_path)
    (tmp_path / "run.toml").write_text(TINY_TOML)
    _edit(run_dir, lambda m: m["checkpoints"][-1].update(step=12))
    assert_one_line_error(run_cli("train", "run.toml", "--out", "run", "--resume", cwd=tmp_path),
                          "step")


def test_an_unedited_partial_run_still_resumes_to_the_full_run(tiny_config, tmp_path):
    cfg, run_dir = _partial(tiny_config, tmp_path)
    full = tmp_path / "full"
    training.train_run(cfg, full, progress=False)
    training.train_run(cfg, run_dir, progress=False, resume=True)
    assert _files(run_dir) == _files(full)
