r"""Interventions at a checkpoint: each moves one quantity and says what it keeps.

An intervention is a pure function ``(model, params, opt_state, x, *, key) -> Intervened``:
the model it leaves (its spec may change), the new parameters and optimizer state, and a record
of what it did. ``x`` is a batch of inputs the network has just trained on (the branch point's
task); ``key`` draws whatever it re-initialises. :func:`parse_intervention` reads the CLI form
``NAME[:ARGS]`` and :func:`apply_intervention` runs one. Weights follow :mod:`ntkplast.models`
(Dense ``W`` is ``d_in × d_out``); Θ is the empirical NTK on any inputs.

``none`` — the control: nothing changes.

``scale_output:c`` — the network's output multiplied by c > 0 (the spec's ``output_scale``
times c), parameters and optimizer state kept. With f_c(x) = c·f(x; θ) every parameter
Jacobian is c·∂f/∂θ, so

    Θ_c = c²·Θ,   κ(Θ_c) = λ_max/λ_min = κ(Θ),   every hidden unit's activity unchanged,

the readout's effective weight (and its layer Jacobian) c times larger, the logits c times
larger (so the loss and its gradients change). It separates the kernel's *scale* from its
*conditioning*, the two readings of "the NTK governs plasticity". Fresh networks of the branch
(its reset references) are built with the same output scale.

``orthogonalize[:α]`` — every weight layer moved toward its nearest scaled semi-orthogonal
matrix, the FIRE step (Han et al. 2026, ICLR; :func:`ntkplast.regularizers.fire`):

    W ← (1 − α)·W + α·√(d_out/d_in)·polar(m_W·W)/m_W,    α ∈ [0, 1] (default 1),

so at α = 1 every singular value of every effective weight is √(d_out/d_in) (weight-level
isometry restored); biases, LayerNorm parameters and the optimizer state are kept, and dead
units are not revived directly (a dead ReLU unit stays dead unless its new incoming weights
reach positive pre-activations).

``equalize[:α]`` — every weight layer's singular values made equal at fixed Frobenius norm,

    W ← (1 − α)·W + α·(‖W‖_F/√r)·polar(W),    r = min(d_in, d_out),

so at α = 1 each weight is a scaled semi-orthogonal matrix with its own ‖W‖_F: its
conditioning goes to 1 while its scale (and the network's weight norm) is kept — the part of
``orthogonalize`` that is isometry, without FIRE's rescaling to √(d_out/d_in), which can move the
NTK's scale by orders of magnitude. Biases, LayerNorm parameters and the optimizer state are
kept; a conv kernel is equalised as its (k·k·c_in) × c_out matrix; m_W cancels (polar is
scale-free).

``reset_dead[:τ]`` — the reset of ReDo (Sokar, Agarwal, Castro & Evci 2023, "The dormant
neuron phenomenon in deep reinforcement learning", ICML) once, without its schedule: on ``x``
every hidden unit whose dormancy score s_i = E|a_i| / mean_j E|a_j| is ≤ τ (default τ = 0:
exactly the dead units, zero on every input) gets fresh incoming weights and bias (from
``model.init(key, ·)``), zero outgoing weights and zeroed optimizer state for both
(:func:`ntkplast.regularizers.redo_step`). Every other weight and optimizer entry is kept; the
function on ``x`` is unchanged (the reset units' outputs reach nothing yet). Needs a plain
stack (no residual skips, an elementwise activation).

No intervention here changes the NTK's conditioning at fixed trace: the reparametrisations
that keep the function (moving a constant between a layer's stored weight and its multiplier)
change each layer block Θ_l by its own factor, and so move the trace, the conditioning and,
under Adam, the effective learning rate together.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models, regularizers
from ntkplast.errors import NtkplastError
from ntkplast.regularizers.resets import check_resettable

__all__ = ["INTERVENTIONS", "Intervened", "Intervention", "apply_intervention",
           "interventions_of", "parse_intervention"]

Array = jax.Array


class Intervention(NamedTuple):
    """A parsed ``NAME[:ARGS]``: the intervention's name and its numeric arguments."""

    name: str
    args: tuple[float, ...] = ()

    @property
    def label(self) -> str:
        """The canonical text, ``name`` or ``name:a,b`` (arguments as ``%g``)."""
        return self.name + (":" + ",".join(f"{a:g}" for a in self.args) if self.args else "")

    @property
    def slug(self) -> str:
        """A folder name: the label with ``:`` and ``,`` as ``_``."""
        return self.label.replace(":", "_").replace(",", "_")


