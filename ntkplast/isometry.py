r"""Dynamical isometry: singular values of layer, input–output and weight Jacobians.

A network is dynamically isometric when every singular value of its input–output Jacobian
J(x) = ∂f/∂x sits near one, so signals and gradients keep their norm through depth
(Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
dynamical isometry", NeurIPS). Per weight layer l, on every probe input x:

* **Layer Jacobian** J_l(x) = ∂a_l/∂a_{l-1} = diag(φ'(z_l)) L_l, where L_l is the layer's linear
  map a ↦ m_W · a ⊛ W_l (Dense: L_l = (m_W W_l)ᵀ, d_l × d_{l-1}; Conv: the full convolution
  matrix, (H·W·c_out) × (H'·W'·c_in)). ``a_{l-1}`` is what the layer consumes (after the previous
  block's 2×2 average pool and any flatten); ``a_l`` is the post-activation *before* pooling,
  as in :meth:`ntkplast.models.Model.intermediates`. The pool is a fixed linear map between
  layers and belongs to no layer's Jacobian. The **readout** (no activation) is included with
  J_L = L_L = (m_W W_L)ᵀ, so the table covers every weight layer.
  Blocks with GroupSort/MaxMin, LayerNorm or a residual skip (:mod:`ntkplast.models`) have
  J_l(x) = ∂u_l/∂u_{l-1}, the whole block's map: GroupSort's permutation P(z) in place of
  diag(φ'), the norm's projection, and the identity of the skip, J_l = I + ∂a_l/∂u_{l-1}. These
  are built explicitly per input (forward-mode Jacobian of the block), so every moment is exact
  and spectra come from an SVD; ``units_off`` counts the rows of J_l that are exactly zero.
  GroupSort with orthogonal square weights gives J_l = P(z)·Wᵀ, orthogonal: every σ = 1.
* **Input–output Jacobian** J(x) = ∂f/∂x ∈ R^{K×D}.
* **Weight spectra** σ(m_W W_l), conv kernels reshaped to c_out × (c_in·k·k).

A K × D (or d_out × d_in) matrix has n = min(rows, cols) singular values; the eigenvalues of
M = JJᵀ are their squares (plus structural zeros when rows > cols, which are not counted).

Moments, exact for **every** probe input, from two traces: with u = φ'(z_l)² and
r_i = Σ_j (L_l)_{ij}² (the squared row norms, computed once per layer),

    tr(J Jᵀ) = Σ_i u_i r_i,      tr((J Jᵀ)²) = uᵀ (G ∘ G) u,   G = L_l L_lᵀ,

so χ = tr(JJᵀ)/n = mean σ² and mean σ⁴ = tr((JJᵀ)²)/n. When L_l is too large to hold
(conv layers on real images; ``max_matrix_entries``) χ stays exact and tr((JJᵀ)²) is the
Hutchinson estimate mean_p ‖JᵀJ w_p‖² over Rademacher w_p (Hutchinson 1989), one jvp-like
forward and one vjp per probe; then no full spectra are computed for that layer.

Full spectra (SVD of the explicit J_l) on a subsample of probe inputs give the summaries that
need every σ: mean (log σ)² over nonzero σ, the fraction of σ in [1/2, 2], the number of zeros,
the isometry index det(M)^{1/k} / (tr M / k) of M = JJᵀ over its k nonzero eigenvalues
(Joudaki, Daneshmand & Bach 2023, "On the impact of activation and normalization in obtaining
isometric embeddings at initialization", NeurIPS), and the isometry deviation, the mean of
tanh²(log σ) over every σ, zeros included (:func:`isometry_deviation`): mean (log σ)² and the
index see only nonzero σ, so they are blind to units that are off or dead (a dead layer reads
NaN), which the deviation counts at its maximum, 1. See :func:`summarize_singular_values` for
the exact definitions and the zero tolerance. Every summary is a :class:`SingularValueSummary`.

Each public function checks its probe set and parameters; its unchecked core
``<name>_unchecked`` (:func:`layer_spectra_unchecked`, …) skips those checks, for a caller that
ran them once (the analysis driver, per checkpoint), as in :mod:`ntkplast.ntk` and
:mod:`ntkplast.dormancy`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import _jacobians, linalg, models
from ntkplast.errors import NtkplastError
from ntkplast.validate import check_params, check_probe_set, legacy_arguments

Array = jax.Array

__all__ = ["JacobianSpectrum", "LayerSpectra", "SingularValueSummary", "check_params",
           "check_probe_set", "input_output_spectra", "input_output_spectra_unchecked",
           "isometry_deviation", "isometry_index", "layer_spectra", "layer_spectra_unchecked",
           "summarize_singular_values", "weight_spectra", "weight_spectra_unchecked"]

MAX_MATRIX_ENTRIES = 2**22
"""Largest layer matrix (d_out·d_in and d_out²) built explicitly; larger layers use Hutchinson."""
BLOCK_ENTRIES = 2**24
"""Working-set size (array entries) of one block: a stack of explicit Jacobians for one batched
SVD, or a batch of Hutchinson probes."""


# ------------------------------------------------------------------------ pure metric functions
def _nonzero(s: Array, rtol: float | None) -> Array:
    """Mask of σ > rtol · max σ per spectrum (default rtol = n · eps of the dtype)."""
    if rtol is None:
        rtol = s.shape[-1] * float(jnp.finfo(s.dtype).eps)
    return s > rtol * jnp.max(s, axis=-1, keepdims=True)


def _index(lam: Array, keep: Array) -> Array:
    k = jnp.sum(keep, axis=-1)
    log_gm = jnp.sum(jnp.where(keep, jnp.log(jnp.where(keep, lam, 1.0)), 0.0), axis=-1) / k
    am = jnp.sum(jnp.where(keep, lam, 0.0), axis=-1) / k
    return jnp.exp(log_gm) / am


def isometry_index(eigs: Array, *, rtol: float | None = None) -> Array:
    """Isometry index of a PSD matrix M from its eigenvalues (Joudaki et al. 2023).

    ``eigs``: ``(..., n)`` eigenvalues λ of M = JJᵀ (σ² of J). Over the nonzero eigenvalues
    (λ > ``rtol`` · max λ, default rtol = n · eps of the dtype; report the zeros apart),

        I(M) = (Π_i λ_i)^{1/k} / ((1/k) Σ_i λ_i) = det(M)^{1/k} / (tr M / k),

    the geometric over the arithmetic mean: I ∈ (0, 1], and I = 1 exactly when all nonzero
    eigenvalues are equal (an isometry up to scale). Returns shape ``(...)``; NaN where every
    eigenvalue is zero. Jit-compatible. Over the nonzero eigenvalues only, so blind to dead
    units (a zero σ of J); :func:`isometry_deviation` counts them.
    """
    eigs = jnp.asarray(eigs)
    return _index(eigs, _nonzero(eigs, rtol))


def isometry_deviation(s: Array) -> Array:
    r"""Per-σ isometry deviation tanh²(log σ) = ((σ² − 1)/(σ² + 1))², zeros included.

    ``s``: singular values σ ≥ 0 of J, any shape; returns the same shape, each in [0, 1].
    The mean over every σ of a spectrum (``SingularValueSummary.isometry_deviation``) is

        D = (1/n) Σ_i tanh²(log σ_i) = (1/n) Σ_i ((σ_i² − 1)/(σ_i² + 1))².

    Why this form: D = 0 exactly at isometry (every σ = 1, Pennington, Schoenholz & Ganguli 2017,
    "Resurrecting the sigmoid in deep learning through dynamical isometry", NeurIPS), it is
    symmetric under σ ↔ 1/σ (a contraction counts as much as the matching expansion), and
    tanh²(log σ) = (log σ)² + O((log σ)⁴), so near isometry D agrees with the mean (log σ)². Unlike
    (log σ)² it is bounded, and a zero σ (a unit off on that input, or dead) counts 1, the
    maximum: a fully dead layer reads 1, not NaN, and no zero tolerance is needed (a σ rounded
    to 1e-8 counts ≈ 1 as well). A healthy ReLU layer has about half its units off on each
    input, so ReLU layers sit well above 0 even at initialisation (ReLU networks cannot reach
    dynamical isometry; Pennington et al. 2017). Computed from r = min(σ, 1/σ) ∈ [0, 1] as
    ((1 − r)(1 + r)/(1 + r²))²: no log, σ = 0 gives exactly 1, σ ↔ 1/σ is exact, nothing
    overflows, and 1 − r is exact near σ = 1. Jit-compatible.

    Examples:
      >>> from ntkplast import isometry
      >>> d = isometry.isometry_deviation([1.0, 0.0, 2.0, 0.5])   # 0 at σ = 1, 1 at σ = 0
      >>> print([f"{x:.3f}" for x in d])                         # σ = 2 counts as σ = 1/2
      ['0.000', '1.000', '0.360', '0.360']
    """
    s = jnp.asarray(s)
    r = jnp.minimum(s, 1 / jnp.maximum(s, 1))
    return ((1 - r) * (1 + r) / (1 + r * r)) ** 2


class SingularValueSummary(NamedTuple):
    """Isometry summaries of a family of spectra (:func:`summarize_singular_values`).

    Fields are read as attributes (``summary.chi``); ``._asdict()`` gives a table row. They are
    Python floats in the results of :func:`layer_spectra`, :func:`input_output_spectra` and
    :meth:`to_floats`, 0-d arrays where :func:`summarize_singular_values` runs under jit.

    Attributes:
      n: singular values per spectrum.
      chi: χ, the mean σ² (1 at criticality).
      var_sigma_sq: variance of σ², pooled.
      mean_log_sigma_sq: mean (log σ)² over the nonzero σ only (0 exactly at isometry; blind
        to dead units, see ``isometry_deviation``).
      frac_sigma_in_half_two: fraction of σ with 1/2 ≤ σ ≤ 2.
      zeros: mean number of zero σ per spectrum.
      isometry_index: mean isometry index (Joudaki et al. 2023) over the spectra, over the
        nonzero σ only (blind to dead units).
      isometry_deviation: mean of tanh²(log σ) over every σ, zeros included
        (:func:`isometry_deviation`): 0 at isometry, 1 for a dead layer.
      units_off: layer Jacobians only: mean number per probe input of rows of J zeroed by
        φ'(z) = 0 (units off); ``None`` for ∂f/∂x and weight spectra.
    """

    n: float | Array
    chi: float | Array
    var_sigma_sq: float | Array
    mean_log_sigma_sq: float | Array
    frac_sigma_in_half_two: float | Array
    zeros: float | Array
    isometry_index: float | Array
    isometry_deviation: float | Array
    units_off: float | Array | None = None

    def to_floats(self) -> SingularValueSummary:
        """The same summary with every field a Python float (``None`` stays ``None``)."""
        return SingularValueSummary(*(None if v is None else float(v) for v in self))


def summarize_singular_values(s: Array, *, rtol: float | None = None) -> SingularValueSummary:
    """Isometry summaries of one spectrum ``(n,)`` or a batch of spectra ``(S, n)``.

    Pennington et al. (2017) summaries of the pooled empirical distribution of σ over the batch
    (the spectral density averaged over probe inputs), plus per-spectrum counts:

    * ``chi``: mean σ² (χ, the mean squared singular value; 1 at criticality).
    * ``var_sigma_sq``: variance of σ² over all n·S values (pooled, population variance).
    * ``mean_log_sigma_sq``: mean (log σ)² over the nonzero σ (0 exactly at isometry); blind
      to dead units (a zero σ is left out, and a spectrum of zeros reads NaN).
    * ``frac_sigma_in_half_two``: fraction of all σ (zeros included) with 1/2 ≤ σ ≤ 2.
    * ``zeros``: mean number per spectrum of σ ≤ ``rtol`` · max σ, default rtol = n · eps of the
      dtype; pass max(rows, cols) · eps for numpy's ``matrix_rank`` convention.
    * ``isometry_index``: mean over spectra of :func:`isometry_index` of σ² over the nonzero σ
      (spectra with no nonzero σ are skipped); blind to dead units like ``mean_log_sigma_sq``.
    * ``isometry_deviation``: mean of :func:`isometry_deviation` over all S·n σ, zeros
      included, (1/(S·n)) Σ tanh²(log σ) ∈ [0, 1]: 0 exactly at isometry, ≈ mean (log σ)² near
      it, and a zero σ counts 1, so a dead layer reads 1 (no tolerance involved).
    * ``n``: singular values per spectrum.

    Returns a :class:`SingularValueSummary` of 0-d arrays (jit-compatible; ``units_off`` is
    ``None``); :meth:`SingularValueSummary.to_floats` makes them floats.
    """
    s = jnp.asarray(s)
    if s.ndim == 1:
        s = s[None]
    nz = _nonzero(s, rtol)
    sq = s * s
    log_s = jnp.log(jnp.where(nz, s, 1.0))
    return SingularValueSummary(
        n=jnp.asarray(s.shape[-1]),
        chi=jnp.mean(sq),
        var_sigma_sq=jnp.var(sq),
        mean_log_sigma_sq=jnp.sum(log_s**2) / jnp.sum(nz),
        frac_sigma_in_half_two=jnp.mean((s >= 0.5) & (s <= 2.0)),
        zeros=jnp.mean(jnp.sum(~nz, axis=-1)),
        isometry_index=jnp.nanmean(_index(sq, nz)),
        isometry_deviation=jnp.mean(isometry_deviation(s)),
    )


# ------------------------------------------------------------------------------ result types
class JacobianSpectrum(NamedTuple):
    """Spectrum of one Jacobian family over the probe set (host numpy arrays).

    Attributes:
      summary: a :class:`SingularValueSummary` of floats (see :func:`summarize_singular_values`);
        ``units_off`` is set for layers. For layers ``chi`` and ``var_sigma_sq`` are pooled over
        all N probe inputs from the exact traces; the others come from the spectra on the
        subsample (NaN where none).
      singular_values: ``(S, n)`` descending, on the subsample; ``None`` when not computed.
      chi: ``(N,)`` tr(JJᵀ)/n per probe input.
      mean_sigma4: ``(N,)`` tr((JJᵀ)²)/n per probe input (a Hutchinson estimate unless
        ``exact``).
      units_off: ``(N,)`` rows of J zeroed by φ'(z) = 0 on each input (units, or conv
        position×channel outputs, that are off); zeros for the readout; ``None`` for ∂f/∂x.
      n: singular values per probe input, min(rows, cols).
      exact: whether ``mean_sigma4`` is exact.
    """

    summary: SingularValueSummary
    singular_values: np.ndarray | None
    chi: np.ndarray
    mean_sigma4: np.ndarray
    units_off: np.ndarray | None
    n: int
    exact: bool


class LayerSpectra(NamedTuple):
    """Per-layer Jacobian spectra (readout last) and the probe indices of the subsample."""

    layers: tuple[JacobianSpectrum, ...]
    subsample: np.ndarray

    @property
    def summaries(self) -> tuple[SingularValueSummary, ...]:
        """One :class:`SingularValueSummary` per weight layer."""
        return tuple(layer.summary for layer in self.layers)

    @property
    def singular_values(self) -> tuple[np.ndarray | None, ...]:
        """``(S, n)`` singular values per weight layer (``None`` where not computed)."""
        return tuple(layer.singular_values for layer in self.layers)


# ------------------------------------------------------------------------------ layer Jacobians
def _gate(layer: models.Layer, z: Array) -> Array:
    """φ'(z) (ones for the readout); ReLU's derivative at 0 is 0, so z ≤ 0 gates a unit off."""
    if layer.activation is None:
        return jnp.ones_like(z)
    return jax.jvp(models.activation_fn(layer), (z,), (jnp.ones_like(z),))[1]


def _input_shapes(model: models.Model, x_shape: tuple[int, ...],
                  out_shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Per-example shape of what each layer consumes (after pooling and flattening)."""
    shapes, shape = [], x_shape
    for layer, out in zip(model.layers, out_shapes):
        if layer.flatten:
            shape = (math.prod(shape),)
        shapes.append(shape)
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
    return {"chi": jnp.sum(sq, axis=(1, 2)) / n,
            "mean_sigma4": jnp.sum(small * small, axis=(1, 2)) / n,
            "units_off": jnp.sum(jnp.all(jac == 0, axis=2), axis=1),
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
      model, params: the network (:func:`ntkplast.models.build`) and its parameters.
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
      units with z ≤ 0 exactly (equal to ``zeros`` for square layers with full-rank W).

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
    QR, :func:`ntkplast._jacobians.first_layer_r`), which stops the backward pass at z_1; σ = √λ
    of the smaller Gram in float64 (:func:`ntkplast.linalg.gram_singular_values`). n = min(K, D)
    is small, so full spectra are kept for all N inputs (``singular_values`` is ``(N, n)``);
    zeros are σ ≤ max(K, D) · eps · max σ. Pennington, Schoenholz & Ganguli (2017): at
    dynamical isometry every σ is 1; a linear network of orthogonal layers with gain c has every
    σ = c^L.
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
