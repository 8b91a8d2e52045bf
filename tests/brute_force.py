"""Float64 references shared by the model tests: parameters moved off their initial values,
and the per-layer NTK from jacfwd over each layer's flattened parameters (a brute force that
shares no code with the engines)."""

import jax
import numpy as np
from jax.flatten_util import ravel_pytree


def perturbed(model, key, input_shape, scale=0.3):
    """Parameters off their initial values (γ ≠ 1, β ≠ 0, biases ≠ 0)."""
    params = model.init(key, input_shape)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [a + scale * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])


def brute_force_parts(model, params, x):
    """Per-layer NTK Θ_l(x, x')_{kk'} = J_l(x) J_l(x')ᵀ on x × x, from jacfwd over each layer's
    flattened parameters θ_l (the whole batch at once, so no per-example code is shared)."""
    parts = []
    for i in range(len(params)):
        flat, unravel = ravel_pytree(params[i])

        def f(theta, i=i, unravel=unravel):
            return model.apply(params[:i] + (unravel(theta),) + params[i + 1:], x)

        jac = np.asarray(jax.jacfwd(f)(flat))  # N × K × P_l
        parts.append(np.einsum("nkp,mjp->nmkj", jac, jac))
    return parts
