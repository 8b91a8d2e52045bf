"""The metric families: what :func:`~ntkplast.analysis.driver.analyze` computes at one checkpoint.

:func:`analyze_checkpoint` computes the families a :class:`Settings` asks for on the probe set
and returns rows ``(layer, metric, value)`` and raw arrays:

* ``ntk``: spectral summary of the output-traced empirical NTK on the probe set
  (:func:`ntkplast.spectra.summary`: ``ntk_trace``, ``ntk_lambda_max``, ``ntk_lambda_min``,
  ``ntk_condition``, ``ntk_effective_rank``, ``ntk_stable_rank``, ``ntk_decay_exponent``,
  ``ntk_decay_r2``, and ``ntk_condition_at_floor``, 1 where λ_min ≤ eps·λ_max so that
  ``ntk_condition`` is the cap 1/eps, a lower bound, else 0); per weight layer the same summary
  of Θ_l plus ``ntk_trace_share`` = tr Θ_l / tr Θ; kernel distance (Fort et al. 2020) to the
  previous checkpoint (``kernel_distance_prev``, and ``kernel_velocity`` = that distance per
  training step, :func:`ntkplast.linalg.kernel_velocity_from_distance`), to the initial
  checkpoint (``kernel_distance_init``) and, where neural-tangents is installed, to the
  architecture's infinite-width NTK (``kernel_distance_infinite``); the same distances to the
  previous and initial kernels with each kernel's top eigendirection removed
  (``kernel_distance_prev_deflated``, ``kernel_distance_init_deflated``,
  :func:`ntkplast.spectra.deflated_kernel_distance`); top-10 eigenspace overlap with the
  previous checkpoint (``eigenspace_overlap_prev``); centered kernel–target alignment with the
  probe labels (``kernel_alignment``, Cortes et al. 2012).
* ``isometry``: per layer the summaries of :func:`ntkplast.isometry.layer_spectra`
  (``jac_chi``, ``jac_var_sigma_sq``, ``jac_mean_log_sigma_sq``, ``jac_frac_sigma_in_half_two``,
  ``jac_zeros``, ``jac_isometry_index``, ``jac_units_off``, ``jac_isometry_deviation``, the
  mean tanh²(log σ) over every σ, zeros included, so that dead units count), the end-to-end
  input–output Jacobian's (layer ``"all"``, prefix ``io_``) and each weight matrix's (prefix
  ``weight_``), every field of :class:`ntkplast.isometry.SingularValueSummary` each;
  the Frobenius norm of each effective weight m_W·W_l (``weight_fro_norm``) and of all of them
  together, (Σ_l ‖m_W W_l‖_F²)^½ (``weight_norm``, layer ``"all"``; biases excluded).
* ``dormancy``: per hidden layer the τ-dormant fractions (Sokar et al. 2023 score), dead units,
  the fraction active on under 1% of probe inputs (Dohare et al.'s rule), feature effective rank
  and srank (Kumar et al.) of :func:`ntkplast.dormancy.unit_scores`.
* ``curvature``: the top-k (k = 10) eigenvalues of the Hessian and Gauss–Newton matrix of the
  loss on the first 256 probe inputs (a random subsample; it bounds the cost) by Lanczos on
  matrix-vector products (:mod:`ntkplast.curvature`; Lyle et al. 2023,
  Lewandowski et al. 2024): ``hessian_lambda_max`` (sharpness), ``hessian_effective_rank``,
  ``hessian_eps_rank``, and the same ``ggn_`` rows (the loss is the run's own objective with
  the probe labels; without labels only the Gauss–Newton rows, which need none).
* ``gradient``: the probe loss's gradient norm (layer ``"all"`` and per weight layer),
  signal-to-noise over 8 minibatches and optimization readiness (:mod:`ntkplast.gradients`);
  skipped without labels.
* ``churn``: change and drift (:mod:`ntkplast.analysis.churn_family`, :mod:`ntkplast.churn`):
  ``output_churn`` and ``prediction_churn`` against the previous analysed checkpoint on the
  probe, ``param_distance_init`` and ``param_distance_init_rel`` from the first (layer
  ``"all"`` and per weight layer), ``feature_norm`` and ``feature_variance`` per hidden layer,
  and for tanh / erf units ``saturation_fraction``.
* ``plasticity``: the numbers training stored with the checkpoint (loss, online accuracy, and at
  task ends test accuracy, reset-reference accuracy and plasticity loss), and at task ends,
  where the run recorded its accuracy matrix, ``average_accuracy``, ``backward_transfer`` and
  ``forgetting`` after that task (:mod:`ntkplast.forgetting`).

A run whose model is given by an importable ``apply`` (:mod:`ntkplast.runs.function_models`)
gets the ``ntk`` family from the generic engine on its trained parameters
(:func:`ntkplast.adapters.function.empirical_ntk`; no infinite-width reference), and, when it
names layer functions, the per-layer rows of ``isometry`` (``jac_*``) and ``dormancy`` from them
(:func:`ntkplast.adapters.function.layer_spectra`, :func:`~ntkplast.adapters.function.unit_scores`);
what needs an ntkplast architecture (``io_*``, ``weight_*``, ``weight_norm``, and without layer
functions the whole of ``isometry`` and ``dormancy``) is skipped with a warning that names it.

The rows are cached by :mod:`ntkplast.analysis.driver` under a key that holds its
``CACHE_VERSION``: a change to what a family writes (names, values, order) must bump it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from ntkplast import dormancy, forgetting, isometry, linalg, ntk, spectra, validate
from ntkplast.adapters import function as function_model
from ntkplast.analysis import probes, rival_families
from ntkplast.analysis.churn_family import churn_family
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints
from ntkplast.runs.function_models import FunctionSpec

__all__ = ["FAMILIES", "KernelHistory", "Rows", "Settings", "analyze_checkpoint",
           "infinite_kernel", "objective", "possible_families"]

FAMILIES = ("ntk", "isometry", "dormancy", "curvature", "gradient", "churn", "plasticity")
Rows = list[tuple[str, str, float]]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What an analysis computes; part of its cache key.

    Attributes:
      metrics: families to compute (subset of :data:`FAMILIES`).
      probe: probe-set source (:func:`ntkplast.analysis.probes.build_probe`).
      probe_size: number of probe inputs N.
      seed: seeds the probe draw and the isometry subsample.
      engine: NTK engine (:data:`ntkplast.ntk.ENGINES`).
      taus: dormancy thresholds τ.
      spectra_subsample: probe inputs whose full Jacobian spectra are kept (moments use all).
      overlap_k: k of the top-k eigenspace overlap.
      device_count: jax devices the NTK rows are sharded over (default: all visible); not
        part of the cache key, since it does not change the numbers.
    """

    metrics: tuple[str, ...] = FAMILIES
    probe: str = "seen"
    probe_size: int = 256
    seed: int = 0
    engine: str = "auto"
    taus: tuple[float, ...] = (0.0, 0.025, 0.1)
    spectra_subsample: int = 32
    overlap_k: int = 10
    device_count: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "taus", tuple(float(t) for t in self.taus))
        unknown = sorted(set(self.metrics) - set(FAMILIES))
        if unknown or not self.metrics:
            raise NtkplastError(f"metrics: unknown or empty {unknown or list(self.metrics)}; "
                                f"choose from {list(FAMILIES)}")
        if self.engine not in ntk.ENGINES:
            raise NtkplastError(f"engine: unknown {self.engine!r}; choose from "
                                f"{list(ntk.ENGINES)}")
        if self.probe_size < 2:
            raise NtkplastError(f"probe_size must be >= 2, got {self.probe_size}")


