"""Comparing two pytrees (parameters, optimizer states, kernels) in tests, leaf by leaf.

``assert_trees_equal(actual, desired)`` is strict by default: the same tree structure, then
for each leaf the same shape, the same dtype and the same values, bit for bit. Tolerances, or
relaxing the dtype or container check, are explicit keyword arguments at the call site. Each
failure names the leaf's path in the tree (``[0]['W']``, ``.mu[1]['b']``).
"""

import jax
import numpy as np


def assert_trees_equal(actual, desired, *, rtol=0.0, atol=0.0, check_dtype=True,
                       check_structure=True, err_msg=""):
    """Assert that two pytrees hold the same leaves.

    - structure: ``jax.tree_util.tree_structure`` equal (containers, keys, node types); with
      ``check_structure=False`` only the number of leaves must agree and leaves are paired in
      flattening order (say why at the call site: a list against a tuple, say);
    - per leaf: the same shape; the same dtype unless ``check_dtype=False`` (a float32 result
      against a float64 reference);
    - values: exactly equal (``np.testing.assert_array_equal``) when ``rtol == atol == 0``,
      else ``np.testing.assert_allclose(rtol=rtol, atol=atol)``. NaNs match NaNs in place.

    ``err_msg`` is prefixed to every failure message.
    """
    prefix = f"{err_msg}: " if err_msg else ""
    flat_a, tree_a = jax.tree_util.tree_flatten_with_path(actual)
    flat_b, tree_b = jax.tree_util.tree_flatten_with_path(desired)
    if check_structure:
        assert tree_a == tree_b, f"{prefix}tree structures differ:\n  {tree_a}\n  {tree_b}"
    else:
        assert len(flat_a) == len(flat_b), (
            f"{prefix}{len(flat_a)} leaves against {len(flat_b)}:\n  {tree_a}\n  {tree_b}")
    for (path, a), (_, b) in zip(flat_a, flat_b, strict=True):
        where = f"{prefix}leaf {jax.tree_util.keystr(path) or '<root>'}"
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{where}: shapes differ, {a.shape} against {b.shape}"
        if check_dtype:
            assert a.dtype == b.dtype, f"{where}: dtypes differ, {a.dtype} against {b.dtype}"
        if rtol == 0 and atol == 0:
            np.testing.assert_array_equal(a, b, err_msg=where)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=where)