class Intervened(NamedTuple):
    """What an intervention leaves: the model (its spec may differ), parameters, optimizer
    state and a record of what changed (plain data, stored in the branch's manifest)."""

    model: models.Model
    params: models.Params
    opt_state: Any
    record: dict[str, Any]


def _none(model: models.Model, params: models.Params, opt_state: Any, x: Array, *,
          key: Array) -> Intervened:
    """The control: everything kept."""
    del x, key
    return Intervened(model, params, opt_state, {})


def _scale_output(model: models.Model, params: models.Params, opt_state: Any, x: Array, *,
                  key: Array, c: float) -> Intervened:
    """f ← c·f (module docstring): the spec's ``output_scale`` times ``c``."""
    del x, key
    spec = dataclasses.replace(model.spec, output_scale=model.spec.output_scale * c)
    return Intervened(models.build(spec), params, opt_state,
                      {"output_scale": spec.output_scale})


def _check_free_weights(model: models.Model, name: str) -> None:
    if model.spec.weight_constraint != "none":
        raise NtkplastError(f"--intervention {name}: the model's weights are already "
                            f"constrained orthogonal (model.weight_constraint); nothing to move")


def _orthogonalize(model: models.Model, params: models.Params, opt_state: Any, x: Array, *,
                   key: Array, alpha: float = 1.0) -> Intervened:
    """The FIRE step on every weight layer (module docstring)."""
    del x, key
    _check_free_weights(model, "orthogonalize")
    return Intervened(model, regularizers.fire(params, alpha=alpha, model=model), opt_state,
                      {"alpha": alpha})


def _equalize(model: models.Model, params: models.Params, opt_state: Any, x: Array, *,
              key: Array, alpha: float = 1.0) -> Intervened:
    """Equal singular values at fixed Frobenius norm on every weight layer (module docstring)."""
    del x, key
    _check_free_weights(model, "equalize")
    out = []
    for p in params:
        w = p["W"]
        m = w.reshape(-1, w.shape[-1])
        target = jnp.linalg.norm(m) / math.sqrt(min(m.shape)) * \
            regularizers.newton_schulz_polar(m)
        out.append({**p, "W": (1.0 - alpha) * w + alpha * target.reshape(w.shape)})
    return Intervened(model, tuple(out), opt_state, {"alpha": alpha})


def _reset_dead(model: models.Model, params: models.Params, opt_state: Any, x: Array, *,
                key: Array, tau: float = 0.0) -> Intervened:
    """ReDo's reset of the τ-dormant units on ``x`` (module docstring)."""
    check_resettable(model, "--intervention reset_dead")
    new_params, new_state, masks = regularizers.redo_step(
        model, params, opt_state, x, key=key, tau=tau, input_shape=tuple(x.shape[1:]))
    return Intervened(model, new_params, new_state,
                      {"tau": tau, "units_reset": [int(jnp.sum(m)) for m in masks]})


_Fn = Callable[..., Intervened]
INTERVENTIONS: dict[str, tuple[_Fn, tuple[str, ...], tuple[float, ...]]] = {
    "none": (_none, (), ()),
    "scale_output": (_scale_output, ("c",), ()),
    "orthogonalize": (_orthogonalize, ("alpha",), (1.0,)),
    "equalize": (_equalize, ("alpha",), (1.0,)),
    "reset_dead": (_reset_dead, ("tau",), (0.0,)),
}
"""Name → (function, argument names, defaults of the trailing arguments)."""