_SPECTRUM_FIELDS = ("trace", "lambda_max", "lambda_min", "condition", "effective_rank",
                    "stable_rank", "decay_exponent", "decay_r2")
# layer Jacobians' rows in the order earlier releases wrote them (cached tables mix with new ones)
_JACOBIAN_FIELDS = ("mean_log_sigma_sq", "frac_sigma_in_half_two", "zeros", "isometry_index",
                    "n", "chi", "var_sigma_sq", "units_off", "isometry_deviation")


def _summary_rows(prefix: str, summary: NamedTuple, layer: str,
                  fields: Sequence[str] | None = None) -> Rows:
    """One row ``(layer, prefix + field, value)`` per numeric field of a summary NamedTuple
    (``fields``: which, in this order; default every field); ``None`` fields are left out."""
    values = summary._asdict()
    return [(layer, f"{prefix}{k}", float(values[k])) for k in (fields or values)
            if isinstance(values[k], int | float | np.floating | np.integer)
            and not isinstance(values[k], bool)]


def _spectrum_rows(summary: spectra.SpectrumSummary, layer: str) -> Rows:
    """A kernel's ``ntk_`` rows: :data:`_SPECTRUM_FIELDS`, then ``ntk_condition_at_floor``
    (1.0 where the condition number is the floor's cap 1/eps, a lower bound; else 0.0)."""
    return (_summary_rows("ntk_", summary, layer, _SPECTRUM_FIELDS)
            + [(layer, "ntk_condition_at_floor", float(summary.condition_at_floor))])


