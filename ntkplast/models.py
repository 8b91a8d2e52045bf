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

Hidden blocks. With every option on, hidden layer l maps the block input u_{l-1} to

    v_l = LN(u_{l-1})            (``pre_norm``: LayerNorm before the weight layer)
    z_l = m_W · v_l ⊛ W_l + m_b · b_l
    h_l = LN(z_l)                (``layer_norm`` without ``pre_norm``: after it, before φ)
    a_l = φ(h_l)                 (the layer's units: what dormancy and resets read)
    u_l = u_{l-1} + a_l          (``residual``, where u_{l-1} and a_l have one shape)

and a CNN block pools u_l (2×2 average) after the sum. LN(z) = γ ⊙ (z − μ)/√(s² + ε) + β over
the last axis (units; channels per position for a CNN) with the layer's own γ, β
(``ln_scale``/``ln_bias`` in its parameter dict) when ``layer_norm_affine``, ε = 1e-5 (Ba,
Kiros & Hinton 2016, "Layer normalization"). Residual skips join every hidden layer but the
first whose input and output shapes agree (He, Zhang, Ren & Sun 2016); the readout is a plain
weight layer. Under ``pre_norm`` the LN moves to the input of each residual block (the first
layer of a stack, which changes the width, has none) and one more LN precedes the readout (the
pre-norm arrangement of Xiong et al. 2020, "On layer normalization in the Transformer
architecture").

Orthogonal weights (``weight_constraint = "orthogonal"``, Dense layers, standard
parameterization): the stored ``W`` (d_in × d_out) is a free parameter and the layer uses
W_eff = σ_w · C(W), exactly semi-orthogonal whatever W is, through the Cayley transform on
the Stiefel manifold (Cayley 1846; as a training parametrisation, Helfrich, Willmott & Ye 2018,
"Orthogonal recurrent neural networks with scaled Cayley transform", and Trockman & Kolter
2021, "Orthogonalizing convolutional layers with the Cayley transform"): for W tall (n × p,
n ≥ p) with top block T (p × p) and rest B,

    S = [[T − Tᵀ, −Bᵀ], [B, 0]]  (n × n, skew),   C(W) = (I + S)⁻¹ (I − S) E,   E = [I_p; 0],

and C(W) = C(Wᵀ)ᵀ for wide W. I + S is always invertible (S's eigenvalues are imaginary), so
C is smooth everywhere and C(W)ᵀC(W) = I_p to rounding. Gradients, the NTK and the optimizer
all act on the free W; W is drawn N(0, 1/d_in) (so C(W) is a random, not Haar-distributed,
orthogonal frame). Anil, Lucas & Grosse (2019) pair such layers with GroupSort.

Activations: the elementwise ``relu, leaky_relu (slope negative_slope), tanh, erf, gelu,
linear``, and the two that are not elementwise: ``groupsort`` sorts each consecutive group of
``group_size`` units in descending order and ``maxmin`` is its group size 2, (max, min) of each
pair (Anil, Lucas & Grosse 2019, "Sorting out Lipschitz function approximation", ICML). Their
Jacobian is a permutation matrix on every input (a.e.), so with orthogonal weights every layer
Jacobian is orthogonal: the networks are isometric yet universal Lipschitz approximators.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ntkplast.blocks import LN_EPS, cayley_stiefel, group_sort, layer_norm
from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain

__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "GROUP_ACTIVATIONS", "INITS", "KINDS", "LN_EPS",
           "PARAMETERIZATIONS", "WEIGHT_CONSTRAINTS", "ArchSpec", "Layer", "Model", "Params",
           "activation_fn", "block_inputs", "block_map", "block_output", "build",
           "cayley_stiefel", "effective_weight", "fan_in", "forward", "group_sort",
           "init_params", "layer_input", "layer_norm", "layer_pre_activation", "multipliers",
           "out_widths"]

Array = jax.Array
Params = tuple[dict[str, Array], ...]

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
ACTIVATION_NAMES = (*ACTIVATIONS, "leaky_relu", *GROUP_ACTIVATIONS)
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
      activation: one of ``relu, leaky_relu, tanh, erf, gelu, linear, groupsort, maxmin``.
      negative_slope: leaky ReLU's slope α for z < 0, φ(z) = max(z, αz).
      group_size: GroupSort's group size g ≥ 2 (every hidden width a multiple of g);
        ``maxmin`` is g = 2.
      parameterization: ``"standard"`` or ``"ntk"`` (module docstring).
      init: ``"gaussian"`` or ``"orthogonal"``.
      w_std: σ_w of hidden layers; ``None`` picks He (√2) for relu, √(2/(1 + α²)) for leaky
        ReLU and 1 otherwise (LeCun; for GroupSort/MaxMin the norm-preserving gain).
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
        if self.activation == "relu":
            return math.sqrt(2.0)
        if self.activation == "leaky_relu":
            return math.sqrt(2.0 / (1.0 + self.negative_slope ** 2))
        return 1.0

    @property
    def gram_target(self) -> float:
        """Default target s of the Gram penalties ‖WᵀW − s·I‖: the He gain² 2 for relu,
        2/(1 + α²) for leaky ReLU, 1 otherwise (whatever ``w_std`` is)."""
        if self.activation == "relu":
            return 2.0
        if self.activation == "leaky_relu":
            return 2.0 / (1.0 + self.negative_slope ** 2)
        return 1.0

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
    σ_w · C(W), the Cayley image of the stored free parameter (:func:`effective_weight`).
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

    @property
    def has_norm(self) -> bool:
        """Whether the layer owns a LayerNorm (and, with affine norms, its γ and β)."""
        return self.pre_norm or self.post_norm

    @property
    def elementwise(self) -> bool:
        """Whether the layer is W (as stored), then an elementwise φ: no norm, no skip, no
        constraint, so the layerwise engine's diagonal fast path and gates apply."""
        return not (self.activation in GROUP_ACTIVATIONS or self.has_norm or self.skip
                    or self.constrained)


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
    """Build a :class:`Model` from a spec (an :class:`ArchSpec` or its dict form).

    Examples:
      >>> import jax
      >>> from ntkplast import models
      >>> model = models.build({"widths": [16], "num_outputs": 3})      # or an ArchSpec
      >>> params = model.init(jax.random.PRNGKey(0), (5,))
      >>> [p["W"].shape for p in params], model.apply(params, jax.numpy.ones((4, 5))).shape
      ([(5, 16), (16, 3)], (4, 3))
    """
    if not isinstance(spec, ArchSpec):
        spec = ArchSpec.from_dict(spec)
    b = spec.b_std
    constrained = spec.weight_constraint == "orthogonal"
    hidden = dict(w_std=spec.hidden_w_std, b_std=b, activation=spec.activation,
                  constrained=constrained,
                  post_norm=spec.layer_norm and not spec.pre_norm,
                  negative_slope=spec.negative_slope, group_size=spec.unit_group_size)

    def stack(kind: str, widths: tuple[int, ...], **kw: Any) -> list[Layer]:
        # a skip needs equal input and output widths, so never on a stack's first layer;
        # pre-norm normalises the input of each residual block only
        skips = [spec.residual and i > 0 and widths[i] == widths[i - 1]
                 for i in range(len(widths))]
        return [Layer(kind, **hidden, **kw, flatten=kind == "dense" and i == 0, skip=skip,
                      pre_norm=spec.pre_norm and skip) for i, skip in enumerate(skips)]

    if spec.kind == "mlp":
        layers = stack("dense", spec.widths)
        flat = not spec.widths
    else:
        layers = stack("conv", spec.widths, pool=True) + stack("dense", spec.dense_widths)
        flat = not spec.dense_widths
    layers.append(Layer("dense", spec.readout_w_std, b, None, flatten=flat,
                        pre_norm=spec.pre_norm and bool(layers), constrained=constrained))
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
    if layer.constrained:  # the free parameter of the Cayley map
        return jax.random.normal(key, shape) / math.sqrt(fin)
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
        if layer.has_norm and spec.layer_norm_affine:
            norm_width = w_shape[-2] if layer.pre_norm else width
            p["ln_scale"] = jnp.ones((norm_width,))
            p["ln_bias"] = jnp.zeros((norm_width,))
        params.append(p)
    return tuple(params)


def avg_pool(a: Array) -> Array:
    """2×2 average pooling with stride 2 over the spatial axes of NHWC ``a`` (VALID: an odd
    last row or column is dropped), as a reshape and mean, whose vjp is a broadcast."""
    n, h, w, c = a.shape
    a = a[:, :h - h % 2, :w - w % 2]
    return a.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def layer_pre_activation(model: Model, layer: Layer, p: Mapping[str, Array], a: Array) -> Array:
    """z = m_W · a ⊛ W + m_b · b for one layer (``a`` already flattened when the layer says so)."""
    m_w, m_b = multipliers(model, layer, p["W"])
    if layer.kind == "conv":
        z = lax.conv_general_dilated(a, p["W"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
        z = a @ effective_weight(layer, p["W"])
    z = m_w * z
    if "b" in p:
        z = z + m_b * p["b"]
    return z


def effective_weight(layer: Layer, w: Array) -> Array:
    """The weight a layer multiplies by: σ_w · C(W) for a constrained layer, else W itself."""
    return layer.w_std * cayley_stiefel(w) if layer.constrained else w


def activation_fn(layer: Layer) -> Callable[[Array], Array]:
    """φ of a hidden layer as a function of its (normalised) pre-activation, units last."""
    if layer.activation == "leaky_relu":
        slope = layer.negative_slope
        return lambda z: jax.nn.leaky_relu(z, slope)
    if layer.activation in GROUP_ACTIVATIONS:
        size = layer.group_size
        return lambda z: group_sort(z, size)
    return ACTIVATIONS[layer.activation]


def layer_input(layer: Layer, p: Mapping[str, Array], u: Array) -> Array:
    """What the weight layer multiplies: LN(u) under pre-norm, else the block input u."""
    return layer_norm(u, p) if layer.pre_norm else u


def block_output(layer: Layer, p: Mapping[str, Array], u: Array,
                 z: Array) -> tuple[Array, Array]:
    """A hidden block's units a = φ(LN(z) or z) and its output u + a (skip) or a, unpooled."""
    a = activation_fn(layer)(layer_norm(z, p) if layer.post_norm else z)
    return a, (u + a if layer.skip else a)


def block_map(model: Model, layer: Layer, p: Mapping[str, Array], u: Array) -> Array:
    """The map u_{l-1} ↦ u_l of one block before pooling (the readout's: u_{L-1} ↦ logits)."""
    z = layer_pre_activation(model, layer, p, layer_input(layer, p, u))
    return z if layer.activation is None else block_output(layer, p, u, z)[1]


def forward(model: Model, params: Params, x: Array) -> tuple[Array, list[Array], list[Array]]:
    """Run the network; return logits, pre-activations per layer and post-activations.

    Pre-activations are the weight layers' outputs z_l (logits last); post-activations the
    hidden blocks' units a_l (before any skip sum and pooling; module docstring).
    """
    logits, pre, post, _ = _run(model, params, x)
    return logits, pre, post


def block_inputs(model: Model, params: Params, x: Array) -> list[Array]:
    """What each weight layer's block consumes, u_{l-1} (after pooling and flattening)."""
    return _run(model, params, x)[3]


def _run(model: Model, params: Params,
         x: Array) -> tuple[Array, list[Array], list[Array], list[Array]]:
    if len(params) != len(model.layers):
        raise NtkplastError(f"params have {len(params)} layers but the model spec has "
                            f"{len(model.layers)}; load parameters made for this spec")
    u = x
    pre, post, inputs = [], [], []
    for layer, p in zip(model.layers, params):
        if layer.flatten:
            u = u.reshape(u.shape[0], -1)
        inputs.append(u)
        z = layer_pre_activation(model, layer, p, layer_input(layer, p, u))
        pre.append(z)
        if layer.activation is None:
            return z, pre, post, inputs
        a, u = block_output(layer, p, u, z)
        post.append(a)
        if layer.pool:
            u = avg_pool(u)
    raise AssertionError("the last layer of a model always has activation None")
