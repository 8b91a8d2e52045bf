"""Build a method's :class:`~ntkplast.hooks.Hooks` from plain data (a config's ``[method]`` table).

::

    [method]
    name = "adamo"      # none | l2 | l2_init | shrink_perturb | spectral | parseval | srip |
    lam = 1e-3          # isometry | adamo | redo | cbp | fire | plasticity_injection |
    every = 8           # head_reset | nap; any option of that method's constructor, by keyword

The options are the keyword arguments of the method's constructor in
:mod:`ntkplast.regularizers` (listed in :data:`METHODS`); unknown names and wrong types raise
:class:`~ntkplast.errors.NtkplastError`. ``scale`` for isometry/AdamO/Parseval defaults to 2 for a
ReLU network and 1 otherwise; isometry-type penalties act on the model's effective weights.
AdamO's η_iso is the run's learning rate. ``lam`` of isometry and AdamO is in the ½‖G − s'I‖²
convention, twice the paper's unhalved λ (:mod:`ntkplast.regularizers.penalties`). AdamO's
``num_probes`` was ``probes`` in 0.2; that key is still read, with a DeprecationWarning.
``fire``, ``plasticity_injection`` and ``head_reset`` act at task boundaries
(:mod:`ntkplast.regularizers.boundary`), ``every`` counting tasks; ``nap`` projects after every
update (:mod:`ntkplast.regularizers.projection`) and needs ``model.layer_norm = true``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optax

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.hooks import Hooks
from ntkplast.regularizers import boundary, decoupled, penalties, projection, resets

__all__ = ["METHODS", "check_method", "make_hooks"]

# name -> (accepted options with their defaults)
METHODS: dict[str, dict[str, Any]] = {
    "none": {},
    "l2": {"lam": 1e-4, "layers": "all", "include_biases": True},
    "l2_init": {"lam": 1e-4, "squared": True},
    "shrink_perturb": {"shrink": 1e-4, "sigma": 1e-4, "every": 1, "noise": "gaussian",
                       "at_task_end": False},
    "spectral": {"lam": 1e-4, "target": 1.0, "num_iters": 20, "layers": "all"},
    "parseval": {"lam": 1e-3, "scale": None, "layers": "hidden"},
    "srip": {"lam": 1e-4, "num_iters": 2, "squared": False, "layers": "hidden"},
    "isometry": {"lam": 1e-3, "scale": None, "rect_correction": True, "normalize": False,
                 "layers": "hidden"},
    "adamo": {"lam": 1e-3, "scale": None, "rect_correction": True, "normalize": False,
              "layers": "hidden", "every": 1, "num_probes": None},
    "redo": {"tau": 0.1, "every": 1000},
    "cbp": {"replacement_rate": 1e-4, "decay_rate": 0.99, "maturity_threshold": 100},
    "fire": {"alpha": 1.0, "ns_steps": boundary.NS_STEPS, "layers": "all", "every": 1,
             "reset_optimizer": False},
    "plasticity_injection": {"every": 1, "at_task": None},
    "head_reset": {"every": 1},
    "nap": {},
}
_RENAMED = {"adamo": {"probes": "num_probes"}}  # 0.2 option names: {method: {old: new}}
_NUMERIC_DEFAULTS = {"scale": 1.0, "num_probes": 1,  # numeric options whose default None = auto
                     "at_task": 0}                  # (or, for at_task, = not set)
_FREE_WEIGHTS = ("l2", "l2_init", "head_reset", "nap")  # allowed (or refused by name) under
#                                                         weight_constraint = "orthogonal"


def _options(method: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(method, Mapping):
        raise NtkplastError(f"method: expected a table with a 'name', got {method!r}")
    name = method.get("name", "none")
    if not isinstance(name, str) or name not in METHODS:
        raise NtkplastError(f"method.name: unknown {name!r}; choose one of {sorted(METHODS)}")
    allowed = METHODS[name]
    given = {k: v for k, v in method.items() if k != "name"}
    for old, new in _RENAMED.get(name, {}).items():
        if old in given:
            warnings.warn(f"method.{old} is deprecated; it is now method.{new} (the old key "
                          f"will be removed in a later release)", DeprecationWarning,
                          stacklevel=3)
            if new in given:
                raise NtkplastError(f"method: both {old!r} and {new!r} given; keep {new!r}")
            given[new] = given.pop(old)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise NtkplastError(f"method: unknown option(s) {unknown} for {name!r}; its options "
                            f"are {sorted(allowed)}")
    for k, v in given.items():
        default = _NUMERIC_DEFAULTS.get(k, allowed[k])
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise NtkplastError(f"method.{k}: expected true or false, got {v!r}")
        elif isinstance(default, int | float) and not (v is None and allowed[k] is None):
            whole = isinstance(default, int)
            if (not isinstance(v, int | float) or isinstance(v, bool)
                    or (whole and not isinstance(v, int)) or not math.isfinite(v)):
                want = "an integer" if whole else "a finite number"
                raise NtkplastError(f"method.{k}: expected {want}, got {v!r}")
    return name, {**allowed, **given}


def check_method(method: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``[method]`` table (name, option names, the type of every value: booleans,
    integers, finite numbers); return it as a dict.

    For config loading: errors name ``method.<key>``; ranges are checked when
    :func:`make_hooks` builds the method.
    """
    _options(method)
    return dict(method)


