r"""Matrix-free NTK operators: Θv and diag Θ without the N × N matrix.

For probe sets too large for an N × N matrix, :func:`ntk_matvec` (Θv) and :func:`ntk_diagonal`
(diag Θ, hence tr Θ) feed the matrix-free estimators of :mod:`ntkplast.spectra` (Lanczos,
Hutchinson). Θ is the empirical NTK of :mod:`ntkplast.ntk.empirical`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from ntkplast import models, validate
from ntkplast.errors import NtkplastError
from ntkplast.ntk import _checks, _generic, _layerwise
from ntkplast.ntk.empirical import resolve_engine

Array = jax.Array

__all__ = ["ntk_diagonal", "ntk_matvec"]


@functools.lru_cache(maxsize=64)
def _matvec_fn(model: models.Model, trace: bool) -> Callable:
    def mv(params, x, v):
        return _generic.matvec(model, params, x, v, trace)
    return jax.jit(mv)


@functools.lru_cache(maxsize=64)
def _factors_fn(model: models.Model, trace: bool) -> Callable:
    return jax.jit(lambda params, x: _layerwise.operator_factors(model, params, x, trace))


_operator_matvec = jax.jit(_layerwise.operator_matvec)
_diagonal = jax.jit(_layerwise.operator_diagonal)


def ntk_matvec(model: models.Model, params: models.Params, x: Array, *,
               trace_outputs: bool = True, engine: str = "auto") -> jax.tree_util.Partial:
    r"""The NTK-vector product v ↦ Θv on probe set ``x``, never forming Θ.

    ``v`` has shape ``N`` (traced kernel) or ``N × K`` (full kernel, rows (n, k)).

    * ``engine="generic"``: Θv = J(Jᵀv), one vjp and one jvp of f over the probe set (Novak et
      al. 2022); the traced kernel, (Θv)_n = Σ_k [J_k(J_kᵀ v)]_n, costs K of them (vmapped).
      Memory: one forward pass plus K cotangents, O(N·K·Σ_l d_l) floats.
    * ``engine="layerwise"`` (MLPs; the ``"auto"`` choice for them): the layerwise factors
      a_{l-1}(X) and δ_l(X) are computed once, and each product is two thin matmuls per layer
      (``ntkplast.ntk._layerwise.operator_matvec``), about 3× fewer FLOPs than the vjp/jvp
      pair for the traced kernel. Memory: the factors, O(N·K·Σ_l d_l) floats.

    Returns a ``jax.tree_util.Partial`` (a pytree holding the arrays), so it can be passed
    into jit-compiled solvers such as :func:`ntkplast.spectra.top_eigenvalues` without baking
    the arrays into the compiled program.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from ntkplast import models, ntk, spectra
      >>> model = models.build(models.ArchSpec(widths=(16,), num_outputs=3))
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
      >>> k = ntk.empirical_ntk(model, params, x)              # only to compare with
      >>> mv = ntk.ntk_matvec(model, params, x)
      >>> v = jnp.arange(6.0)
      >>> bool(np.allclose(mv(v), k @ v, rtol=1e-4, atol=1e-3))
      True
      >>> top = spectra.top_eigenvalues(mv, 6, 1, key=jax.random.PRNGKey(2))   # Lanczos on Θv
      >>> bool(np.isclose(top[0], spectra.eigenvalues(k)[0], rtol=1e-3))
      True
      >>> full = ntk.ntk_matvec(model, params, x, trace_outputs=False, engine="generic")
      >>> full(jnp.ones((6, 3))).shape                         # v and Θv are N × K
      (6, 3)
    """
    engine = resolve_engine(model, engine)
    x, _ = _checks.cast(params, validate.check_probe_set(model, params, x), None)
    if engine == "layerwise":
        return jax.tree_util.Partial(_operator_matvec, _factors_fn(model, trace_outputs)(params, x))
    if engine != "generic":
        raise NtkplastError(f"engine: ntk_matvec runs 'layerwise' or 'generic', got {engine!r}")
    return jax.tree_util.Partial(_matvec_fn(model, trace_outputs), params, x)


def ntk_diagonal(model: models.Model, params: models.Params, x: Array) -> Array:
    r"""diag Θ(x_n, x_n) of the output-traced NTK of an MLP, without the N × N matrix.

    Σ_l (m_W²‖a_{l-1}(x_n)‖² + m_b²)·Σ_k‖δ_{l,k}(x_n)‖² from the layerwise factors, so
    tr Θ = ``ntk_diagonal(...).sum()`` exactly, in O(N·K·Σ_l d_l) memory.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from ntkplast import models, ntk, spectra
      >>> model = models.build(models.ArchSpec(widths=(16,), num_outputs=3))
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
      >>> k = ntk.empirical_ntk(model, params, x)              # only to compare with
      >>> diag = ntk.ntk_diagonal(model, params, x)
      >>> diag.shape, bool(np.allclose(diag, jnp.diag(k), rtol=1e-4))
      ((6,), True)
      >>> bool(np.isclose(diag.sum(), jnp.trace(k), rtol=1e-4))    # tr Θ without the matrix
      True
    """
    resolve_engine(model, "layerwise")
    x, _ = _checks.cast(params, validate.check_probe_set(model, params, x), None)
    return _diagonal(_factors_fn(model, True)(params, x))