def _check_args(name: str, args: tuple[float, ...]) -> None:
    if name == "scale_output" and not args[0] > 0:
        raise NtkplastError(f"--intervention scale_output:c needs c > 0, got {args[0]:g}")
    if name in ("orthogonalize", "equalize") and not 0.0 <= args[0] <= 1.0:
        raise NtkplastError(f"--intervention {name}:α needs α in [0, 1], got {args[0]:g}")
    if name == "reset_dead" and not 0.0 <= args[0] < 1.0:
        raise NtkplastError(f"--intervention reset_dead:τ needs τ in [0, 1), got {args[0]:g}")


def parse_intervention(text: str | Intervention) -> Intervention:
    """``"NAME[:A[,B…]]"`` → :class:`Intervention`, defaults filled in and checked.

    Examples:
      >>> from ntkplast.branches import parse_intervention
      >>> parse_intervention("scale_output:2").label, parse_intervention("orthogonalize").label
      ('scale_output:2', 'orthogonalize:1')
    """
    if isinstance(text, Intervention):
        text = text.label
    if not isinstance(text, str):
        raise NtkplastError(f"--intervention: expected NAME[:ARGS], got {text!r}")
    name, _, rest = text.strip().partition(":")
    if name not in INTERVENTIONS:
        raise NtkplastError(f"--intervention {text!r}: unknown name {name!r}; choose from "
                            f"{list(INTERVENTIONS)}")
    _, names, defaults = INTERVENTIONS[name]
    try:
        given = tuple(float(a) for a in rest.split(",")) if rest.strip() else ()
    except ValueError:
        raise NtkplastError(f"--intervention {text!r}: arguments must be numbers, e.g. "
                            f"scale_output:2") from None
    if len(given) > len(names) or len(given) + len(defaults) < len(names):
        usage = name + "".join(f"[:{n}]" if i >= len(names) - len(defaults) else f":{n}"
                               for i, n in enumerate(names))
        raise NtkplastError(f"--intervention {text!r}: expected {usage}")
    if not all(math.isfinite(a) for a in given):
        raise NtkplastError(f"--intervention {text!r}: arguments must be finite numbers")
    args = given + defaults[len(given) - (len(names) - len(defaults)):]
    _check_args(name, args)
    return Intervention(name, args)


def apply_intervention(intervention: str | Intervention, model: models.Model,
                       params: models.Params, opt_state: Any, x: np.ndarray | Array, *,
                       key: Array) -> Intervened:
    """Apply one intervention (module docstring) to a checkpoint's state.

    Args:
      intervention: ``NAME[:ARGS]`` or a parsed :class:`Intervention`.
      model: the run's model (an ntkplast architecture).
      params: the checkpoint's parameters.
      opt_state: its optimizer state (structure kept).
      x: ``(N, *input_shape)`` inputs the network has just trained on (``reset_dead`` reads
        the units' activity on them; the others ignore them).
      key: keys the fresh weights ``reset_dead`` draws (keyword-only).

    Returns:
      An :class:`Intervened` (model, params, opt_state, record).

    Examples:
      >>> import jax
      >>> from ntkplast import models
      >>> from ntkplast.branches import apply_intervention
      >>> model = models.build({"widths": [4], "num_outputs": 2})
      >>> params = model.init(jax.random.PRNGKey(0), (3,))
      >>> out = apply_intervention("scale_output:3", model, params, None, None,
      ...                          key=jax.random.PRNGKey(1))
      >>> out.model.spec.output_scale, out.params is params
      (3.0, True)
    """
    iv = parse_intervention(intervention)
    fn, names, _ = INTERVENTIONS[iv.name]
    if not isinstance(model, models.Model):
        raise NtkplastError(f"--intervention {iv.label}: branches act on ntkplast "
                            f"architectures; this run's model is {type(model).__name__}")
    x = None if x is None else jnp.asarray(x)
    out = fn(model, params, opt_state, x, key=key, **dict(zip(names, iv.args, strict=True)))
    return out._replace(record={"intervention": iv.label, **out.record})


def interventions_of(texts: Sequence[str | Intervention]) -> list[Intervention]:
    """Parsed interventions, ``none`` first (added when absent: the control every comparison
    needs), duplicates dropped in order."""
    out = [parse_intervention("none")]
    for t in texts:
        iv = parse_intervention(t)
        if iv not in out:
            out.append(iv)
    return out
