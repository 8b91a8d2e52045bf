r"""The empirical NTK at one checkpoint or a series of them, and the engine that computes it.

The empirical NTK of a network f(x; θ) ∈ R^K on probe inputs (Jacot, Gabriel & Hongler 2018,
"Neural tangent kernel: convergence and generalization in neural networks", NeurIPS) is

    Θ(x, x')_{kk'} = Σ_p ∂f_k(x)/∂θ_p · ∂f_{k'}(x')/∂θ_p,

returned as the full ``N1 × N2 × K × K`` array (neural-tangents' layout, ``trace_axes=()``) or
output-traced, Θ(x, x') = Σ_k Θ_{kk}, as ``N1 × N2`` (a sum: neural-tangents' ``trace_axes=(-1,)``
averages over k, K times less). Θ = Σ_l Θ_l splits over weight layers (Θ_l: the same sum
restricted to layer l's W and b).

Engines (``engine=``):

* ``"layerwise"``: the structured kernel (``_layerwise``); never forms the whole Jacobian.
  A Dense layer's part factorizes, Θ_l = A_l ⊙ C_l with A_l the activation Gram and C_l the
  backward-signal Gram; a Conv layer's part is the Gram of its per-example weight gradients,
  each one matmul of the layer's input patches against the backward signals. Per-layer parts
  come for free. GroupSort/MaxMin, LayerNorm (its γ, β in their layer's part), residual blocks
  and pooling keep the structure, with the backward signals taken through each block's vjp
  instead of a diagonal φ'.
* ``"generic"``: any model, Jacobian contraction by jax's vjp/vmap (``_generic``).
* ``"nt:jacobian_contraction"``, ``"nt:ntk_vector_products"``, ``"nt:structured_derivatives"``:
  neural-tangents' ``empirical_ntk_fn`` (Novak et al. 2022) when it is installed.
* ``"auto"``: layerwise, except generic for orthogonally constrained layers, whose NTK is taken
  in the free parameters of the Cayley map.

All engines run under one ``jax.jit`` per configuration (:func:`kernel_fn`, cached), blocked over
probe points when asked or when the working memory would exceed
:data:`ntkplast.ntk.MEMORY_BUDGET_BYTES` (``_blocking``). :func:`series_ntk` computes T
checkpoints in one compiled call. :func:`infinite_width_ntk` is the analytic infinite-width
reference (neural-tangents ``kernel_fn``).

Unchecked cores: a public ``<name>_unchecked`` (here :func:`empirical_ntk_unchecked`) is
``<name>`` without the boundary checks of its probe set and parameters, for a caller that has
run them once (:func:`ntkplast.validate.check_probe_set`) and calls it many times, as the
analysis driver does per checkpoint. The same convention holds in :mod:`ntkplast.isometry` and
:mod:`ntkplast.dormancy`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ntkplast import models, validate
from ntkplast.errors import NtkplastError
from ntkplast.ntk import _blocking, _checks, _generic, _layerwise, _nt
from ntkplast.ntk._types import LayerwiseKernel

Array = jax.Array
Params = models.Params

ENGINES = ("auto", "layerwise", "generic") + tuple(f"nt:{i}" for i in _nt.IMPLEMENTATIONS)

__all__ = ["ENGINES", "LayerwiseKernel", "empirical_ntk", "empirical_ntk_unchecked",
           "infinite_width_ntk", "kernel_fn", "resolve_engine", "series_ntk"]


def resolve_engine(model: models.Model, engine: str) -> str:
    """The concrete engine for ``engine`` (``"auto"``: layerwise unless the weights are
    constrained, then generic).

    Examples:
      >>> from ntkplast import models, ntk
      >>> ntk.resolve_engine(models.build(models.ArchSpec(widths=(8,))), "auto")
      'layerwise'
      >>> spec = models.ArchSpec(widths=(8,), weight_constraint="orthogonal")
      >>> ntk.resolve_engine(models.build(spec), "auto")    # NTK in the Cayley map's free weights
      'generic'
    """
    if engine not in ENGINES:
        raise NtkplastError(f"engine: unknown value {engine!r}; choose one of {list(ENGINES)}")
    constrained = model.spec.weight_constraint != "none"
    if engine == "auto":
        return "generic" if constrained else "layerwise"
    if engine == "layerwise" and constrained:
        raise NtkplastError("engine: 'layerwise' factorizes the kernel in the weights a layer "
                            "multiplies by, but with weight_constraint = 'orthogonal' the NTK "
                            "is taken in the free parameters behind them; use engine='generic'")
    if engine.startswith("nt:"):
        _nt.import_nt()
    return engine


def _parts_fn(model: models.Model, engine: str, trace: bool, per_layer: bool) -> Callable:
    if engine == "layerwise":
        fn = _layerwise.layerwise_parts
    elif engine == "generic":
        fn = _generic.generic_parts
    else:
        fn = functools.partial(_nt.nt_parts, implementation=engine[3:])
    return lambda params, xa, xb: fn(model, params, xa, xb, trace, per_layer)


def _body(model: models.Model, engine: str, trace: bool, per_layer: bool,
          block_size: int | None) -> Callable:
    parts_fn = _parts_fn(model, engine, trace, per_layer)

    def run(params, x1, x2):
        def f(xa, xb):
            return parts_fn(params, xa, xb)
        out = f(x1, x2) if block_size is None else _blocking.blocked(f, x1, x2, block_size)
        if not per_layer:
            return out[0]
        return LayerwiseKernel(out.sum(axis=0), tuple(out))
    return run


@validate.legacy_arguments(renamed={"batch_size": "block_size"})
@functools.lru_cache(maxsize=128)
def kernel_fn(model: models.Model, *, trace_outputs: bool = True, per_layer: bool = False,
              engine: str = "auto", block_size: int | None = None) -> Callable[..., Any]:
    """Configure once, apply many: a jit-compiled ``fn(params, x1, x2=None)``.

    Returns the same as :func:`empirical_ntk` with these settings, without its input checks
    (call :func:`empirical_ntk` at a boundary). Cached per configuration, so repeated calls with
    equal shapes reuse one compilation. ``block_size`` as in :func:`empirical_ntk` (``None``: one
    block); ``batch_size=``, its 0.2 name, still works with a DeprecationWarning.

    Examples:
      >>> import jax
      >>> import numpy as np
      >>> from ntkplast import models, ntk
      >>> model = models.build(models.ArchSpec(widths=(16,), num_outputs=3))
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
      >>> fn = ntk.kernel_fn(model)                           # compiled once, reused
      >>> k = ntk.empirical_ntk(model, params, x)
      >>> bool(np.allclose(fn(params, x), k, rtol=1e-4, atol=1e-4))
      True
      >>> fn(params, x, x[:2]).shape                          # a cross kernel Θ(x1, x2)
      (4, 2)
    """
    engine = resolve_engine(model, engine)
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise NtkplastError(f"block_size: expected a positive int or None, got {block_size!r}")
    run = jax.jit(_body(model, engine, trace_outputs, per_layer, block_size))

    def fn(params: Params, x1: Array, x2: Array | None = None) -> Any:
        return run(params, x1, x2)
    return fn


def _checked(model: models.Model, params: Any, x1: Any, x2: Any,
             stacked: bool = False) -> tuple[Array, Array | None]:
    """The boundary checks of the entry points: probe inputs x1 (and x2) and the params."""
    x1 = validate.check_inputs("x1", x1, model)
    validate.check_params(model, params, tuple(x1.shape[1:]),
                          name="params_series" if stacked else "params", stacked=stacked)
    if x2 is not None:
        x2 = validate.check_inputs("x2", x2, model, like=x1)
    return x1, x2


@validate.legacy_arguments(renamed={"batch_size": "block_size"})
def empirical_ntk(model: models.Model, params: Params, x1: Array, x2: Array | None = None, *,
                  trace_outputs: bool = True, per_layer: bool = False, engine: str = "auto",
                  block_size: int | None = None, device_count: int | None = None
                  ) -> Array | LayerwiseKernel:
    r"""Empirical NTK Θ(x1, x2) of ``model`` at ``params`` (module docstring for the formula).

    Args:
      model: a built :class:`ntkplast.models.Model`.
      params: its parameters (tuple of ``{"W", "b"}`` dicts).
      x1: probe inputs, ``N1 × input_shape``.
      x2: second probe set ``N2 × input_shape``; ``None`` means ``x1`` (shares the work).
      trace_outputs: True → ``N1 × N2`` kernel Σ_k Θ_kk; False → ``N1 × N2 × K × K``.
      per_layer: also return the per-weight-layer parts Θ_l (a :class:`LayerwiseKernel`).
      engine: one of :data:`ENGINES` (module docstring).
      block_size: block size b over probe points (a kernel block, not a training minibatch).
        Kernel blocks of b × b pairs are computed one at a time, so the working memory beyond
        the output is bounded by 2·b·K·Σ_l d_l (layerwise) or 2·b·K·P (generic) floats plus the
        b²·(K²) block (times L with ``per_layer``), independent of N. ``None`` picks the largest
        b within :data:`ntkplast.ntk.MEMORY_BUDGET_BYTES` (one block when everything fits).
        Called ``batch_size`` in 0.2; that keyword still works, with a DeprecationWarning.
      device_count: shard the rows of the kernel over the first this many local jax devices,
        one row block per device (default: every visible device; on CPU, more devices come from
        ``XLA_FLAGS=--xla_force_host_platform_device_count=D``). The result equals the
        one-device kernel; with x2=None the symmetric-half saving is given up across blocks.

    Returns:
      The kernel, or ``LayerwiseKernel(total, parts)`` with ``per_layer=True``.

    Raises:
      NtkplastError: unknown engine; params that do not fit the spec or the input shape; wrong
        input rank; NaN/Inf in params or inputs; an empty probe set.

    Examples:
      A tiny MLP on N = 4 probe inputs, K = 3 outputs: the traced kernel is a 4 × 4 PSD matrix,
      the full one 4 × 4 × 3 × 3, and the per-layer parts add up to the total:

      >>> import jax
      >>> import numpy as np
      >>> from ntkplast import models, ntk
      >>> model = models.build(models.ArchSpec(widths=(16,), num_outputs=3))
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
      >>> k = ntk.empirical_ntk(model, params, x)
      >>> k.shape, bool(np.allclose(k, k.T))
      ((4, 4), True)
      >>> from ntkplast import spectra
      >>> lam = spectra.eigenvalues(k)
      >>> bool(lam[-1] > -1e-5 * lam[0])                      # positive semi-definite
      True
      >>> full = ntk.empirical_ntk(model, params, x, trace_outputs=False)
      >>> full.shape
      (4, 4, 3, 3)
      >>> bool(np.allclose(np.trace(full, axis1=2, axis2=3), k, rtol=1e-4, atol=1e-4))
      True
      >>> total, parts = ntk.empirical_ntk(model, params, x, per_layer=True)
      >>> len(parts), bool(np.allclose(sum(parts), total, rtol=1e-4, atol=1e-4))
      (2, True)
      >>> generic = ntk.empirical_ntk(model, params, x, engine="generic")
      >>> bool(np.allclose(generic, k, rtol=1e-4, atol=1e-4))  # the engines agree
      True
    """
    engine = resolve_engine(model, engine)
    x1, x2 = _checked(model, params, x1, x2)
    return empirical_ntk_unchecked(model, params, x1, x2, trace_outputs=trace_outputs,
                                   per_layer=per_layer, engine=engine, block_size=block_size,
                                   device_count=device_count)


def empirical_ntk_unchecked(model: models.Model, params: Params, x1: Array,
                            x2: Array | None = None, *, trace_outputs: bool = True,
                            per_layer: bool = False, engine: str = "auto",
                            block_size: int | None = None, device_count: int | None = None
                            ) -> Array | LayerwiseKernel:
    """:func:`empirical_ntk` without the checks of its inputs (the unchecked core, module
    docstring), for callers that have run them.

    ``params`` must fit the model and be finite, ``x1``/``x2`` finite float arrays of one
    per-example shape (:func:`ntkplast.validate.check_probe_set`); the analysis driver checks
    them once per checkpoint and then calls this. The options are still checked.

    Examples:
      >>> import jax
      >>> import numpy as np
      >>> from ntkplast import models, ntk
      >>> model = models.build(models.ArchSpec(widths=(16,), num_outputs=3))
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
      >>> x = jax.numpy.asarray(x)                        # checked once, e.g. per run
      >>> k = ntk.empirical_ntk_unchecked(model, params, x)
      >>> bool(np.allclose(k, ntk.empirical_ntk(model, params, x), rtol=1e-4, atol=1e-4))
      True
    """
    engine = resolve_engine(model, engine)
    x1, x2 = _checks.cast(params, x1, x2)
    if block_size is None:
        n = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
        block_size = _blocking.auto_block(model, engine, params, x1, n, trace_outputs,
                                          per_layer)
    fn = kernel_fn(model, trace_outputs=trace_outputs, per_layer=per_layer, engine=engine,
                   block_size=block_size)
    devs = _blocking.devices(device_count)
    if len(devs) == 1 or x1.shape[0] < len(devs):
        return fn(params, x1, x2)
    return _blocking.sharded_rows(fn, params, x1, x2, devs)


def _stack(params_series: Any) -> Any:
    """Stacked pytree (leading checkpoint axis) from a list of params, or as given."""
    if isinstance(params_series, (tuple, list)) and params_series and \
            isinstance(params_series[0], dict):
        return params_series  # already stacked: a tuple of layer dicts
    if not isinstance(params_series, Sequence) or not params_series:
        raise NtkplastError("params_series: expected a non-empty list of parameter tuples or "
                            "one stacked parameter tuple (leading checkpoint axis)")
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *params_series)


@functools.lru_cache(maxsize=64)
def _series_fn(model: models.Model, engine: str, trace: bool, per_layer: bool,
               block_size: int | None) -> Callable:
    run = _body(model, engine, trace, per_layer, block_size)
    return jax.jit(lambda ps, x1, x2: lax.map(lambda p: run(p, x1, x2), ps))


@validate.legacy_arguments(renamed={"batch_size": "block_size"})
def series_ntk(model: models.Model, params_series: Sequence[Params] | Params, x1: Array,
               x2: Array | None = None, *, trace_outputs: bool = True, per_layer: bool = False,
               engine: str = "auto", block_size: int | None = None) -> Array | LayerwiseKernel:
    """Empirical NTK at T checkpoints of one run in one compiled call: ``T × N1 × N2`` (traced).

    ``params_series`` is a list of T parameter tuples or one parameter tuple whose leaves carry
    a leading checkpoint axis of length T. The checkpoints run one after another inside one
    ``jax.jit``/``lax.map`` (one compilation, memory of one checkpoint's kernel computation
    plus the T kernels). Returns the :func:`empirical_ntk` result with a leading T axis on every
    array; the other arguments are as there (``batch_size=`` too, deprecated for
    ``block_size=``).

    Examples:
      >>> import jax
      >>> import numpy as np
      >>> from ntkplast import models, ntk
      >>> model = models.build(models.ArchSpec(widths=(16,), num_outputs=3))
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
      >>> later = jax.tree_util.tree_map(lambda p: 1.1 * p, params)   # a second checkpoint
      >>> ks = ntk.series_ntk(model, [params, later], x)
      >>> ks.shape                                            # T × N × N
      (2, 4, 4)
      >>> bool(np.allclose(ks[0], ntk.empirical_ntk(model, params, x), rtol=1e-4, atol=1e-4))
      True
    """
    stacked = _stack(params_series)
    engine = resolve_engine(model, engine)
    x1, x2 = _checks.cast(stacked, *_checked(model, stacked, x1, x2, stacked=True))
    if block_size is None:
        n = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
        first = jax.tree_util.tree_map(lambda leaf: leaf[0], stacked)
        block_size = _blocking.auto_block(model, engine, first, x1, n, trace_outputs,
                                          per_layer)
    fn = _series_fn(model, engine, trace_outputs, per_layer, block_size)
    return fn(stacked, x1, x2)


def infinite_width_ntk(model: models.Model, x1: Array, x2: Array | None = None, *,
                       trace_outputs: bool = True) -> Array:
    r"""Analytic infinite-width NTK Θ_∞ of the same architecture (needs neural-tangents).

    ``x1``: ``N1 × input_shape``, ``x2``: ``N2 × input_shape`` (``None``: ``x1``); returns
    ``N1 × N2`` (traced) or ``N1 × N2 × K × K``.

    neural-tangents' ``kernel_fn(x1, x2, "ntk")`` of the spec's stax triple
    (``ntkplast.ntk._stax``; Jacot et al. 2018; Novak et al. 2020). Θ_∞ is the same for
    every output, so the full kernel is Θ_∞ ⊗ I_K and the traced one K·Θ_∞. With
    ``parameterization="ntk"`` the empirical NTK converges to it as the widths grow.
    """
    x1 = validate.check_inputs("x1", x1, model)
    if x2 is not None:
        x2 = validate.check_inputs("x2", x2, model, like=x1)
    return _nt.infinite_width(model, x1, x2, trace_outputs)
