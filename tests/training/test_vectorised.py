"""Several seeds in one vectorised program (train.train_seeds) against the same seeds alone."""

import dataclasses

import jax
import numpy as np
import pytest
from trees import assert_trees_equal

from ntkplast import models, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints

SEEDS = [3, 5, 11]


def _cfg(method=None, **train_kw):
    kw = dict(optimizer="adam", learning_rate=3e-3, batch_size=16, steps_per_task=12,
              checkpoint_every=5, reference_tasks=[1])
    kw.update(train_kw)
    return training.RunConfig(
        seed=0, model=models.ArchSpec(widths=(16, 16), num_outputs=10),
        stream=streams.StreamSpec(kind="permuted", dataset="digits", num_tasks=3),
        train=training.TrainConfig(**kw), method=method or {})


def _files(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.npz"))}


def _assert_close_runs(vec: checkpoints.Run, alone: checkpoints.Run, rtol=2e-5, atol=2e-6):
    assert [(c.step, c.task, c.kind) for c in vec.checkpoints] == \
        [(c.step, c.task, c.kind) for c in alone.checkpoints]
    for i in range(len(alone)):
        assert_trees_equal(vec.params(i), alone.params(i), rtol=rtol, atol=atol,
                           err_msg=f"checkpoint {i}")
    for tv, ta in zip(vec.manifest["tasks"], alone.manifest["tasks"], strict=True):
        assert tv.keys() == ta.keys()
        for key in tv:
            if isinstance(ta[key], str):  # plasticity_measure
                assert tv[key] == ta[key], key
            else:
                np.testing.assert_allclose(tv[key], ta[key], atol=1e-6, err_msg=key)


@pytest.mark.parametrize("method", [{}, {"name": "adamo", "lam": 0.1, "every": 2},
                                    {"name": "cbp", "replacement_rate": 0.05,
                                     "maturity_threshold": 3},
                                    {"name": "shrink_perturb"}])
def test_vectorised_seeds_match_each_seed_trained_alone(tmp_path, method):
    """Parameters at every checkpoint, task records (tests, online scores, references) agree
    with sequential runs to float rounding, for plain training and for methods with optimizer
    state, per-step keys and task-end resets."""
    cfg = _cfg(method)
    dirs = [tmp_path / f"vec{s}" for s in SEEDS]
    runs = training.train_seeds(cfg, SEEDS, dirs, progress=False)
    for seed, vec in zip(SEEDS, runs, strict=True):
        alone = training.train_run(dataclasses.replace(cfg, seed=seed), tmp_path / f"one{seed}",
                                   progress=False)
        assert vec.complete and vec.manifest["config"] == alone.manifest["config"]
        assert vec.manifest["vectorised_seeds"] == SEEDS
        _assert_close_runs(vec, alone)
    # the seeds really differ from one another
    first = [jax.tree_util.tree_leaves(r.params(-1))[0] for r in runs[:2]]
    assert not np.allclose(*first)


def _roll_back(run_dir, k):
    """The manifest as a kill before the last ``k`` manifest writes would have left it."""
    m = checkpoints.read_manifest(run_dir)
    for entry in m["checkpoints"][-k:]:
        if entry["kind"] == "task_end":
            m["tasks"].pop()
    m["checkpoints"] = m["checkpoints"][:-k]
    m["complete"] = False
    checkpoints.write_manifest(run_dir, m)


def test_interrupted_vectorised_run_resumes_to_the_same_files(tmp_path):
    """Killed between chunks, and killed with the seeds' folders at different checkpoints
    (one seed a chunk or two ahead of the others), the resumed runs end with the bytes of the
    uninterrupted ones."""
    cfg = _cfg()
    full = [tmp_path / "full" / f"s{s}" for s in SEEDS]
    training.train_seeds(cfg, SEEDS, full, progress=False)
    for stop, back in ((2, (0, 0, 0)), (4, (0, 1, 2)), (7, (2, 0, 1))):
        part = [tmp_path / f"part{stop}" / f"s{s}" for s in SEEDS]
        training.train_seeds(cfg, SEEDS, part, progress=False, stop_after_chunks=stop)
        for d, k in zip(part, back, strict=True):
            if k:
                _roll_back(d, k)
        training.train_seeds(cfg, SEEDS, part, progress=False, resume=True)
        for a, b in zip(part, full, strict=True):
            assert _files(a) == _files(b)
            assert checkpoints.read_manifest(a) == checkpoints.read_manifest(b)


def test_a_finished_seed_is_left_alone_and_the_rest_train(tmp_path):
    cfg = _cfg(steps_per_task=6, checkpoint_every=0)
    dirs = [tmp_path / f"s{s}" for s in SEEDS]
    training.train_seeds(cfg, SEEDS[:1], dirs[:1], progress=False)
    before = _files(dirs[0])
    runs = training.train_seeds(cfg, SEEDS, dirs, progress=False, resume=True)
    assert all(r.complete for r in runs) and _files(dirs[0]) == before


def test_bad_seed_lists_are_refused(tmp_path):
    cfg = _cfg()
    with pytest.raises(NtkplastError, match="distinct seeds"):
        training.train_seeds(cfg, [1, 1], [tmp_path / "a", tmp_path / "b"], progress=False)
    with pytest.raises(NtkplastError, match="one per run folder"):
        training.train_seeds(cfg, [1, 2], [tmp_path / "a"], progress=False)
    with pytest.raises(NtkplastError, match="its own run folder"):
        training.train_seeds(cfg, [1, 2], [tmp_path / "a", tmp_path / "a"], progress=False)
    training.train_seeds(cfg, [1], [tmp_path / "c"], progress=False, stop_after_chunks=1)
    with pytest.raises(NtkplastError, match="already holds a run"):
        training.train_seeds(cfg, [1, 2], [tmp_path / "c", tmp_path / "d"], progress=False)
    with pytest.raises(NtkplastError, match="different configuration"):
        training.train_seeds(cfg, [2, 1], [tmp_path / "c", tmp_path / "d"], progress=False,
                             resume=True)
