"""neural-tangents as an engine (``nt:<implementation>``) and the infinite-width reference.

neural-tangents is imported on first use only: it pulls in tensorflow and breaks on jax ≥ 0.5,
so the rest of :mod:`ntkplast.ntk` works without it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ntkplast import models
from ntkplast.errors import NtkplastError

Array = jax.Array
IMPLEMENTATIONS = ("jacobian_contraction", "ntk_vector_products", "structured_derivatives")


def import_nt() -> Any:
    """``neural_tangents``, or an :class:`NtkplastError` that says how to get it."""
    try:
        import neural_tangents
    except ImportError as e:
        raise NtkplastError(f"engine: neural-tangents is not importable here ({e}); use the full "
                            f"environment (jax 0.4.25 + neural-tangents 0.6.5) or engine="
                            f"'layerwise'/'generic'") from None
    return neural_tangents


def nt_parts(model: models.Model, params: models.Params, xa: Array, xb: Array | None,
             trace: bool, per_layer: bool, implementation: str) -> Array:
    """neural-tangents' ``empirical_ntk_fn`` stacked as ``(L, Na, Nb[, K, K])`` or ``(1, …)``.

    Per-layer parts are the NTK with respect to one layer's parameters, the others held fixed.
    neural-tangents averages over ``trace_axes``; the traced kernel here is the sum Σ_k Θ_kk, so
    its result is multiplied by K.
    """
    nt = import_nt()
    impl = getattr(nt.NtkImplementation, implementation.upper())
    trace_axes = (-1,) if trace else ()
    scale = params[-1]["W"].shape[-1] if trace else 1
    if not per_layer:
        fn = nt.empirical_ntk_fn(model.apply, trace_axes=trace_axes, vmap_axes=0,
                                 implementation=impl)
        return scale * fn(xa, xb, params)[None]
    parts = []
    for i in range(len(params)):
        def apply_i(p_i, x, i=i):
            return model.apply(params[:i] + (p_i,) + params[i + 1:], x)
        fn = nt.empirical_ntk_fn(apply_i, trace_axes=trace_axes, vmap_axes=0,
                                 implementation=impl)
        parts.append(fn(xa, xb, params[i]))
    return scale * jnp.stack(parts)


def infinite_width(model: models.Model, x1: Array, x2: Array | None, trace: bool) -> Array:
    """Analytic infinite-width NTK of ``model.spec`` via :mod:`ntkplast.ntk._stax`."""
    from ntkplast.ntk import _stax as stax_bridge

    import_nt()
    kernel_fn = stax_bridge.to_stax(model.spec)[2]
    k = kernel_fn(x1, x2, "ntk")  # the same for every output: Θ_∞ ⊗ I_K
    num_out = model.spec.num_outputs
    if trace:
        return num_out * k
    return k[:, :, None, None] * jnp.eye(num_out, dtype=k.dtype)
