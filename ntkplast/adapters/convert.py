"""Recognise a framework's network as an ntkplast architecture, checked on the user's inputs.

A Flax or Equinox MLP/CNN is the network that some :class:`~ntkplast.models.ArchSpec` builds:
its parameters convert by name and layout (:mod:`ntkplast.convert.pytrees`), but the
activation and any detail that the parameters do not record are only in the framework's code.
:func:`recognise` therefore converts the parameters once per candidate activation and keeps the
architecture whose ``apply`` reproduces the framework's own outputs on probe inputs, to float
rounding: max |f_ntkplast(x) − f_framework(x)| ≤ rtol · (1 + max |f_framework(x)|); where the
order of the layers' names is not the order they run in, the other orders in which their shapes
chain are tried too. A network that none reproduces (a different activation, a BatchNorm,
attention) is refused with the difference found; such models still get every NTK diagnostic through
:class:`ntkplast.adapters.FunctionModel` and the generic engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models
from ntkplast.convert.pytrees import pytree_to_params, pytree_to_state_dict
from ntkplast.errors import NtkplastError

__all__ = ["CANDIDATE_ACTIVATIONS", "Adapted", "recognise"]

CANDIDATE_ACTIVATIONS = ("relu", "tanh", "erf", "gelu", "leaky_relu", "linear")
"""Activations tried, in order, when none is given (gelu is the exact erf form: Flax's
``nn.gelu`` defaults to the tanh approximation, which is not one of them)."""


class Adapted(NamedTuple):
    """A framework network as ntkplast sees it: ``model.apply(params, x)`` is the framework's
    output (``x`` in ntkplast's layout: images ``H × W × C``); every diagnostic of
    :mod:`ntkplast.ntk`, :mod:`ntkplast.isometry` and :mod:`ntkplast.dormancy` takes
    ``(model, params)``. ``spec`` is ``model.spec``; ``max_error`` the agreement found."""

    model: models.Model
    params: models.Params
    max_error: float

    @property
    def spec(self) -> models.ArchSpec:
        return self.model.spec


def _ntkplast_inputs(x: Any, input_layout: str) -> jax.Array:
    x = jnp.asarray(x)
    return jnp.transpose(x, (0, 2, 3, 1)) if input_layout == "chw" and x.ndim == 4 else x


def recognise(tree: Any, framework_apply: Callable[[jax.Array], jax.Array], x: Any, *,
              activation: str | None = None,
              spec: models.ArchSpec | Mapping[str, Any] | None = None,
              input_layout: str = "hwc", rtol: float = 1e-4,
              source: str = "model") -> Adapted:
    """The ntkplast network that computes ``framework_apply`` (module docstring).

    Args:
      tree: the framework's parameter pytree.
      framework_apply: ``x ↦ logits`` of the framework's model, on a batch in its own layout.
      x: probe inputs ``N × input_shape`` in the framework's layout (a few suffice).
      activation: φ if known; ``None`` tries :data:`CANDIDATE_ACTIVATIONS`.
      spec: the architecture when the parameters do not say it all (LayerNorm, residual
        blocks, ntk parameterization); its activation is then the only one tried.
      input_layout: ``"hwc"`` (Flax, NHWC images) or ``"chw"`` (Equinox, CHW images).
      rtol: agreement required, relative to the output scale.

    Raises:
      NtkplastError: the parameters fit no supported network, or no candidate reproduces the
        framework's outputs (the smallest difference found is named).
    """
    want = np.asarray(framework_apply(jnp.asarray(x)))
    x_ntk = _ntkplast_inputs(x, input_layout)
    shape = tuple(x_ntk.shape[1:])
    if spec is not None:
        spec = spec if isinstance(spec, models.ArchSpec) else models.ArchSpec.from_dict(spec)
        names: Sequence[str] = (spec.activation,)
    else:
        names = (activation,) if activation else CANDIDATE_ACTIVATIONS
    scale = 1.0 + float(np.max(np.abs(want))) if want.size else 1.0
    tried, other_orders = [], 0
    for order in _orders(tree, spec, source):
        for name in names:
            try:
                got_spec, params = pytree_to_params(tree, spec, activation=name,
                                                    input_shape=shape, input_layout=input_layout,
                                                    key_order=order, source=source)
            except NtkplastError:
                if order is None:
                    raise
                break  # the shapes do not chain in this order
            if order is None:
                default = params
            elif _same_arrays(params, default):
                break  # the default order again
            else:
                other_orders += name == names[0]
            model = models.build(got_spec)
            got = np.asarray(model.apply(params, x_ntk))
            err = float(np.max(np.abs(got - want))) if got.shape == want.shape else np.inf
            if err <= rtol * scale:
                return Adapted(model, params, err)
            if order is None:
                tried.append(f"{name}: {err:.3g}")
    others = f", nor in {other_orders} other layer order(s)" if other_orders else ""
    raise NtkplastError(f"{source}: no ntkplast network with these parameters reproduces the "
                        f"model's outputs (max difference per activation tried: "
                        f"{', '.join(tried)}; allowed {rtol * scale:.3g}{others}); give the "
                        f"activation or spec, or use adapters.FunctionModel for the generic "
                        f"engine")


def _same_arrays(a: Any, b: Any) -> bool:
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.shape(u) == np.shape(v) and np.array_equal(u, v) for u, v in zip(leaves_a, leaves_b))


def _orders(tree: Any, spec: Any, source: str) -> Iterator[list[str] | None]:
    """``None`` (the names' order), then, only if that is asked for next and no spec fixes the
    architecture, :func:`_other_orders` — not computed when the names' order reproduces."""
    yield None
    if spec is None:
        yield from _other_orders(tree, source)


def _other_orders(tree: Any, source: str, limit: int = 24) -> list[list[str]]:
    """Forward orders of the Dense/Conv modules to try when the default one (the order of
    their names) reproduces nothing: a compact linen module builds its layers in the order its
    code names them, so ``nn.Dense(12)(nn.tanh(nn.Dense(12)(x)))`` calls the outer one
    ``Dense_0``. Up to ``limit`` permutations of at most 6 modules (whether their shapes
    chain is checked by the conversion); none where a module is no Dense/Conv."""
    state = pytree_to_state_dict(tree, source)
    modules = sorted({key.rpartition(".")[0] for key in state})
    weights = {key.rpartition(".")[0] for key, arr in state.items()
               if key.endswith("weight") and arr.ndim in (2, 4)}
    if len(modules) > 6 or set(modules) != weights:
        return []
    return [list(p) for p in itertools.islice(itertools.permutations(modules), limit)]
