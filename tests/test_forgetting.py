"""Forgetting and transfer: hand-computed values on small accuracy matrices, entries missing."""

import math

import numpy as np
import pytest

from ntkplast import forgetting
from ntkplast.errors import NtkplastError

nan = float("nan")


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), atol=1e-12)


def test_three_tasks_complete():
    a = [[0.9, nan, nan],
         [0.95, 0.8, nan],
         [0.6, 0.75, 0.85]]
    c = forgetting.curves(a)
    _close(c.average_accuracy, [0.9, (0.95 + 0.8) / 2, (0.6 + 0.75 + 0.85) / 3])
    _close(c.backward_transfer, [nan, 0.05, ((0.6 - 0.9) + (0.75 - 0.8)) / 2])
    # F_1: max(A[0,0]) − A[1,0] = −0.05 (positive transfer); F_2: task 0 peaked at 0.95
    _close(c.forgetting, [nan, -0.05, ((0.95 - 0.6) + (0.8 - 0.75)) / 2])
    assert forgetting.average_accuracy(a) == pytest.approx(2.2 / 3)
    assert forgetting.backward_transfer(a) == pytest.approx(-0.175)
    assert forgetting.forgetting(a) == pytest.approx(0.2)


def test_three_tasks_with_a_row_not_evaluated():
    """Row 1 holds only its diagonal: ACC_1, BWT_1, F_1 are NaN; F_2's max runs over A[0, 0]."""
    a = [[0.9, nan, nan],
         [nan, 0.8, nan],
         [0.6, 0.75, 0.85]]
    c = forgetting.curves(a)
    _close(c.average_accuracy, [0.9, nan, 2.2 / 3])
    _close(c.backward_transfer, [nan, nan, -0.175])
    _close(c.forgetting, [nan, nan, ((0.9 - 0.6) + (0.8 - 0.75)) / 2])


def test_four_tasks_with_missing_entries():
    a = [[0.9, nan, nan, nan],
         [0.8, 0.85, nan, nan],
         [nan, 0.7, 0.9, nan],
         [0.5, nan, 0.6, 0.95]]
    c = forgetting.curves(a)
    _close(c.average_accuracy, [0.9, 0.825, 0.8, (0.5 + 0.6 + 0.95) / 3])
    # t = 2: task 0 not evaluated, only j = 1; t = 3: task 1 not evaluated, j = 0 and 2
    _close(c.backward_transfer, [nan, -0.1, -0.15, ((0.5 - 0.9) + (0.6 - 0.9)) / 2])
    _close(c.forgetting, [nan, 0.1, 0.15, ((0.9 - 0.5) + (0.9 - 0.6)) / 2])
    assert forgetting.forgetting(a) == pytest.approx(0.35)


def test_four_tasks_with_a_missing_diagonal():
    """A[2, 2] missing: task 2 has no reference for BWT and no earlier best for F at t = 3."""
    a = [[0.9, nan, nan, nan],
         [0.8, 0.85, nan, nan],
         [nan, 0.7, nan, nan],
         [0.5, nan, 0.6, 0.95]]
    c = forgetting.curves(a)
    _close(c.average_accuracy, [0.9, 0.825, 0.7, (0.5 + 0.6 + 0.95) / 3])
    _close(c.backward_transfer, [nan, -0.1, -0.15, -0.4])
    _close(c.forgetting, [nan, 0.1, 0.15, 0.4])


def _reference(a):
    """The module docstring's rule written as loops."""
    a = np.asarray(a, float)
    t_count = len(a)
    acc, bwt, f = [], [], []
    for t in range(t_count):
        row = [a[t, j] for j in range(t + 1) if math.isfinite(a[t, j])]
        evaluated = t == 0 or any(math.isfinite(a[t, j]) for j in range(t))
        acc.append(np.mean(row) if row and evaluated else nan)
        terms_b, terms_f = [], []
        for j in range(t):
            if not math.isfinite(a[t, j]):
                continue
            if math.isfinite(a[j, j]):
                terms_b.append(a[t, j] - a[j, j])
            earlier = [a[s, j] for s in range(j, t) if math.isfinite(a[s, j])]
            if earlier:
                terms_f.append(max(earlier) - a[t, j])
        bwt.append(np.mean(terms_b) if terms_b else nan)
        f.append(np.mean(terms_f) if terms_f else nan)
    return acc, bwt, f


@pytest.mark.parametrize("seed", range(5))
def test_curves_match_the_rule_written_as_loops(seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=(7, 7))
    a[rng.uniform(size=a.shape) < 0.3] = nan
    a[np.triu_indices(7, 1)] = rng.uniform(size=21)  # ignored
    got = forgetting.curves(a)
    for g, w in zip(got, _reference(np.where(np.tri(7, dtype=bool), a, nan))):
        _close(g, w)


def test_one_task_has_no_transfer():
    assert forgetting.average_accuracy([[0.7]]) == pytest.approx(0.7)
    assert math.isnan(forgetting.backward_transfer([[0.7]]))
    assert math.isnan(forgetting.forgetting([[0.7]]))


@pytest.mark.parametrize("bad", [[], [0.5, 0.6], [[0.5, 0.6]]])
def test_not_a_square_matrix_is_refused(bad):
    with pytest.raises(NtkplastError, match="T × T"):
        forgetting.curves(bad)


def _manifest():
    return {"tasks": [
        {"task": 0, "test_accuracy": 0.9, "accuracy_on_tasks": [0.9]},
        {"task": 1, "test_accuracy": 0.85},                       # row skipped
        {"task": 2, "test_accuracy": 0.8, "accuracy_on_tasks": [0.6, None, 0.8]},
    ]}


def test_accuracy_matrix_from_task_records():
    a = forgetting.accuracy_matrix(_manifest())
    _close(a, [[0.9, nan, nan], [nan, 0.85, nan], [0.6, nan, 0.8]])
    _close(forgetting.accuracy_matrix(_manifest(), upto=1), [[0.9, nan], [nan, 0.85]])
    with pytest.raises(NtkplastError, match="eval_previous"):
        forgetting.accuracy_matrix({"tasks": [{"task": 0, "test_mse": 0.1}]})
    with pytest.raises(NtkplastError, match="accuracy_on_tasks"):
        forgetting.accuracy_matrix({"tasks": [{"task": 0, "accuracy_on_tasks": [0.5, 0.5]}]})


def test_summary_and_task_end_rows():
    s = forgetting.summary(_manifest())
    assert list(s) == list(forgetting.NAMES)
    assert s["average_accuracy"] == pytest.approx(0.7)
    assert s["backward_transfer"] == pytest.approx(-0.3)  # A[2,0] − A[0,0]; task 1 not in row 2
    assert s["forgetting"] == pytest.approx(0.3)
    one = forgetting.summary({"tasks": [{"task": 0, "accuracy_on_tasks": [0.9]}]})
    assert one == {"average_accuracy": 0.9, "backward_transfer": None, "forgetting": None}
    assert forgetting.summary({"tasks": []}) is None and forgetting.summary({}) is None
    m = _manifest()
    assert forgetting.task_end_rows(m, 0) == [("all", "average_accuracy", 0.9)]
    assert forgetting.task_end_rows(m, 1) == []  # row 1 was not evaluated
    rows = forgetting.task_end_rows(m, 2)
    assert [r[1] for r in rows] == list(forgetting.NAMES) and rows[0][2] == pytest.approx(0.7)
    assert forgetting.task_end_rows(m, 3) == []  # not recorded yet
