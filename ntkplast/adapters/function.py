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
* ``trainable``: optional name of the entry of a dict ``params`` that holds the trained
  parameters (Flax's ``"params"`` beside ``"batch_stats"``); the NTK is then taken with respect
  to that entry only, the others (running statistics of a BatchNorm in inference mode) held
  fixed at the checkpoint's values.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import dormancy, isometry
from ntkplast.convert.pytrees import path_name
from ntkplast.errors import NtkplastError
from ntkplast.ntk import LayerwiseKernel, generic_parts

Array = jax.Array
LayerFn = Callable[[Any, Array], tuple[Array, Array]]

__all__ = ["FunctionModel", "empirical_ntk", "layer_names", "layer_spectra", "unit_scores"]


@dataclasses.dataclass(frozen=True)
class FunctionModel:
    """A JAX model given by functions (module docstring). Hashable (equal when it holds the
    same functions), so jit reuses its compilation across checkpoints: build it from functions
    defined once, not from a fresh lambda per call."""

    apply_fn: Callable[[Any, Array], Array]
    layers: tuple[LayerFn, ...] = ()
    trainable: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))

    def split(self, params: Any) -> tuple[Any, dict[str, Any]]:
        """``(trained, fixed)``: the entry ``trainable`` of ``params`` and the other entries
        (``(params, {})`` without ``trainable``)."""
        if self.trainable is None:
            return params, {}
        if not isinstance(params, dict) or self.trainable not in params:
            keys = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise NtkplastError(f"FunctionModel: trainable={self.trainable!r}, but the "
                                f"parameters have no such entry ({keys})")
        return params[self.trainable], {k: v for k, v in params.items() if k != self.trainable}

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


def layer_names(params: Any, model: FunctionModel | None = None) -> list[str]:
    """The modules that per-layer NTK parts are grouped by, in the order of ``params``'s
    leaves (of its ``model.trainable`` entry, given a model that names one)."""
    return _groups(params if model is None else model.split(params)[0])[0]


def empirical_ntk(model: FunctionModel, params: Any, x1: Array, x2: Array | None = None, *,
                  trace_outputs: bool = True, per_layer: bool = False
                  ) -> Array | LayerwiseKernel:
    """Empirical NTK Θ(x, x')_{kk'} = Σ_p ∂f_k(x)/∂θ_p ∂f_{k'}(x')/∂θ_p (Jacot et al. 2018).

    The generic engine of :mod:`ntkplast.ntk` (per-example Jacobians by reverse mode, contracted
    leaf by leaf) on the model's own pytree. Returns ``N1 × N2`` (output-traced, Σ_k Θ_kk) or
    ``N1 × N2 × K × K``; with ``per_layer`` a :class:`~ntkplast.ntk.LayerwiseKernel` whose parts
    follow :func:`layer_names`.

    One compilation per (model, options, parameter structure, input shapes): ``model`` is a
    static argument of one module-level ``jax.jit``, so repeated calls (checkpoints of one run)
    reuse it, as :func:`ntkplast.ntk.kernel_fn` does for ntkplast models.
    """
    return _kernel(model, params, jnp.asarray(x1), None if x2 is None else jnp.asarray(x2),
                   trace_outputs, per_layer)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _kernel(model: FunctionModel, params: Any, x1: Array, x2: Array | None, trace_outputs: bool,
            per_layer: bool) -> Array | LayerwiseKernel:
    """:func:`empirical_ntk` under jit: the leaves regrouped by module, as
    :func:`~ntkplast.ntk.generic_parts` takes them (a sequence of per-layer pytrees)."""
    trained, fixed = model.split(params)
    _, index, treedef, leaves = _groups(trained)

    def apply(grouped: Sequence[Sequence[Array]], x: Array) -> Array:
        flat: list[Any] = [None] * len(leaves)
        for idx, group in zip(index, grouped):
            for i, leaf in zip(idx, group):
                flat[i] = leaf
        tree = jax.tree_util.tree_unflatten(treedef, flat)
        return model.apply({**fixed, model.trainable: tree} if model.trainable else tree, x)

    grouped = tuple(tuple(leaves[i] for i in idx) for idx in index)
    parts = generic_parts(types.SimpleNamespace(apply=apply), grouped, x1, x2, trace_outputs,
                          per_layer)
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


def layer_spectra(model: FunctionModel, params: Any, x: Array) -> isometry.LayerSpectra:
    """Singular values of every layer Jacobian J_l(x) = ∂a_l/∂u_{l-1} over the probe inputs
    (Pennington, Schoenholz & Ganguli 2017; index of Joudaki et al. 2023), readout last.

    J_l is built explicitly per input (forward mode) and its singular values summarised by
    :func:`~ntkplast.isometry.summarize_singular_values` with zeros σ ≤ max(d_out, d_in) · eps ·
    max σ, as :func:`ntkplast.isometry.layer_spectra`.

    Returns:
      :class:`~ntkplast.isometry.LayerSpectra`, the type :func:`ntkplast.isometry.layer_spectra`
      returns: one :class:`~ntkplast.isometry.JacobianSpectrum` per layer function, every one
      exact and with full spectra on all N inputs (``subsample`` is ``0 … N−1``). Per input,
      ``chi`` = mean σ², ``mean_sigma4`` = mean σ⁴ and ``units_off`` the number of rows of J_l
      that are exactly zero; the summary's ``units_off`` is their mean.
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
        units_off = np.asarray(jnp.sum(jnp.all(jac == 0, axis=-1), axis=-1))
        sq = np.asarray(s * s)
        out.append(isometry.JacobianSpectrum(
            summary._replace(units_off=float(np.mean(units_off))), np.asarray(s),
            sq.mean(axis=1), (sq * sq).mean(axis=1), units_off, s.shape[-1], True))
        u = a
    return isometry.LayerSpectra(tuple(out), np.arange(u.shape[0]))
