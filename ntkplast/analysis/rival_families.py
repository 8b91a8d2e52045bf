"""The rival explanations' families: curvature and gradients at one checkpoint, on the probe set.

Each family takes the run's model (an ntkplast model, parameters a tuple of per-layer dicts, or
a :class:`~ntkplast.adapters.function.FunctionModel`, any pytree, only its ``trainable`` entry
differentiated), the checkpoint's parameters, the probe inputs ``x`` and labels ``y``, and
returns a :class:`FamilyResult`: rows ``(layer, metric, value)``, raw arrays, and the metrics it
skipped for want of labels (for the driver to warn about).

* ``curvature`` (:func:`curvature_family`; :mod:`ntkplast.curvature`): the top-k eigenvalues of
  the loss Hessian (``hessian_lambda_max``, the sharpness; ``hessian_effective_rank``,
  ``hessian_eps_rank``) and of the Gauss–Newton matrix (``ggn_lambda_max``,
  ``ggn_effective_rank``, ``ggn_eps_rank``), layer ``"all"``; the ranks are of the top-k
  (:func:`ntkplast.curvature.top_k_ranks`). Raw: ``hessian_top_eigenvalues``,
  ``ggn_top_eigenvalues`` (float64, descending).
* ``gradients`` (:func:`gradient_family`; :mod:`ntkplast.gradients`): ``grad_norm`` over all
  trained parameters (layer ``"all"``) and per layer (``"layer<l>"``, numbered as the ``ntk``
  family's per-layer kernels), ``grad_snr`` and ``optimization_readiness`` over m minibatches
  of the probe set (layer ``"all"``).

The loss is the run's objective (``objective``: ``"cross_entropy"`` or ``"mse"``). Labels: for
cross-entropy ``y`` are the probe's integer labels, usable when every one is ≥ 0 (−1 marks none:
an unlabeled probe); for mse ``y`` must be float targets ``N × K``, and a regression probe's −1
labels are none. Without usable labels the Hessian and gradient rows are skipped and named in
``skipped``; the GGN needs no labels and is kept.

Options are read from the ``settings`` object by name, each with its :class:`RivalSettings`
default where the object lacks it, so :class:`ntkplast.analysis.families.Settings` (which has
``seed``) can be passed as it is.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import numpy as np

from ntkplast import curvature, gradients

__all__ = ["CURVATURE_METRICS", "GGN_METRICS", "GRADIENT_METRICS", "HESSIAN_METRICS",
           "FamilyResult", "RivalSettings", "curvature_family", "gradient_family"]

Rows = list[tuple[str, str, float]]
HESSIAN_METRICS = ("hessian_lambda_max", "hessian_effective_rank", "hessian_eps_rank")
GGN_METRICS = ("ggn_lambda_max", "ggn_effective_rank", "ggn_eps_rank")
CURVATURE_METRICS = HESSIAN_METRICS + GGN_METRICS
GRADIENT_METRICS = ("grad_norm", "grad_snr", "optimization_readiness")


@dataclasses.dataclass(frozen=True)
class RivalSettings:
    """The options the families read (module docstring), with their defaults.

    Attributes:
      seed: seeds the Lanczos start vectors (the Hessian's and the GGN's differ).
      curvature_k: k, how many top eigenvalues are computed and summarised.
      curvature_matvecs: Lanczos steps m (products per matrix; default 20 = 2k). Full
        reorthogonalisation costs O(m²P), which dominates for wide networks (a 784–256³ MLP:
        0.25 s per matrix at m = 20, 0.75 s at 40); λ_max converges first, the k-th Ritz value
        least, so the top-k ranks are approximate at m = 2k. ``None``: the default of
        :func:`ntkplast.spectra.top_eigenvalues`, min(P, max(2k + 20, 40)).
      curvature_eps: the relative threshold ε of the ε-rank.
      curvature_probe: the curvature is that of the loss on the first this many probe inputs
        (the probe set is a random draw, so they are a random subsample); each product costs
        about three passes over them, so this bounds the family's cost (default 256).
      gradient_batches: m, the minibatches of the probe set for SNR and readiness.
    """

    seed: int = 0
    curvature_k: int = 10
    curvature_matvecs: int | None = 20
    curvature_eps: float = 1e-2
    curvature_probe: int = 256
    gradient_batches: int = 8


def _option(settings: Any, name: str) -> Any:
    return getattr(settings, name, getattr(RivalSettings, name))


class FamilyResult(NamedTuple):
    """A family's rows ``(layer, metric, value)``, raw arrays, and the metric names it skipped
    (no usable labels)."""

    rows: Rows
    raw: dict[str, np.ndarray]
    skipped: list[str]


def _targets(y: Any, objective: str) -> Any | None:
    """``y`` where the objective can use it (module docstring), else ``None``."""
    y = np.asarray(y)
    if objective == "mse":
        return y if np.issubdtype(y.dtype, np.floating) else None
    return y if np.issubdtype(y.dtype, np.integer) and y.ndim == 1 and np.all(y >= 0) else None


def _ranks_rows(prefix: str, eigs: np.ndarray, eps: float) -> Rows:
    r = curvature.top_k_ranks(eigs, eps=eps)
    return [("all", f"{prefix}_lambda_max", r.lambda_max),
            ("all", f"{prefix}_effective_rank", r.effective_rank),
            ("all", f"{prefix}_eps_rank", r.eps_rank)]


def curvature_family(model: Any, params: Any, x: Any, y: Any, settings: Any, *,
                     objective: str = "cross_entropy") -> FamilyResult:
    """The ``curvature`` family's rows and raw arrays (module docstring).

    ``x``: probe inputs ``N × input_shape``; ``y``: labels ``(N,)`` (−1: none) or, for mse,
    targets ``N × K``; the first ``curvature_probe`` of them are used. Two Lanczos runs of m
    products each (Hessian-vector and GGN-vector).
    """
    k, m = _option(settings, "curvature_k"), _option(settings, "curvature_matvecs")
    eps = _option(settings, "curvature_eps")
    n = _option(settings, "curvature_probe")
    x, y = x[:n], y[:n]
    key = jax.random.PRNGKey(_option(settings, "seed"))
    rows: Rows = []
    raw: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    targets = _targets(y, objective)
    if targets is None:
        skipped += HESSIAN_METRICS
    else:
        lam = np.asarray(curvature.hessian_top_eigenvalues(
            model, params, x, targets, k=k, key=jax.random.fold_in(key, 0),
            objective=objective, num_matvecs=m), np.float64)
        raw["hessian_top_eigenvalues"] = lam
        rows += _ranks_rows("hessian", lam, eps)
    lam = np.asarray(curvature.ggn_top_eigenvalues(
        model, params, x, k=k, key=jax.random.fold_in(key, 1), objective=objective,
        num_matvecs=m), np.float64)
    raw["ggn_top_eigenvalues"] = lam
    rows += _ranks_rows("ggn", lam, eps)
    return FamilyResult(rows, raw, skipped)


def gradient_family(model: Any, params: Any, x: Any, y: Any, settings: Any, *,
                    objective: str = "cross_entropy") -> FamilyResult:
    """The ``gradients`` family's rows (module docstring); no raw arrays.

    ``x``: probe inputs ``N × input_shape``; ``y``: labels ``(N,)`` (−1: none) or, for mse,
    targets ``N × K``. Everything is skipped without usable labels.
    """
    targets = _targets(y, objective)
    if targets is None:
        return FamilyResult([], {}, list(GRADIENT_METRICS))
    norms = gradients.gradient_norms(model, params, x, targets, objective=objective)
    grads = gradients.minibatch_gradients(model, params, x, targets, objective=objective,
                                          num_batches=_option(settings, "gradient_batches"))
    rows: Rows = [("all", "grad_norm", norms.total)]
    rows += [(f"layer{li}", "grad_norm", float(v)) for li, v in enumerate(norms.layers)]
    rows += [("all", "grad_snr", float(gradients.gradient_snr(grads))),
             ("all", "optimization_readiness",
              float(gradients.optimization_readiness(grads).readiness))]
    return FamilyResult(rows, {}, [])
