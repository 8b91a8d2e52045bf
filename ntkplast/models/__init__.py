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

``output_scale`` c multiplies the readout's two multipliers, so the network computes
f(x) = c·z_L(x) with the same parameters: every parameter's Jacobian is c times the unscaled
network's, the empirical NTK is exactly c²Θ (its eigenvalue ratios, hence its condition number,
unchanged) and no hidden unit's activity changes. Only counterfactual branches
(:mod:`ntkplast.branches`) set it; 1 by default.

Both match neural-tangents' ``stax.Dense``/``stax.Conv`` with the same ``W_std``/``b_std``, so the
same spec converts to a stax triple (``ntkplast.ntk._stax``) whose infinite-width
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
``crelu`` widens: φ(z) = [relu(z), relu(−z)] concatenated on the units axis (Shang et al. 2016;
against loss of plasticity, Abbas, Zhao, Modayil, White & Machado 2023), so a hidden layer of
width d emits 2d features and the next layer's W has 2d rows (its fan-in, for the init and the
NTK multiplier, is 2d; the He gain √2 keeps E z² fixed, as E relu(z)² + E relu(−z)² = E z²).
Its Jacobian has orthonormal columns wherever z has no zero, so a CReLU layer never gates a
direction off.

===============  ==========================================================================
module           what it holds
===============  ==========================================================================
``spec``         :class:`ArchSpec` and its checks, :class:`Layer`, the activation, kind,
                 parameterization, init and constraint choices, :func:`out_widths`
``layers``       one block's pieces on arrays: :func:`fan_in`, ``avg_pool``,
                 :func:`effective_weight`, :func:`activation_fn`, :func:`crelu`,
                 :func:`layer_input`, :func:`block_output`
``network``      :class:`Model`, :func:`build`, :func:`init_params`, :func:`multipliers`,
                 :func:`layer_pre_activation`, :func:`block_map`, :func:`forward`,
                 :func:`block_inputs`
===============  ==========================================================================

GroupSort, LayerNorm and the Cayley map themselves are in :mod:`ntkplast.blocks` (re-exported
here). Everything is imported from ``ntkplast.models`` itself (``from ntkplast.models import
ArchSpec``).
"""

from ntkplast.blocks import LN_EPS, cayley_stiefel, group_sort, layer_norm
from ntkplast.models.layers import (
    activation_fn,
    avg_pool,  # noqa: F401 (public, though not in __all__)
    block_output,
    crelu,
    effective_weight,
    fan_in,
    layer_input,
)
from ntkplast.models.network import (
    Model,
    Params,
    block_inputs,
    block_map,
    build,
    forward,
    init_params,
    layer_pre_activation,
    multipliers,
)
from ntkplast.models.spec import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    GROUP_ACTIVATIONS,
    INITS,
    KINDS,
    PARAMETERIZATIONS,
    WEIGHT_CONSTRAINTS,
    WIDENING_ACTIVATIONS,
    ArchSpec,
    Layer,
    out_widths,
)

__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "GROUP_ACTIVATIONS", "INITS", "KINDS", "LN_EPS",
           "PARAMETERIZATIONS", "WEIGHT_CONSTRAINTS", "WIDENING_ACTIVATIONS", "ArchSpec", "Layer",
           "Model", "Params", "activation_fn", "block_inputs", "block_map", "block_output",
           "build", "cayley_stiefel", "crelu", "effective_weight", "fan_in", "forward",
           "group_sort", "init_params", "layer_input", "layer_norm", "layer_pre_activation",
           "multipliers", "out_widths"]