class KernelHistory:
    """What a checkpoint is compared with: the first and previous analysed checkpoints (index,
    step, file digest) and, where the ``ntk`` family ran, their kernels and top eigenvectors
    (so each kernel is decomposed once), and the infinite-width kernel."""

    def __init__(self, infinite: np.ndarray | None):
        self.infinite = infinite
        self.init: np.ndarray | None = None
        self.init_top: np.ndarray | None = None
        self.prev: np.ndarray | None = None
        self.prev_top: np.ndarray | None = None
        self.prev_step: int | None = None
        self.init_digest: str | None = None
        self.prev_digest: str | None = None
        self.init_index: int | None = None
        self.prev_index: int | None = None

    def push(self, kernel: np.ndarray | None, top: np.ndarray | None, step: int, digest: str,
             index: int) -> None:
        """Record checkpoint ``index`` as the previous one (and the first, if it is)."""
        if self.init_digest is None:
            self.init, self.init_top, self.init_digest, self.init_index = (kernel, top, digest,
                                                                           index)
        self.prev, self.prev_top, self.prev_step, self.prev_digest = kernel, top, step, digest
        self.prev_index = index


def _ntk_family(run: checkpoints.Run, params: Any, x: jax.Array, probe: probes.Probe,
                settings: Settings, info: checkpoints.CheckpointInfo, history: KernelHistory
                ) -> tuple[Callable[[], list[Any]], Callable[[list[Any]], tuple[Rows, dict]]]:
    """Computes the kernels and starts their decompositions on host threads; returns
    ``(collect, finish)``: ``finish(collect())`` is the family's rows and raw arrays (the
    other families run before ``collect`` is called)."""
    if isinstance(run.spec, FunctionSpec):
        total, parts = function_model.empirical_ntk(run.model, params, x, per_layer=True)
    else:
        total, parts = ntk.empirical_ntk_unchecked(run.model, params, x, per_layer=True,
                                                   engine=settings.engine,
                                                   device_count=settings.device_count)
    # eigenvalue floor: N · ε of the dtype the kernel was computed in (its rounding level)
    dtype = np.asarray(total).dtype
    eps = len(probe.y) * float(np.finfo(dtype).eps)
    kernel = np.asarray(total, np.float64)
    parts = [np.asarray(part) for part in parts]
    # one decomposition per Gram, side by side on the host: the total's eigenvalues and top-k
    # eigenvectors (the overlap's) in float64, each layer part's eigenvalues only, in float32
    # LAPACK for a float32 kernel (errors under the floor eps; paper_notes.md)
    decomposed = linalg.host_start(
        [functools.partial(spectra.eigenvalues_and_top_vectors, kernel,
                           min(settings.overlap_k, len(kernel)))]
        + [functools.partial(spectra.eigenvalues, part, float32_lapack=dtype == np.float32)
           for part in parts])
    return decomposed, functools.partial(_ntk_rows, run, probe, info, history, kernel, parts,
                                         eps)


