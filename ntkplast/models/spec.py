"""The architecture spec: :class:`ArchSpec` (what a config's ``[model]`` table holds), its
validation, and :class:`Layer`, one weight layer as :func:`ntkplast.models.build` lays it out.

Also the choices a spec may name (:data:`ACTIVATIONS`, :data:`GROUP_ACTIVATIONS`,
:data:`ACTIVATION_NAMES`, :data:`KINDS`, :data:`PARAMETERIZATIONS`, :data:`INITS`,
:data:`WEIGHT_CONSTRAINTS`) and :func:`out_widths`. The formulas (the "module docstring"
below) are in the :mod:`ntkplast.models` package docstring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain

__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "GROUP_ACTIVATIONS", "INITS", "KINDS",
           "PARAMETERIZATIONS", "WEIGHT_CONSTRAINTS", "WIDENING_ACTIVATIONS", "ArchSpec", "Layer",
           "out_widths"]

Array = jax.Array


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "linear": lambda z: z,
}
"""The elementwise activations with no parameter (:func:`activation_fn` gives every one)."""
GROUP_ACTIVATIONS = ("groupsort", "maxmin")
"""Activations that act on groups of units: their Jacobian is a permutation, not diagonal."""
WIDENING_ACTIVATIONS = ("crelu",)
"""Activations with more outputs than inputs: CReLU emits [relu(z), relu(−z)], two features per
unit, so the next layer's fan-in is twice the layer's width."""
ACTIVATION_NAMES = (*ACTIVATIONS, "leaky_relu", *GROUP_ACTIVATIONS, *WIDENING_ACTIVATIONS)
KINDS = ("mlp", "cnn")
PARAMETERIZATIONS = ("standard", "ntk")
INITS = ("gaussian", "orthogonal")
WEIGHT_CONSTRAINTS = ("none", "orthogonal")


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """Plain-data description of an architecture.

    Attributes:
      kind: ``"mlp"`` (inputs flattened) or ``"cnn"`` (conv–φ–avgpool blocks, then dense layers;
        inputs ``H × W × C``).
      widths: MLP hidden widths, or CNN conv channels per block.
      num_outputs: K, the number of logits.
      activation: one of ``relu, leaky_relu, tanh, erf, gelu, linear, groupsort, maxmin,
        crelu`` (CReLU, φ(z) = [relu(z), relu(−z)]: each layer emits twice its width).
      negative_slope: leaky ReLU's slope α for z < 0, φ(z) = max(z, αz).
      group_size: GroupSort's group size g ≥ 2 (every hidden width a multiple of g);
        ``maxmin`` is g = 2.
      parameterization: ``"standard"`` or ``"ntk"`` (module docstring).
      init: ``"gaussian"`` or ``"orthogonal"``.
      w_std: σ_w of hidden layers; ``None`` picks He (√2) for relu and crelu (whose fan-in
        counts both halves), √(2/(1 + α²)) for leaky ReLU and 1 otherwise (LeCun; for
        GroupSort/MaxMin the norm-preserving gain).
      b_std: σ_b (0 with standard parameterization initialises biases at zero).
      readout_w_std: σ_w of the last layer.
      use_bias: whether layers carry biases.
      kernel_size: CNN filter size (square, SAME padding).
      dense_widths: CNN only, widths of dense hidden layers between the conv blocks and readout.
      layer_norm: LayerNorm in every hidden block (after the weight layer, before φ; before
        the weight layer and once before the readout with ``pre_norm``).
      layer_norm_affine: whether each LayerNorm has its own scale γ and shift β (init 1, 0).
      residual: skip connections u_l = u_{l-1} + a_l where shapes agree (module docstring).
      pre_norm: LayerNorm at the block input instead (needs ``layer_norm`` and ``residual``).
      weight_constraint: ``"none"`` or ``"orthogonal"``: every Dense layer's effective weight
        is σ_w times the Cayley image of its free parameter, exactly semi-orthogonal (module
        docstring; MLPs with the standard parameterization).
      output_scale: c > 0, a constant that multiplies the network's output, f = c·z_L (module
        docstring): the NTK is c²Θ, its conditioning and every unit's activity unchanged. 1
        (the default) is left out of :meth:`to_dict`, so specs written before it read as
        before; counterfactual branches set it (``scale_output:c``).
    """

    kind: str = "mlp"
    widths: tuple[int, ...] = (100, 100, 100)
    num_outputs: int = 10
    activation: str = "relu"
    parameterization: str = "standard"
    init: str = "gaussian"
    w_std: float | None = None
    b_std: float = 0.0
    readout_w_std: float = 1.0
    use_bias: bool = True
    kernel_size: int = 3
    dense_widths: tuple[int, ...] = ()
    negative_slope: float = 0.01
    group_size: int = 2
    layer_norm: bool = False
    layer_norm_affine: bool = True
    residual: bool = False
    pre_norm: bool = False
    weight_constraint: str = "none"
    output_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "dense_widths", tuple(int(w) for w in self.dense_widths))
        _check_choice("kind", self.kind, KINDS)
        _check_choice("activation", self.activation, ACTIVATION_NAMES)
        _check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        _check_choice("init", self.init, INITS)
        _check_choice("weight_constraint", self.weight_constraint, WEIGHT_CONSTRAINTS)
        if self.weight_constraint != "none" and (self.kind != "mlp"
                                                 or self.parameterization != "standard"):
            raise NtkplastError("model.weight_constraint: orthogonal layers are Dense layers "
                                "with the standard parameterization; use kind = 'mlp' and "
                                "parameterization = 'standard'")
        if any(w < 1 for w in self.widths + self.dense_widths) or self.num_outputs < 1:
            raise NtkplastError(f"model widths and num_outputs must be positive integers, got "
                                f"widths={self.widths}, num_outputs={self.num_outputs}")
        if self.kind == "cnn" and not self.widths:
            raise NtkplastError("model.widths: a cnn needs at least one conv block")
        if self.kind == "mlp" and self.dense_widths:
            raise NtkplastError("model.dense_widths applies to kind='cnn' only; "
                                "put MLP hidden widths in model.widths")
        if (isinstance(self.output_scale, bool) or not isinstance(self.output_scale, int | float)
                or not math.isfinite(self.output_scale) or self.output_scale <= 0):
            raise NtkplastError(f"model.output_scale must be a finite number > 0, got "
                                f"{self.output_scale!r}")
        object.__setattr__(self, "output_scale", float(self.output_scale))
        if self.kernel_size < 1:
            raise NtkplastError(f"model.kernel_size must be >= 1, got {self.kernel_size}")
        if self.activation in GROUP_ACTIVATIONS:
            g = self.unit_group_size
            if g < 2:
                raise NtkplastError(f"model.group_size must be >= 2, got {self.group_size}")
            bad = [w for w in self.widths + self.dense_widths if w % g]
            if bad:
                raise NtkplastError(f"model.widths: {self.activation} sorts groups of {g} units,"
                                    f" so every hidden width must be a multiple of {g}; got "
                                    f"{bad}")
        if not (0.0 <= self.negative_slope < 1.0):
            raise NtkplastError(f"model.negative_slope must be in [0, 1), got "
                                f"{self.negative_slope}")
        if self.pre_norm and not (self.layer_norm and self.residual):
            raise NtkplastError("model.pre_norm puts LayerNorm at each residual block's input; "
                                "set layer_norm = true and residual = true with it")

    @property
    def hidden_w_std(self) -> float:
        """σ_w of the hidden layers (He for relu, LeCun otherwise, unless given)."""
        if self.w_std is not None:
            return float(self.w_std)
        if self.activation in ("relu", "crelu"):
            return math.sqrt(2.0)
        if self.activation == "leaky_relu":
            return math.sqrt(2.0 / (1.0 + self.negative_slope ** 2))
        return 1.0

    @property
    def gram_target(self) -> float:
        """Default target s of the Gram penalties ‖WᵀW − s·I‖: the He gain² 2 for relu and
        crelu, 2/(1 + α²) for leaky ReLU, 1 otherwise (whatever ``w_std`` is)."""
        if self.activation in ("relu", "crelu"):
            return 2.0
        if self.activation == "leaky_relu":
            return 2.0 / (1.0 + self.negative_slope ** 2)
        return 1.0

    @property
    def features_per_unit(self) -> int:
        """Outputs of a hidden layer per unit: 2 for CReLU, 1 otherwise."""
        return 2 if self.activation in WIDENING_ACTIVATIONS else 1

    @property
    def unit_group_size(self) -> int:
        """Units per activation group: g for GroupSort, 2 for MaxMin, 1 for the elementwise."""
        if self.activation == "maxmin":
            return 2
        return int(self.group_size) if self.activation == "groupsort" else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready dict; ``ArchSpec.from_dict(spec.to_dict()) == spec``."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        d["dense_widths"] = list(self.dense_widths)
        if self.output_scale == 1.0:  # as every spec was written before the field existed
            del d["output_scale"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "model") -> ArchSpec:
        """Build a spec from plain data; unknown keys and wrong types name ``where.key``."""
        return from_plain(cls, d, where)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One weight layer as the engines see it.

    ``kind`` is ``"dense"`` or ``"conv"``; ``activation`` is the nonlinearity applied after it
    (``None`` for the readout); ``pool`` says whether a 2×2 average pool follows the activation;
    ``flatten`` whether the input is flattened first; ``w_std``/``b_std`` are σ_w and σ_b.
    ``pre_norm``/``post_norm``: a LayerNorm on the layer's input / on z before φ; ``skip``: the
    block adds its input to its output (module docstring). ``negative_slope`` and
    ``group_size`` parameterize leaky ReLU and GroupSort; ``constrained``: the weight is
    σ_w · C(W), the Cayley image of the stored free parameter (:func:`effective_weight`);
    ``scale``: a constant both multipliers carry (the readout's is the spec's ``output_scale``,
    every other layer's 1).
    A CReLU layer of width d emits 2d features (:attr:`features_per_unit`).
    """

    kind: str
    w_std: float
    b_std: float
    activation: str | None
    pool: bool = False
    flatten: bool = False
    pre_norm: bool = False
    post_norm: bool = False
    skip: bool = False
    negative_slope: float = 0.01
    group_size: int = 1
    constrained: bool = False
    scale: float = 1.0

    @property
    def has_norm(self) -> bool:
        """Whether the layer owns a LayerNorm (and, with affine norms, its γ and β)."""
        return self.pre_norm or self.post_norm

    @property
    def features_per_unit(self) -> int:
        """Features the block emits per unit of its weight layer: 2 for CReLU, else 1."""
        return 2 if self.activation in WIDENING_ACTIVATIONS else 1

    @property
    def elementwise(self) -> bool:
        """Whether the layer is W (as stored), then an elementwise φ: no norm, no skip, no
        constraint, not GroupSort or CReLU, so the layerwise engine's diagonal fast path and
        gates apply."""
        return not (self.activation in GROUP_ACTIVATIONS
                    or self.activation in WIDENING_ACTIVATIONS or self.has_norm or self.skip
                    or self.constrained)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise NtkplastError(f"model.{name}: unknown value {value!r}; choose one of {list(choices)}")


def out_widths(spec: ArchSpec) -> tuple[int, ...]:
    """Output width (units or channels) of every weight layer, readout last."""
    if spec.kind == "mlp":
        return spec.widths + (spec.num_outputs,)
    return spec.widths + spec.dense_widths + (spec.num_outputs,)
