r"""Any JAX model: ``apply(params, x) -> logits`` on any parameter pytree.

:class:`FunctionModel` is the protocol for models that no adapter recognises as an ntkplast
architecture (attention, BatchNorm in inference mode, custom layers):

* ``apply(params, x)``: logits ``N × K`` for a batch ``x``; ``params`` any pytree. That alone
  gives the empirical NTK (:func:`empirical_ntk`, the generic engine of :mod:`ntkplast.ntk`:
  Jacobian contraction by vjp/vmap) and with it every kernel diagnostic of
  :mod:`ntkplast.spectra` (summary, distances, alignment). Per-layer parts Θ_l group the
  parameter leaves by their module, the key path without its last name (``Dense_0``,
  ``layers.1``; :func:`layer_names`).
* ``layers``: optional layer functions ``f_l(params, u_{l-1}) -> (z_l, a_l)`` whose composition
  is the network (u_0 = x, u_l = a_l, the readout's a_L = z_L = logits): today's
  ``model.intermediates`` contract, written by the user. They give unit dormancy
  (:func:`unit_scores`, on a_1 … a_{L-1}) and layer-Jacobian spectra (:func:`layer_spectra`,
  J_l(x) = ∂a_l/∂u_{l-1} built per input by forward mode, then its SVD).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import dormancy, isometry
from ntkplast.adapters.pytrees import path_name
from ntkplast.errors import NtkplastError
from ntkplast.ntk import LayerwiseKernel, generic_parts

Array = jax.Array
LayerFn = Callable[[Any, Array], tuple[Array, Array]]

__all__ = ["FunctionModel", "empirical_ntk", "layer_names", "layer_spectra", "unit_scores"]


@dataclasses.dataclass(frozen=True)
class FunctionModel:
    """A JAX model given by functions (module docstring). Hashable, so jit reuses its
    compilation across checkpoints."""

    apply_fn: Callable[[Any, Array], Array]
    layers: tuple[LayerFn, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))

    def apply(self, params: Any, x: Array) -> Array:
        """Logits ``N × K`` (checked against the composition of ``layers`` in the tests)."""
        return self.apply_fn(params, x)

    def intermediates(self, params: Any, x: Array) -> tuple[list[Array], list[Array]]:
        """Pre-activations ``[z_1 … z_L]`` and post-activations ``[a_1 … a_{L-1}]``."""
        _need_layers(self, "intermediates")
        pre, post, u = [], [], x
        for f in self.layers:
            z, u = f(params, u)
            pre.append(z)
            post.append(u)
        return pre, post[:-1]


def _groups(params: Any) -> tuple[list[str], list[list[int]], Any, list[Any]]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names: list[str] = []
    index: list[list[int]] = []
    for i, (path, _) in enumerate(flat):
        module = path_name(path).rpartition(".")[0] or "params"
        if module not in names:
            names.append(module)
            index.append([])
        index[names.index(module)].append(i)
    return names, index, treedef, [leaf for _, leaf in flat]


def layer_names(params: Any) -> list[str]:
    """The modules that per-layer NTK parts are grouped by, in the order of ``params``'s
    leaves."""
    return _groups(params)[0]


def empirical_ntk(model: FunctionModel, params: Any, x1: Array, x2: Array | None = None, *,
                  trace_outputs: bool = True, per_layer: bool = False
                  ) -> Array | LayerwiseKernel:
    """Empirical NTK Θ(x, x')_{kk'} = Σ_p ∂f_k(x)/∂θ_p ∂f_{k'}(x')/∂θ_p (Jacot et al. 2018).

    The generic engine of :mod:`ntkplast.ntk` (per-example Jacobians by reverse mode, contracted
    leaf by leaf) on the model's own pytree. Returns ``N1 × N2`` (output-traced, Σ_k Θ_kk) or
    ``N1 × N2 × K × K``; with ``per_layer`` a :class:`~ntkplast.ntk.LayerwiseKernel` whose parts
    follow :func:`layer_names`.
    """
    names, index, treedef, leaves = _groups(params)

    def apply(grouped: Sequence[Sequence[Array]], x: Array) -> Array:
        flat: list[Any] = [None] * len(leaves)
        for idx, group in zip(index, grouped):
            for i, leaf in zip(idx, group):
                flat[i] = leaf
        return model.apply(jax.tree_util.tree_unflatten(treedef, flat), x)

    grouped = tuple(tuple(leaves[i] for i in idx) for idx in index)
    shim = types.SimpleNamespace(apply=apply)
    parts = jax.jit(lambda g, a, b: generic_parts(shim, g, a, b, trace_outputs, per_layer))(
        grouped, jnp.asarray(x1), None if x2 is None else jnp.asarray(x2))
    if per_layer:
        return LayerwiseKernel(jnp.sum(parts, axis=0), tuple(parts))
    return parts[0]


def _need_layers(model: FunctionModel, what: str) -> None:
    if not model.layers:
        raise NtkplastError(f"FunctionModel: {what} needs the layer functions; pass "
                            f"layers=(f_1, …, f_L) with f_l(params, u) -> (z_l, a_l)")


def unit_scores(model: FunctionModel, params: Any, x: Array,
                **kwargs: Any) -> tuple[dormancy.LayerDormancy, ...]:
    """Dormancy and feature rank of every hidden layer's a_l (Sokar et al. 2023; Kumar et al.
    2021; :mod:`ntkplast.dormancy`, whose :func:`~ntkplast.dormancy.unit_scores` keywords
    ``taus``, ``frequency_threshold``, ``srank_delta`` apply)."""
    _need_layers(model, "unit_scores")
    _, post = model.intermediates(params, jnp.asarray(x))
    stats = [(dormancy.dormancy_scores(a), dormancy.dead_units(a), dormancy.active_frequency(a),
              dormancy.feature_matrix(a)) for a in post]
    return dormancy.summarize_layers(stats, **kwargs)


def layer_spectra(model: FunctionModel, params: Any,
                  x: Array) -> tuple[isometry.SingularValueSummary, ...]:
    """Isometry summaries of every layer Jacobian J_l(x) = ∂a_l/∂u_{l-1} over the probe inputs
    (Pennington, Schoenholz & Ganguli 2017; index of Joudaki et al. 2023), readout last.

    J_l is built explicitly per input (forward mode) and its singular values summarised by
    :func:`~ntkplast.isometry.summarize_singular_values` with zeros σ ≤ max(d_out, d_in) · eps ·
    max σ, as :func:`ntkplast.isometry.layer_spectra`; ``units_off`` counts rows of J_l that are
    exactly zero.
    """
    _need_layers(model, "layer_spectra")
    out, u = [], jnp.asarray(x)
    for f in model.layers:
        def one(ui: Array, f: LayerFn = f) -> Array:
            return f(params, ui[None])[1][0]

        a = f(params, u)[1]
        jac = jax.vmap(jax.jacfwd(one))(u)
        jac = jac.reshape(u.shape[0], int(np.prod(a.shape[1:])), -1)
        s = jnp.linalg.svd(jac, compute_uv=False)
        rtol = max(jac.shape[1:]) * float(jnp.finfo(s.dtype).eps)
        summary = isometry.summarize_singular_values(s, rtol=rtol).to_floats()
        units_off = float(jnp.mean(jnp.sum(jnp.all(jac == 0, axis=-1), axis=-1)))
        out.append(summary._replace(units_off=units_off))
        u = a
    return tuple(out)