def _ntk_rows(run: checkpoints.Run, probe: probes.Probe, info: checkpoints.CheckpointInfo,
              history: KernelHistory, kernel: np.ndarray, parts: list[np.ndarray], eps: float,
              decomposed: list[Any]) -> tuple[Rows, dict[str, np.ndarray]]:
    """The ntk family's rows and raw arrays from the kernels' ``decomposed`` results."""
    (lam, top), *layer_lams = decomposed
    rows = _spectrum_rows(spectra.summary_from_eigenvalues(lam, eps=eps), "all")
    trace = float(np.trace(kernel))
    raw = {"ntk_kernel": np.asarray(kernel, np.float32), "ntk_top_eigenvectors": top,
           "ntk_eigenvalues": lam}
    for li, (part, lam_l) in enumerate(zip(parts, layer_lams)):
        raw[f"ntk_layer_eigenvalues/{li}"] = lam_l
        rows += _spectrum_rows(spectra.summary_from_eigenvalues(lam_l, eps=eps), f"layer{li}")
        rows.append((f"layer{li}", "ntk_trace_share",
                     float(np.trace(part, dtype=np.float64)) / trace))
    if history.prev is not None:
        d_prev = float(spectra.kernel_distance(history.prev, kernel))
        rows.append(("all", "kernel_distance_prev", d_prev))
        rows.append(("all", "kernel_distance_prev_deflated", spectra.deflated_kernel_distance(
            history.prev, kernel, top1=history.prev_top, top2=top, eps=eps)))
        rows.append(("all", "kernel_velocity", linalg.kernel_velocity_from_distance(
            d_prev, max(info.step - history.prev_step, 1))))
        rows.append(("all", "eigenspace_overlap_prev",
                     spectra.subspace_overlap(history.prev_top, top)))
    if history.init is not None:
        rows.append(("all", "kernel_distance_init",
                     float(spectra.kernel_distance(history.init, kernel))))
        rows.append(("all", "kernel_distance_init_deflated", spectra.deflated_kernel_distance(
            history.init, kernel, top1=history.init_top, top2=top, eps=eps)))
    if history.infinite is not None:
        rows.append(("all", "kernel_distance_infinite",
                     float(spectra.kernel_distance(history.infinite, kernel))))
    if np.all(probe.y >= 0):
        rows.append(("all", "kernel_alignment", float(spectra.centered_alignment(
            kernel, probe.y, num_classes=run.spec.num_outputs))))
    return rows, raw


def _isometry_family(run: checkpoints.Run, params: Any, x: jax.Array,
                     settings: Settings) -> tuple[Rows, dict[str, np.ndarray]]:
    function = isinstance(run.spec, FunctionSpec)
    if function:
        spec = function_model.layer_spectra(run.model, params, x)
    else:
        spec = isometry.layer_spectra_unchecked(run.model, params, x,
                                                key=jax.random.PRNGKey(settings.seed),
                                                spectra_subsample=settings.spectra_subsample)
    rows: Rows = []
    raw: dict[str, np.ndarray] = {}
    for li, layer in enumerate(spec.layers):
        rows += _summary_rows("jac_", layer.summary, f"layer{li}", _JACOBIAN_FIELDS)
        if layer.singular_values is not None:
            raw[f"jac_sv/{li}"] = np.asarray(layer.singular_values)
    if function:  # the rest needs an ntkplast architecture
        return rows, raw
    io = isometry.input_output_spectra_unchecked(run.model, params, x)
    rows += _summary_rows("io_", io.summary, "all")
    if io.singular_values is not None:
        raw["io_sv"] = np.asarray(io.singular_values)
    total_sq = 0.0
    for li, s in enumerate(isometry.weight_spectra_unchecked(run.model, params)):
        s = np.asarray(s)
        raw[f"weight_sv/{li}"] = s
        rows += _summary_rows("weight_", isometry.summarize_singular_values(s).to_floats(),
                              f"layer{li}")
        sq = float(np.sum(np.asarray(s, np.float64) ** 2))  # ‖M_l‖_F² = Σ σ²
        rows.append((f"layer{li}", "weight_fro_norm", np.sqrt(sq)))
        total_sq += sq
    rows.append(("all", "weight_norm", np.sqrt(total_sq)))  # (Σ_l ‖M_l‖_F²)^½, biases excluded
    return rows, raw


def _dormancy_family(run: checkpoints.Run, params: Any, x: jax.Array,
                     settings: Settings) -> tuple[Rows, dict[str, np.ndarray]]:
    rows: Rows = []
    raw: dict[str, np.ndarray] = {}
    scores = (function_model.unit_scores(run.model, params, x, taus=settings.taus)
              if isinstance(run.spec, FunctionSpec) else
              dormancy.unit_scores_unchecked(run.model, params, x, taus=settings.taus))
    for li, layer in enumerate(scores):
        name = f"layer{li}"
        fractions = layer.dormant_fraction
        for tau, frac in zip(fractions.taus, fractions.fractions):
            rows.append((name, f"dormant_fraction_tau{tau:g}", float(frac)))
        rows += [(name, "dead_units", float(layer.dead_count)),
                 (name, "dead_fraction", float(layer.dead_fraction)),
                 (name, "frequency_dormant_fraction", float(layer.frequency_dormant_fraction)),
                 (name, "feature_effective_rank", float(layer.effective_rank)),
                 (name, "feature_srank", float(layer.srank))]
        raw[f"dormancy_scores/{li}"] = np.asarray(layer.scores)
    return rows, raw


