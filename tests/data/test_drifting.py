"""The task-free stream: its drift schedule against one computed by hand, and the methods it
refuses."""

import numpy as np
import pytest
from conftest import tiny_config

from ntkplast import training
from ntkplast.data import datasets, streams
from ntkplast.errors import NtkplastError


def _by_hand(seed, d, pairs, t):
    """π_t by hand: π₀ a seeded permutation, then per window ``pairs`` swaps, one at a time."""
    perm = list(np.random.default_rng([seed, 0, 0]).permutation(d))
    for k in range(1, t + 1):
        swap = np.random.default_rng([seed, k, 5]).choice(d, 2 * pairs, replace=False)
        for a, b in zip(swap[:pairs], swap[pairs:], strict=True):
            perm[a], perm[b] = perm[b], perm[a]
    return np.array(perm)


@pytest.mark.parametrize(("drift", "seed"), [(0.1, 0), (0.03, 7)])
def test_the_drift_follows_the_schedule_computed_by_hand(drift, seed):
    spec = {"kind": "drifting_permuted", "dataset": "digits", "num_tasks": 30, "drift": drift,
            "seed": seed}
    stream = streams.make_stream(spec)
    pairs = round(drift * 64 / 2)
    late_first = streams.make_stream(spec)  # the windows built out of order agree
    assert np.array_equal(late_first.drift_permutation(20), _by_hand(seed, 64, pairs, 20))
    for t in (0, 1, 2, 11, 29):
        want = _by_hand(seed, 64, pairs, t)
        assert np.array_equal(stream.drift_permutation(t), want)
        assert np.array_equal(late_first.drift_permutation(t), want)
        if t:
            moved = np.sum(want != _by_hand(seed, 64, pairs, t - 1))
            assert moved == 2 * pairs  # exactly the swapped positions change their source
    digits = datasets.load_dataset("digits")
    task = stream[11]
    perm = _by_hand(seed, 64, pairs, 11)
    flat = digits.x_test.reshape(len(digits.x_test), 64)[:, perm]
    np.testing.assert_array_equal(task.x_test.reshape(len(flat), 64), flat)
    np.testing.assert_array_equal(task.y_test, digits.y_test)


@pytest.mark.parametrize("drift", [0.0, 1.5, True, "0.1"])
def test_bad_drifts_are_refused(drift):
    with pytest.raises(NtkplastError, match="drift"):
        streams.StreamSpec(kind="drifting_permuted", drift=drift)


def test_the_default_drift_is_left_out_of_the_dict():
    assert "drift" not in streams.StreamSpec().to_dict()
    assert streams.StreamSpec(drift=0.2).to_dict()["drift"] == 0.2


def _drifting(**method):
    cfg = tiny_config(num_tasks=3, steps_per_task=None, checkpoint_every=0, online=True)
    stream = streams.StreamSpec(kind="drifting_permuted", dataset="digits", num_tasks=3,
                                train_size=48, drift=0.1)
    return training.RunConfig(seed=1, model=cfg.model, stream=stream, train=cfg.train,
                              method=method)


def test_methods_that_act_at_task_ends_are_refused(tmp_path):
    with pytest.raises(NtkplastError, match="no task boundaries"):
        training.train_run(_drifting(name="fire"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_task_free_run_trains_online_and_measures_each_window(tmp_path):
    run = training.train_run(_drifting(name="l2"), tmp_path / "run", progress=False)
    tasks = run.manifest["tasks"]
    assert [t["plasticity_measure"] for t in tasks] == ["online_accuracy"] * 3
    assert all(0.0 <= t["online_accuracy"] <= 1.0 for t in tasks)
