r"""Spectra of a network: layer Jacobians, the input–output Jacobian and the weights.

:func:`layer_spectra` (per weight layer J_l(x), exact moments on every probe input, full spectra
on a subsample, Hutchinson estimates for layers too large to build), :func:`input_output_spectra`
(J(x) = ∂f/∂x) and :func:`weight_spectra` (σ(m_W W_l)), each with its unchecked core. The
Jacobians themselves are built by ``ntkplast.isometry._jacobians``; the summaries come from
:mod:`ntkplast.isometry.summaries`. The formulas are in the :mod:`ntkplast.isometry` package
docstring (the "module docstring" the functions below refer to).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import linalg, models
from ntkplast.errors import NtkplastError
from ntkplast.isometry import _jacobians
from ntkplast.isometry.summaries import (
    JacobianSpectrum,
    LayerSpectra,
    SingularValueSummary,
    summarize_singular_values,
)
from ntkplast.validate import check_params, check_probe_set, legacy_arguments

Array = jax.Array

__all__ = ["BLOCK_ENTRIES", "MAX_MATRIX_ENTRIES", "input_output_spectra",
           "input_output_spectra_unchecked", "layer_spectra", "layer_spectra_unchecked",
           "weight_spectra", "weight_spectra_unchecked"]


MAX_MATRIX_ENTRIES = 2**22
"""Largest layer matrix (d_out·d_in and d_out²) built explicitly; larger layers use Hutchinson."""
BLOCK_ENTRIES = 2**24
"""Working-set size (array entries) of one block: a stack of explicit Jacobians for one batched
SVD, or a batch of Hutchinson probes."""


# ------------------------------------------------------------------------------ layer Jacobians
def _gate(layer: models.Layer, z: Array) -> Array:
    """φ'(z) (ones for the readout); ReLU's derivative at 0 is 0, so z ≤ 0 gates a unit off."""
    if layer.activation is None:
        return jnp.ones_like(z)
    return jax.jvp(models.activation_fn(layer), (z,), (jnp.ones_like(z),))[1]


def _input_shapes(model: models.Model, x_shape: tuple[int, ...],
                  out_shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Per-example shape of what each layer consumes (after pooling and flattening; a CReLU
    block emits twice its pre-activation's units)."""
    shapes, shape = [], x_shape
    for layer, out in zip(model.layers, out_shapes):
        if layer.flatten:
            shape = (math.prod(shape),)
        shapes.append(shape)
        out = out[:-1] + (out[-1] * layer.features_per_unit,)
        shape = (out[0] // 2, out[1] // 2, out[2]) if layer.pool else out
    return shapes


def _fits(d_in: int, d_out: int, max_entries: int) -> bool:
    """Whether layer l is built explicitly: L_l (d_out × d_in) and G_l (d_out²) both fit."""
    return max(d_out * d_in, d_out * d_out) <= max_entries


def _eps(dtype: Any) -> float:
    return float(jnp.finfo(dtype).eps)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _layer_core(model: models.Model, max_entries: int, num_probes: int, params: models.Params,
                x: Array, idx: Array, key: Array) -> list[dict[str, Any]]:
    """One compiled pass over all layers: moments on all inputs, spectra on ``x[idx]``."""
    pre, _ = model.intermediates(params, x)
    in_shapes = _input_shapes(model, tuple(x.shape[1:]), [tuple(z.shape[1:]) for z in pre])
    inputs = models.block_inputs(model, params, x)
    out = []
    for i, (layer, p, z, in_shape) in enumerate(zip(model.layers, params, pre, in_shapes)):
        w = p["W"]
        d_in, d_out = math.prod(in_shape), math.prod(z.shape[1:])
        n = min(d_in, d_out)
        exact = _fits(d_in, d_out, max_entries)
        if not _diagonal_gate(layer):
            if not exact:
                raise NtkplastError(
                    f"layer {i}: its block ({layer.activation}, norm or skip) has no diagonal "
                    f"gate, so its Jacobian is built explicitly, and {d_out} × {d_in} exceeds "
                    f"max_matrix_entries={max_entries}; raise it or use smaller probe images")
            out.append(_block_moments(model, layer, p, inputs[i], n, idx))
            continue
        gate = _gate(layer, z)
        t1, t2 = _jacobians.layer_moments(model, layer, in_shape, exact, num_probes, w, gate,
                                          jax.random.fold_in(key, i), BLOCK_ENTRIES)
        gate = gate.reshape(z.shape[0], -1)
        res = {"chi": t1 / n, "mean_sigma4": t2 / n, "units_off": jnp.sum(gate == 0, axis=1),
               "gate_sub": None, "lmat": None, "jac_sub": None}
        if exact and idx.shape[0] > 0:  # spectra on the host (ntkplast.linalg)
            res["gate_sub"] = gate[idx]
            res["lmat"] = _jacobians.explicit_map(model, layer, w, in_shape).T
        out.append(res)
    return out


def _diagonal_gate(layer: models.Layer) -> bool:
    """Whether J_l = diag(φ'(z_l)) L_l with L_l the stored W: an elementwise block with no
    norm, no skip and no weight constraint."""
    return layer.elementwise


def _block_moments(model: models.Model, layer: models.Layer, p: dict[str, Array], u: Array,
                   n: int, idx: Array) -> dict[str, Any]:
    """Moments of the explicit block Jacobians ∂u_l/∂u_{l-1} (GroupSort, norms, skips)."""
    def one(ui: Array) -> Array:
        return models.block_map(model, layer, p, ui[None])[0]

    jac = jax.vmap(jax.jacfwd(one))(u)
    jac = jac.reshape(u.shape[0], math.prod(jac.shape[1:1 + jac.ndim - u.ndim]), -1)
    sq = jac * jac
    small = jac @ jnp.swapaxes(jac, 1, 2) if jac.shape[1] <= jac.shape[2] else \
        jnp.swapaxes(jac, 1, 2) @ jac
    rows_off = jnp.all(jac == 0, axis=2)
    if layer.features_per_unit > 1:  # CReLU: a unit is off when both its features are
        units = p["W"].shape[-1]
        rows_off = jnp.all(rows_off.reshape(u.shape[0], -1, layer.features_per_unit, units),
                           axis=2)
    return {"chi": jnp.sum(sq, axis=(1, 2)) / n,
            "mean_sigma4": jnp.sum(small * small, axis=(1, 2)) / n,
            "units_off": jnp.sum(rows_off.reshape(u.shape[0], -1), axis=1),
            "gate_sub": None, "lmat": None, "jac_sub": jac[idx] if idx.shape[0] else None}


def _check_options(spectra_subsample: int | None, num_probes: int) -> None:
    if spectra_subsample is not None and (not isinstance(spectra_subsample, (int, np.integer))
                                          or spectra_subsample < 0):
        raise NtkplastError(f"spectra_subsample: expected a non-negative int or None (all "
                            f"probe inputs), got {spectra_subsample!r}")
    if not isinstance(num_probes, (int, np.integer)) or num_probes < 1:
        raise NtkplastError(f"num_probes: expected a positive int, got {num_probes!r}")


def _subsample(n: int, size: int | None, key: Array | None) -> Array:
    size = n if size is None else min(int(size), n)
    if key is None:
        return jnp.arange(size)
    return jnp.sort(jax.random.choice(key, n, (size,), replace=False))


_summarize = jax.jit(lambda s, rtol: summarize_singular_values(s, rtol=rtol),
                     static_argnums=1)


def _layer_summary(n: int, res: dict[str, Any], spectrum: SingularValueSummary | None
                   ) -> SingularValueSummary:
    """Pooled moments over all inputs; spectrum-only summaries from the subsample (or NaN)."""
    if spectrum is None:
        spectrum = SingularValueSummary(*(math.nan,) * 8)
    c = float(np.mean(np.asarray(res["chi"], np.float64)))
    m4 = float(np.mean(np.asarray(res["mean_sigma4"], np.float64)))
    return spectrum.to_floats()._replace(n=float(n), chi=c, var_sigma_sq=max(m4 - c * c, 0.0),
                                         units_off=float(np.mean(res["units_off"])))


def _host_singular_values(res: dict[str, Any]) -> np.ndarray | None:
    """σ of one layer's explicit Jacobians on the subsample (host LAPACK), ``None`` if none."""
    if res["gate_sub"] is not None:
        return linalg.gated_singular_values(res["gate_sub"], res["lmat"], BLOCK_ENTRIES)
    if res["jac_sub"] is not None:
        return linalg.singular_values(res["jac_sub"])
    return None


def layer_spectra(model: models.Model, params: models.Params, x: Array, *,
                  key: Array | None = None, spectra_subsample: int | None = 32,
                  num_probes: int = 8,
                  max_matrix_entries: int = MAX_MATRIX_ENTRIES) -> LayerSpectra:
    """Singular values of every layer Jacobian J_l(x) = diag(φ'(z_l)) L_l (module docstring).

    Args:
      model: the network (:func:`ntkplast.models.build`).
      params: its parameters.
      x: probe inputs, ``N × input_shape``.
      spectra_subsample: number S of probe inputs whose full spectra are computed (SVD of the
        explicit J_l); ``None`` for all, 0 for none. Moments use all N inputs.
      key: PRNG key; with a key the subsample is drawn at random without replacement, without
        one it is the first S inputs. It also seeds the Hutchinson probes (key 0 when absent).
      num_probes: Rademacher probes per input for tr((JJᵀ)²) of layers too large to build.
      max_matrix_entries: a layer is built explicitly (exact moments, full spectra) when
        d_out·d_in and d_out² are both at most this; otherwise tr((JJᵀ)²) is estimated.

    Returns:
      :class:`LayerSpectra`, one :class:`JacobianSpectrum` per weight layer, readout last.
      Zeros are σ ≤ max(d_out, d_in) · eps · max σ; for ReLU layers ``units_off`` counts the
      units with z ≤ 0 exactly (equal to ``zeros`` for square layers with full-rank W). A
      CReLU layer's J_l = J_φ L_l (2d × d_in, J_φ with orthonormal columns where z has no
      zero) has the n = min(d, d_in) singular values of L_l on every input, and ``units_off``
      counts the units whose two features are both zero (z = 0).

    One jit-compiled pass per (model, settings, probe-set shape), reused across checkpoints.
    References: Pennington, Schoenholz & Ganguli (2017); Joudaki et al. (2023).
    """
    x = check_probe_set(model, params, x)
    return layer_spectra_unchecked(model, params, x, key=key,
                                   spectra_subsample=spectra_subsample, num_probes=num_probes,
                                   max_matrix_entries=max_matrix_entries)


def layer_spectra_unchecked(model: models.Model, params: models.Params, x: Array, *,
                            key: Array | None = None, spectra_subsample: int | None = 32,
                            num_probes: int = 8,
                            max_matrix_entries: int = MAX_MATRIX_ENTRIES) -> LayerSpectra:
    """:func:`layer_spectra` on a probe set already checked (:func:`check_probe_set`): its
    unchecked core (module docstring)."""
    _check_options(spectra_subsample, num_probes)
    k_sub, k_probe = jax.random.split(jax.random.PRNGKey(0) if key is None else key)
    idx = _subsample(x.shape[0], spectra_subsample, None if key is None else k_sub)
    pre = _jacobians.pre_activation_shapes(model, tuple(params), x)
    in_shapes = _input_shapes(model, tuple(x.shape[1:]), [tuple(z.shape[1:]) for z in pre])
    core = jax.device_get(_layer_core(model, int(max_matrix_entries), int(num_probes),
                                      tuple(params), x, idx, k_probe))
    svs = linalg.host_map([functools.partial(_host_singular_values, res) for res in core])
    layers = []
    for layer, res, sv, z, in_shape in zip(model.layers, core, svs, pre, in_shapes):
        d_in, d_out = math.prod(in_shape), math.prod(z.shape[1:])
        n = min(d_in, d_out)
        summary = None
        if sv is not None:
            sv = sv[..., :n]  # a CReLU block's J_φ·L_l (2d rows) has rank ≤ n: drop the rest
            summary = _summarize(sv, max(d_in, d_out) * _eps(sv.dtype))
        exact = _fits(d_in, d_out, max_matrix_entries) or not _diagonal_gate(layer)
        layers.append(JacobianSpectrum(_layer_summary(n, res, summary), sv, res["chi"],
                                       res["mean_sigma4"], res["units_off"], n, exact))
    return LayerSpectra(tuple(layers), np.asarray(idx))


# ------------------------------------------------------------------------- input–output Jacobian
@legacy_arguments(renamed={"batch_size": "block_size"})
def input_output_spectra(model: models.Model, params: models.Params, x: Array, *,
                         block_size: int = 256) -> JacobianSpectrum:
    """Singular values of the input–output Jacobian J(x) = ∂f/∂x ∈ R^{K×D} for every input.

    Built per input by reverse mode (K ≤ D) or forward mode, vmapped over blocks of
    ``block_size`` probe inputs (``block_size · K · D`` floats); when x enters only through a
    dense first layer of K ≤ d_1 < D units, as ∂f/∂z_1 · Rᵀ (K × d_1, the same σ; m_W W_1 =
    QR, ``ntkplast.isometry._jacobians.first_layer_r``), which stops the backward pass at
    z_1; σ = √λ of the smaller Gram in float64 (:func:`ntkplast.linalg.gram_singular_values`).
    n = min(K, D) is small, so full spectra are kept for all N inputs (``singular_values`` is
    ``(N, n)``); zeros are σ ≤ max(K, D) · eps · max σ. Pennington, Schoenholz & Ganguli (2017):
    at dynamical isometry every σ is 1; a linear network of orthogonal layers with gain c has
    every σ = c^L.
    ``block_size`` was ``batch_size`` in 0.2; that keyword still works, with a
    DeprecationWarning.
    """
    x = check_probe_set(model, params, x)
    return input_output_spectra_unchecked(model, params, x, block_size=block_size)


def input_output_spectra_unchecked(model: models.Model, params: models.Params, x: Array, *,
                                   block_size: int = 256) -> JacobianSpectrum:
    """:func:`input_output_spectra` on a probe set already checked (:func:`check_probe_set`):
    its unchecked core (module docstring)."""
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise NtkplastError(f"block_size: expected a positive int, got {block_size!r}")
    r = _jacobians.first_layer_r(model, params, tuple(x.shape[1:]))
    jac = np.asarray(_jacobians.io_jacobians(model, int(block_size), tuple(params), x, r))
    s = linalg.gram_singular_values(jac)
    summary = _summarize(s, max(model.spec.num_outputs, math.prod(x.shape[1:])) * _eps(s.dtype))
    sq = s * s
    return JacobianSpectrum(summary.to_floats(), s, sq.mean(axis=1), (sq * sq).mean(axis=1),
                            None, s.shape[1], True)


# ------------------------------------------------------------------------------ weight spectra
def weight_spectra(model: models.Model, params: models.Params) -> tuple[np.ndarray, ...]:
    """Singular values (descending) of each effective weight matrix m_W · W_l, readout last.

    For orthogonally constrained layers the effective weight is σ_w · C(W), not the stored
    free parameter (:func:`ntkplast.models.effective_weight`).

    Dense W_l (d_in × d_out) as is; a conv kernel (k × k × c_in × c_out) reshaped to
    c_out × (c_in·k·k), the matrix acting on one receptive field. σ = √λ of the smaller Gram
    in float64 (:func:`ntkplast.linalg.gram_singular_values`; an SVD for float64 weights).
    Pass a row through
    :func:`summarize_singular_values` for χ, isometry index and friends; orthogonal init
    (Saxe et al. 2014) gives every σ = σ_w.
    """
    check_params(model, params)
    return weight_spectra_unchecked(model, params)


def weight_spectra_unchecked(model: models.Model,
                             params: models.Params) -> tuple[np.ndarray, ...]:
    """:func:`weight_spectra` of params already checked (:func:`check_params`): its unchecked
    core (module docstring)."""
    out = []
    for layer, p in zip(model.layers, params):
        w = jnp.asarray(p["W"])
        m_w = models.multipliers(model, layer, w)[0]
        w = models.effective_weight(layer, w)
        out.append(linalg.gram_singular_values(m_w * w.reshape(-1, w.shape[-1])))
    return tuple(out)