def _plasticity_family(run: checkpoints.Run, info: checkpoints.CheckpointInfo) -> Rows:
    rows: Rows = []
    for k, v in info.metrics.items():
        if k in ("task_step", "online_score_sum", "online_correct", "task", "end_step"):
            continue
        if isinstance(v, list) and any(x is not None for x in v):  # None: task without tests
            rows.append(("all", f"{k}_mean", float(np.mean([x for x in v if x is not None]))))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            rows.append(("all", k, float(v)))
    if info.kind == "task_end":  # forgetting and transfer from the accuracy matrix so far
        rows += forgetting.task_end_rows(run.manifest, info.task)
    return rows


def objective(run: checkpoints.Run) -> str:
    """The run's training objective (``train.loss``; cross-entropy where the run does not
    record one, as imported runs)."""
    return (run.manifest.get("config") or {}).get("train", {}).get("loss", "cross_entropy")


def possible_families(run: checkpoints.Run) -> tuple[str, ...]:
    """The families the run's model allows: all of :data:`FAMILIES` for an ntkplast model; a
    function model without layer functions has no ``isometry`` and ``dormancy``."""
    if isinstance(run.spec, FunctionSpec) and not run.model.layers:
        return ("ntk", "curvature", "gradient", "churn", "plasticity")
    return FAMILIES


def infinite_kernel(run: checkpoints.Run, probe: probes.Probe) -> np.ndarray | None:
    """The architecture's infinite-width NTK on the probe inputs (float64), or None where
    neural-tangents is not installed or the architecture has no stax equivalent."""
    if importlib.util.find_spec("neural_tangents") is None or isinstance(run.spec, FunctionSpec):
        return None
    try:
        return np.asarray(ntk.infinite_width_ntk(run.model, probe.x), np.float64)
    except NtkplastError:  # no stax equivalent (CReLU, GroupSort, orthogonal constraints)
        return None


def analyze_checkpoint(run: checkpoints.Run, i: int, probe: probes.Probe, settings: Settings,
                       history: KernelHistory) -> tuple[Rows, dict[str, np.ndarray]]:
    """Rows ``(layer, metric, value)`` and raw arrays of checkpoint ``i``.

    The parameters are checked as they are read and, with the probe inputs, once more by
    :func:`ntkplast.validate.check_probe_set`; the families then skip the checks.
    """
    info = run[i]
    params = run.params(i)
    if isinstance(run.spec, FunctionSpec):  # its own apply checks its parameters
        x = validate.check_inputs("probe x", probe.x, None)
    else:
        x = validate.check_probe_set(run.model, params, probe.x)
    rows: Rows = []
    raw: dict[str, np.ndarray] = {}
    with linalg.one_blas_thread():  # the ntk decompositions run beside the other families
        ntk_started = (_ntk_family(run, params, x, probe, settings, info, history)
                       if "ntk" in settings.metrics else None)
        families = {
            "isometry": lambda: _isometry_family(run, params, x, settings),
            "dormancy": lambda: _dormancy_family(run, params, x, settings),
            "curvature": lambda: rival_families.curvature_family(
                run.model, params, x, probe.y, settings, objective=objective(run))[:2],
            "gradient": lambda: rival_families.gradient_family(
                run.model, params, x, probe.y, settings, objective=objective(run))[:2],
            "churn": lambda: churn_family(run, params, x, history),
            "plasticity": lambda: (_plasticity_family(run, info), {}),
        }
        done = {name: families[name]() if name in possible_families(run) else ([], {})
                for name in settings.metrics if name != "ntk"}
        decomposed = ntk_started[0]() if ntk_started is not None else []
    if ntk_started is not None:  # the comparisons on BLAS's own threads, as before
        done["ntk"] = ntk_started[1](decomposed)
    for name in settings.metrics:  # rows in the order the families are asked for
        rows += done[name][0]
        raw.update(done[name][1])
    return rows, raw

