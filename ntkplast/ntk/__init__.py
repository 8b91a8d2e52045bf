r"""Empirical neural tangent kernels of ntkplast models, per layer, per checkpoint.

Θ(x, x')_{kk'} = Σ_p ∂f_k(x)/∂θ_p · ∂f_{k'}(x')/∂θ_p (Jacot, Gabriel & Hongler 2018), full
(``N1 × N2 × K × K``) or output-traced (``N1 × N2``), in total or per weight layer; the layouts
and engines are documented in :mod:`ntkplast.ntk.empirical`.

Its modules:

- ``empirical``: :func:`empirical_ntk` (and its unchecked core :func:`empirical_ntk_unchecked`),
  :func:`series_ntk` over T checkpoints in one compiled call, :func:`kernel_fn` (configure once,
  apply many), engine choice (:data:`ENGINES`, :func:`resolve_engine`), :func:`infinite_width_ntk`,
  :class:`LayerwiseKernel`
- ``operators``: matrix-free :func:`ntk_matvec` (Θv) and :func:`ntk_diagonal` (diag Θ) for the
  estimators of :mod:`ntkplast.spectra`
- ``_blocking``: memory blocking over probe points within :data:`MEMORY_BUDGET_BYTES`, rows sharded
  over devices
- ``_layerwise``: the structured engine: kernels from the factor Grams (``_tiles``)
- ``_factors``: its per-layer factors (Dense activation/backward factors, Conv patches;
  ``_sorted``)
- ``_generic``: the generic engine, :func:`generic_parts` (Jacobian contraction by vjp/vmap)
- ``_nt``: neural-tangents as an engine and the infinite-width reference
- ``_stax``: :func:`to_stax`, :func:`to_stax_params`: the spec as a neural-tangents stax net
- ``_types``: :class:`LayerwiseKernel`; ``_checks``: helpers of the entry points

Unchecked cores: a public ``<name>_unchecked`` is ``<name>`` without the boundary checks of its
probe set and parameters, for callers that ran them once (:mod:`ntkplast.analysis.driver`, per
checkpoint); :mod:`ntkplast.isometry` and :mod:`ntkplast.dormancy` follow the same convention.
"""

from ntkplast.ntk._generic import generic_parts
from ntkplast.ntk._stax import to_stax, to_stax_params
from ntkplast.ntk._types import LayerwiseKernel
from ntkplast.ntk.empirical import (
    ENGINES,
    empirical_ntk,
    empirical_ntk_unchecked,
    infinite_width_ntk,
    kernel_fn,
    resolve_engine,
    series_ntk,
)
from ntkplast.ntk.operators import ntk_diagonal, ntk_matvec

MEMORY_BUDGET_BYTES = 2 * 2**30
"""Working memory (bytes) allowed for one kernel block when ``block_size`` is automatic.

A setting: it is read on every call (``ntkplast.ntk._blocking.auto_block``), so assigning
``ntkplast.ntk.MEMORY_BUDGET_BYTES`` changes the blocks of later calls."""

__all__ = ["ENGINES", "MEMORY_BUDGET_BYTES", "LayerwiseKernel", "empirical_ntk",
           "empirical_ntk_unchecked", "generic_parts", "infinite_width_ntk", "kernel_fn",
           "ntk_diagonal", "ntk_matvec", "resolve_engine", "series_ntk", "to_stax",
           "to_stax_params"]
