"""The report's forgetting lines: ACC, BWT and forgetting per method, t-interval over seeds."""

import numpy as np

from ntkplast import models, stats
from ntkplast.experiments import report
from ntkplast.runs import checkpoints


def _run(folder, rows):
    folder.mkdir(parents=True)
    manifest = checkpoints.new_manifest(models.ArchSpec(widths=(4,), num_outputs=2), (3,),
                                        tasks=True, complete=True)
    manifest["tasks"] = [{"task": t, "accuracy_on_tasks": row} for t, row in enumerate(rows)]
    checkpoints.write_manifest(folder, manifest)
    return folder


def test_forgetting_lines(tmp_path):
    finals = [[0.5, 0.8], [0.6, 0.9], [0.4, 0.7]]
    groups = {"adam": [_run(tmp_path / f"adam/seed{s}", [[0.9], row])
                       for s, row in enumerate(finals)],
              "one": [_run(tmp_path / "one/seed0", [[0.9], [0.3, 0.8]])],
              "mse": [_run(tmp_path / "mse/seed0", [])]}
    lines = report.forgetting_lines(groups)
    assert len(lines) == 2  # the run without an accuracy matrix has no line
    acc = [np.mean(row) for row in finals]
    m, lo, hi = stats.t_interval(acc)
    assert lines[0].startswith("after the last task: adam ACC")
    assert f"ACC {m:.3f} [{lo:.3f}, {hi:.3f}] (R = 3)" in lines[0]
    m, lo, hi = stats.t_interval([row[0] - 0.9 for row in finals])
    assert f"BWT {m:.3f} [{lo:.3f}, {hi:.3f}] (R = 3)" in lines[0]
    assert "forgetting" in lines[0]
    assert "one ACC 0.550 (R = 1: no interval)" in lines[1]
    assert "BWT -0.600 (R = 1: no interval)" in lines[1]
    assert lines[1].count("no interval") == 3


def test_a_malformed_record_leaves_that_seed_out(tmp_path):
    groups = {"m": [_run(tmp_path / "a", [["x"]]), _run(tmp_path / "b", [[0.9], [0.3, 0.8]])]}
    assert "R = 1" in report.forgetting_lines(groups)[0]
