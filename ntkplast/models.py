"""Architectures: a plain-data spec builds a pure ``(init, apply)`` pair on plain jax.

An :class:`ArchSpec` describes the network (kind, widths, activation, parameterization, init);
:func:`build` turns it into a :class:`Model` whose ``init(key, input_shape)`` returns the
parameters and whose ``apply(params, x)`` returns the logits. Parameters are a tuple with one
``{"W": ..., "b": ...}`` dict per weight layer (Dense ``W``: ``d_in × d_out``; Conv ``W``:
``k × k × c_in × c_out``, HWIO), so they are a pytree that jit/vmap/grad take directly.

Layer l computes z_l = m_W · a_{l-1} W_l + m_b · b_l, a_l = φ(z_l), with multipliers set by the
parameterization (Jacot et al. 2018; Lee et al. 2019):

* ``"standard"``: m_W = m_b = 1; W_l ~ N(0, σ_w²/fan_in), b_l ~ N(0, σ_b²).
* ``"ntk"``: m_W = σ_w/√fan_in, m_b = σ_b; W_l, b_l ~ N(0, 1).

Both match neural-tangents' ``stax.Dense``/``stax.Conv`` with the same ``W_std``/``b_std``, so the
same spec converts to a stax triple (:mod:`ntkplast.ntk._stax`) whose infinite-width
``kernel_fn`` is the theory reference. ``init="orthogonal"`` draws the effective weight as
σ_w·Q with Q semi-orthogonal (Saxe et al. 2014); for convolutions it is the delta-orthogonal
kernel of Xiao et al. (2018): σ_w·Q at the centre tap, zero elsewhere. Both are the isometric
initialisations: a linear network built from them has every input–output singular value σ_w^L.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain

__all__ = ["ACTIVATIONS", "INITS", "KINDS", "PARAMETERIZATIONS", "ArchSpec", "Layer", "Model",
           "Params", "build", "fan_in", "forward", "init_params", "layer_pre_activation",
           "multipliers", "out_widths"]

Array = jax.Array
Params = tuple[dict[str, Array], ...]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "linear": lambda z: z,
}
KINDS = ("mlp", "cnn")
PARAMETERIZATIONS = ("standard", "ntk")
INITS = ("gaussian", "orthogonal")


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """Plain-data description of an architecture.

    Attributes:
      kind: ``"mlp"`` (inputs flattened) or ``"cnn"`` (conv–φ–avgpool blocks, then dense layers;
        inputs ``H × W × C``).
      widths: MLP hidden widths, or CNN conv channels per block.
      num_outputs: K, the number of logits.
      activation: one of ``relu, tanh, erf, gelu, linear``.
      parameterization: ``"standard"`` or ``"ntk"`` (module docstring).
      init: ``"gaussian"`` or ``"orthogonal"``.
      w_std: σ_w of hidden layers; ``None`` picks He (√2) for relu and LeCun (1) otherwise.
      b_std: σ_b (0 with standard parameterization initialises biases at zero).
      readout_w_std: σ_w of the last layer.
      use_bias: whether layers carry biases.
      kernel_size: CNN filter size (square, SAME padding).
      dense_widths: CNN only, widths of dense hidden layers between the conv blocks and readout.
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "dense_widths", tuple(int(w) for w in self.dense_widths))
        _check_choice("kind", self.kind, KINDS)
        _check_choice("activation", self.activation, tuple(ACTIVATIONS))
        _check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        _check_choice("init", self.init, INITS)
        if any(w < 1 for w in self.widths + self.dense_widths) or self.num_outputs < 1:
            raise NtkplastError(f"model widths and num_outputs must be positive integers, got "
                                f"widths={self.widths}, num_outputs={self.num_outputs}")
        if self.kind == "cnn" and not self.widths:
            raise NtkplastError("model.widths: a cnn needs at least one conv block")
        if self.kind == "mlp" and self.dense_widths:
            raise NtkplastError("model.dense_widths applies to kind='cnn' only; "
                                "put MLP hidden widths in model.widths")
        if self.kernel_size < 1:
            raise NtkplastError(f"model.kernel_size must be >= 1, got {self.kernel_size}")

    @property
    def hidden_w_std(self) -> float:
        """σ_w of the hidden layers (He for relu, LeCun otherwise, unless given)."""
        if self.w_std is not None:
            return float(self.w_std)
        return math.sqrt(2.0) if self.activation == "relu" else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready dict; ``ArchSpec.from_dict(spec.to_dict()) == spec``."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        d["dense_widths"] = list(self.dense_widths)
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
    """

    kind: str
    w_std: float
    b_std: float
    activation: str | None
    pool: bool = False
    flatten: bool = False


@dataclasses.dataclass(frozen=True)
class Model:
    """A built architecture: pure functions plus the layer list they follow."""

    spec: ArchSpec
    layers: tuple[Layer, ...]

    def init(self, key: Array, input_shape: Sequence[int]) -> Params:
        """Draw parameters for inputs of per-example shape ``input_shape`` (no batch axis)."""
        return init_params(self, key, tuple(input_shape))

    def apply(self, params: Params, x: Array) -> Array:
        """Logits ``f(x) ∈ R^{N×K}`` for a batch ``x`` of shape ``N × input_shape``."""
        return forward(self, params, x)[0]

    def intermediates(self, params: Params, x: Array) -> tuple[list[Array], list[Array]]:
        """Pre-activations ``[z_1, …, z_L]`` and post-activations ``[a_1, …, a_{L-1}]``.

        ``z_L`` are the logits. For a CNN, ``a_l`` is taken after φ and before pooling, so its
        last axis indexes the layer's units (channels).
        """
        _, pre, post = forward(self, params, x)
        return pre, post


def build(spec: ArchSpec | Mapping[str, Any]) -> Model:
    """Build a :class:`Model` from a spec (an :class:`ArchSpec` or its dict form)."""
    if not isinstance(spec, ArchSpec):
        spec = ArchSpec.from_dict(spec)
    hid = spec.hidden_w_std
    b = spec.b_std
    if spec.kind == "mlp":
        layers = [Layer("dense", hid, b, spec.activation, flatten=(i == 0))
                  for i in range(len(spec.widths))]
        layers.append(Layer("dense", spec.readout_w_std, b, None, flatten=not spec.widths))
    else:
        layers = [Layer("conv", hid, b, spec.activation, pool=True) for _ in spec.widths]
        layers += [Layer("dense", hid, b, spec.activation, flatten=(i == 0))
                   for i in range(len(spec.dense_widths))]
        layers.append(Layer("dense", spec.readout_w_std, b, None, flatten=not spec.dense_widths))
    return Model(spec, tuple(layers))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise NtkplastError(f"model.{name}: unknown value {value!r}; choose one of {list(choices)}")


def out_widths(spec: ArchSpec) -> tuple[int, ...]:
    """Output width (units or channels) of every weight layer, readout last."""
    if spec.kind == "mlp":
        return spec.widths + (spec.num_outputs,)
    return spec.widths + spec.dense_widths + (spec.num_outputs,)


def fan_in(w: Array) -> int:
    """Fan-in of a Dense (``d_in × d_out``) or HWIO Conv weight: all axes but the last."""
    return math.prod(w.shape[:-1])


def multipliers(model: Model, layer: Layer, w: Array) -> tuple[float, float]:
    """(m_W, m_b): the factors that multiply W and b in the forward pass (module docstring)."""
    if model.spec.parameterization == "ntk":
        return layer.w_std / math.sqrt(fan_in(w)), layer.b_std
    return 1.0, 1.0


def _semi_orthogonal(key: Array, rows: int, cols: int) -> Array:
    """A ``rows × cols`` matrix with orthonormal columns (rows ≥ cols) or rows (rows < cols)."""
    big, small = max(rows, cols), min(rows, cols)
    q, r = jnp.linalg.qr(jax.random.normal(key, (big, small)))
    q = q * jnp.sign(jnp.diagonal(r))  # Haar measure (Mezzadri 2007)
    return q if rows >= cols else q.T


def _init_weight(key: Array, spec: ArchSpec, layer: Layer, shape: tuple[int, ...]) -> Array:
    fin = math.prod(shape[:-1])
    if spec.init == "gaussian":
        w = jax.random.normal(key, shape)
        return w if spec.parameterization == "ntk" else w * (layer.w_std / math.sqrt(fin))
    q = _semi_orthogonal(key, shape[-2], shape[-1]) * layer.w_std  # effective weight σ_w·Q
    if layer.kind == "conv":
        k = shape[0]
        q = jnp.zeros(shape).at[k // 2, k // 2].set(q)
    m_w = layer.w_std / math.sqrt(fin) if spec.parameterization == "ntk" else 1.0
    return q / m_w


def init_params(model: Model, key: Array, input_shape: tuple[int, ...]) -> Params:
    """Draw parameters layer by layer (one PRNG key per layer, split from ``key``)."""
    spec = model.spec
    if spec.kind == "cnn" and len(input_shape) != 3:
        raise NtkplastError(f"input_shape: a cnn takes images H×W×C, got {input_shape}")
    if not input_shape or any(int(s) < 1 for s in input_shape):
        raise NtkplastError(f"input_shape must be a non-empty tuple of positive sizes, "
                            f"got {input_shape}")
    shape = tuple(int(s) for s in input_shape)
    params = []
    keys = jax.random.split(key, len(model.layers))
    for layer, width, k in zip(model.layers, out_widths(spec), keys):
        kw, kb = jax.random.split(k)
        if layer.flatten:
            shape = (math.prod(shape),)
        if layer.kind == "conv":
            w_shape = (spec.kernel_size, spec.kernel_size, shape[-1], width)
            shape = (shape[0] // 2, shape[1] // 2, width) if layer.pool else shape[:2] + (width,)
            if min(shape[:2]) < 1:
                raise NtkplastError(f"input_shape {input_shape} is too small for "
                                    f"{len(spec.widths)} pooling blocks")
        else:
            w_shape = (shape[-1], width)
            shape = (width,)
        p = {"W": _init_weight(kw, spec, layer, w_shape)}
        if spec.use_bias:
            std = 1.0 if spec.parameterization == "ntk" else layer.b_std
            p["b"] = std * jax.random.normal(kb, (width,))
        params.append(p)
    return tuple(params)


def _avg_pool(a: Array) -> Array:
    s = lax.reduce_window(a, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return s / 4.0


def layer_pre_activation(model: Model, layer: Layer, p: Mapping[str, Array], a: Array) -> Array:
    """z = m_W · a ⊛ W + m_b · b for one layer (``a`` already flattened when the layer says so)."""
    m_w, m_b = multipliers(model, layer, p["W"])
    if layer.kind == "conv":
        z = lax.conv_general_dilated(a, p["W"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
        z = a @ p["W"]
    z = m_w * z
    if "b" in p:
        z = z + m_b * p["b"]
    return z


def forward(model: Model, params: Params, x: Array) -> tuple[Array, list[Array], list[Array]]:
    """Run the network; return logits, pre-activations per layer and post-activations."""
    if len(params) != len(model.layers):
        raise NtkplastError(f"params have {len(params)} layers but the model spec has "
                            f"{len(model.layers)}; load parameters made for this spec")
    a = x
    pre, post = [], []
    for layer, p in zip(model.layers, params):
        if layer.flatten:
            a = a.reshape(a.shape[0], -1)
        z = layer_pre_activation(model, layer, p, a)
        pre.append(z)
        if layer.activation is None:
            return z, pre, post
        a = ACTIVATIONS[layer.activation](z)
        post.append(a)
        if layer.pool:
            a = _avg_pool(a)
    raise AssertionError("the last layer of a model always has activation None")