def make_hooks(method: Mapping[str, Any], model: models.Model, input_shape: Sequence[int],
               learning_rate: float) -> Hooks:
    """:class:`~ntkplast.hooks.Hooks` for the method described by ``method`` (module docstring).

    Args:
      method: plain data, ``{"name": ..., **options}``; ``{}`` or name ``"none"``: no hooks.
      model: the network (its activation picks the default scale; resets re-draw from its init).
      input_shape: per-example input shape (resets' re-initialisation).
      learning_rate: the run's learning rate (AdamO's η_iso).
    """
    name, o = _options(method)
    scale = o.get("scale")
    if scale is None:
        scale = model.spec.gram_target
    if name == "none":
        return Hooks()
    if model.spec.weight_constraint != "none" and name not in _FREE_WEIGHTS:
        raise NtkplastError(f"method {name!r}: it acts on the stored weights, which under "
                            f"model.weight_constraint = 'orthogonal' are the free parameters "
                            f"of the Cayley map, not the (already orthogonal) weights the "
                            f"layers use; use plain training, l2, l2_init or head_reset there")
    if name == "l2":
        return Hooks(penalty=penalties.l2_penalty(
            o["lam"], layers=o["layers"], include_biases=o["include_biases"]))
    if name == "l2_init":
        lam, squared = o["lam"], o["squared"]
        return Hooks(optimizer=lambda tx: optax.chain(
            decoupled.add_l2_init_gradient(lam, squared=squared), tx))
    if name == "shrink_perturb":
        if o["noise"] not in ("gaussian", "init"):
            raise NtkplastError(f"method.noise: expected 'gaussian' or 'init', got {o['noise']!r}")
        shape = tuple(input_shape)
        noise = (lambda key: model.init(key, shape)) if o["noise"] == "init" else None
        if o["at_task_end"]:
            return Hooks(on_task_end=decoupled.shrink_perturb_task_end(
                o["shrink"], o["sigma"], noise=noise))
        return Hooks(post_update=decoupled.shrink_perturb(
            o["shrink"], o["sigma"], every=o["every"], noise=noise))
    if name == "spectral":
        return Hooks(penalty=penalties.spectral_penalty(
            o["lam"], target=o["target"], num_iters=o["num_iters"], layers=o["layers"],
            model=model))
    if name == "parseval":
        return Hooks(penalty=penalties.parseval_penalty(
            o["lam"], scale, layers=o["layers"], model=model))
    if name == "srip":
        return Hooks(penalty=penalties.srip_penalty(
            o["lam"], num_iters=o["num_iters"], squared=o["squared"], layers=o["layers"],
            model=model))
    iso = dict(rect_correction=o.get("rect_correction"), normalize=o.get("normalize"),
               layers=o.get("layers"), model=model)
    if name == "isometry":
        return Hooks(penalty=penalties.isometry_penalty(o["lam"], scale, **iso))
    if name == "adamo":
        return Hooks(post_update=decoupled.isometry_post_update(
            o["lam"], learning_rate, scale=scale, every=o["every"], num_probes=o["num_probes"],
            **iso))
    if name == "fire":
        return Hooks(on_task_end=boundary.fire_task_end(
            model, alpha=o["alpha"], ns_steps=o["ns_steps"], layers=o["layers"],
            every=o["every"], reset_optimizer=o["reset_optimizer"]))
    if name == "plasticity_injection":
        return Hooks(on_task_end=boundary.plasticity_injection_task_end(
            every=o["every"], at_task=o["at_task"]))
    if name == "head_reset":
        return Hooks(on_task_end=boundary.head_reset_task_end(model, input_shape,
                                                              every=o["every"]))
    if name == "nap":
        nap = projection.project_to_init_norm(model)
        return Hooks(optimizer=lambda tx: optax.chain(tx, nap))
    if name == "redo":
        return Hooks(post_step=resets.redo(
            model, tau=o["tau"], every=o["every"], input_shape=input_shape))
    cbp = resets.continual_backprop(
        model, replacement_rate=o["replacement_rate"], decay_rate=o["decay_rate"],
        maturity_threshold=o["maturity_threshold"], input_shape=input_shape)
    return Hooks(optimizer=cbp.optimizer, post_step=cbp.post_step)
