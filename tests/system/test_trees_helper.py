"""The tests' tree comparison (tests/trees.py) is strict: structure, shape, dtype, every bit."""

import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

TREE = [{"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)},
        {"W": np.full((3, 1), 0.5, np.float32), "b": np.zeros(1, np.float32)}]


def _with(layer, name, value):
    tree = [dict(p) for p in TREE]
    tree[layer][name] = value
    return tree


def test_equal_trees_pass_and_jax_leaves_compare_with_numpy_ones():
    assert_trees_equal(TREE, _with(1, "b", np.zeros(1, np.float32)))
    assert_trees_equal([{k: jnp.asarray(v) for k, v in p.items()} for p in TREE], TREE)
    nan = np.array([np.nan, 1.0])
    assert_trees_equal({"x": nan}, {"x": nan.copy()})  # NaNs in the same places match


def test_structure_mismatch_fails():
    with pytest.raises(AssertionError, match="tree structures differ"):
        assert_trees_equal(TREE, TREE[:1])
    with pytest.raises(AssertionError, match="tree structures differ"):  # same leaves, tuple
        assert_trees_equal(TREE, tuple(TREE))
    with pytest.raises(AssertionError, match="tree structures differ"):  # another key
        assert_trees_equal({"W": 1.0}, {"V": 1.0})
    assert_trees_equal(TREE, tuple(TREE), check_structure=False)  # only when asked
    with pytest.raises(AssertionError, match="4 leaves against 2"):
        assert_trees_equal(TREE, tuple(TREE[:1]), check_structure=False)


def test_dtype_mismatch_fails_and_names_the_leaf():
    as64 = _with(0, "W", TREE[0]["W"].astype(np.float64))
    with pytest.raises(AssertionError, match=r"leaf \[0\]\['W'\]: dtypes differ, float32"):
        assert_trees_equal(TREE, as64)
    assert_trees_equal(TREE, as64, check_dtype=False)  # only when asked


def test_shape_mismatch_fails_and_names_the_leaf():
    with pytest.raises(AssertionError, match=r"leaf \[1\]\['b'\]: shapes differ, \(1,\)"):
        assert_trees_equal(TREE, _with(1, "b", np.zeros((1, 1), np.float32)))
    with pytest.raises(AssertionError, match="shapes differ"):  # no broadcasting either
        assert_trees_equal(TREE, _with(1, "b", np.zeros((), np.float32)),
                           rtol=1e-3, check_dtype=False)


def test_one_ulp_fails_exactly_and_passes_within_a_tolerance():
    w = TREE[1]["W"].copy()
    w[2, 0] = np.nextafter(w[2, 0], np.float32(1))
    nudged = _with(1, "W", w)
    with pytest.raises(AssertionError, match=r"leaf \[1\]\['W'\]"):
        assert_trees_equal(TREE, nudged)
    with pytest.raises(AssertionError, match="Mismatched elements: 1 / 3"):
        assert_trees_equal(TREE, nudged, err_msg="after resume")
    assert_trees_equal(TREE, nudged, rtol=1e-6)
    with pytest.raises(AssertionError, match=r"after resume: leaf \[1\]\['W'\]"):
        assert_trees_equal(TREE, nudged, rtol=1e-9, err_msg="after resume")
