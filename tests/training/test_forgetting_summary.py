"""A complete classification run stores ACC, BWT and forgetting after its last task."""

import pytest

from ntkplast import forgetting, training
from ntkplast.runs import checkpoints


def test_complete_run_stores_its_forgetting_summary(tiny_run):
    manifest = checkpoints.read_manifest(tiny_run)
    assert manifest["complete"]
    stored = manifest["forgetting"]
    assert stored == forgetting.summary(manifest)
    rows = [t["accuracy_on_tasks"] for t in manifest["tasks"]]  # 2 tasks, every row evaluated
    assert stored["average_accuracy"] == pytest.approx((rows[1][0] + rows[1][1]) / 2)
    assert stored["backward_transfer"] == pytest.approx(rows[1][0] - rows[0][0])
    assert stored["forgetting"] == pytest.approx(rows[0][0] - rows[1][0])


def test_no_summary_without_an_accuracy_matrix_or_before_the_end(tiny_config, tmp_path):
    run = training.train_run(tiny_config(eval_previous=False, reference_tasks="none"),
                             tmp_path / "off", progress=False)
    assert run.complete and "forgetting" not in run.manifest
    part = training.train_run(tiny_config(reference_tasks="none"), tmp_path / "part",
                              progress=False, stop_after_chunks=2)
    assert not part.complete and "forgetting" not in part.manifest
