"""PyTorch state dicts of MLPs, residual MLPs and small CNNs as ntkplast ``(ArchSpec, params)``.

A PyTorch ``nn.Linear`` stores ``weight`` as ``out × in`` and computes ``y = x Wᵀ + b``; an
``nn.Conv2d`` stores ``weight`` as ``O × I × kh × kw`` (OIHW) on NCHW images. ntkplast computes
``z = a W + b`` with ``W`` as ``in × out`` (Dense) or ``kh × kw × I × O`` (HWIO, NHWC images), so

* Linear: ``W = weightᵀ``;
* Conv2d: ``W = weight.transpose(2, 3, 1, 0)``;
* the first Linear after the convolutions (or the first Linear of an MLP fed images): PyTorch
  flattens ``C × H × W`` while ntkplast flattens ``H × W × C``, so its input rows are permuted
  from ``(c, h, w)`` to ``(h, w, c)`` order (``input_layout="chw"``, the PyTorch default).

Supported networks are the ones :func:`ntkplast.models.build` describes, with standard
parameterization (PyTorch's): an MLP ``Linear → φ → … → Linear``, or a CNN whose blocks are
``Conv2d(k, stride=1, padding=k // 2) → φ → AvgPool2d(2)`` (odd square k, equal in every block)
followed by ``Flatten → Linear → φ → … → Linear``. With a ``spec`` that says so, also
``nn.LayerNorm`` (eps 1e-5, over the units; its 1-D ``weight``/``bias`` become the layer's
``ln_scale``/``ln_bias``, the k-th norm module going to the k-th layer that has one, in
``key_order`` when it lists the norms, else in the natural order of their names), residual
blocks ``u + φ(LN(Linear(u)))`` or pre-norm ``u + φ(Linear(LN(u)))`` written as named modules
(a skip has no parameters: ``residual = true`` says where they are), and GroupSort/MaxMin
modules (no parameters; ``activation`` and ``group_size`` in the spec, each group sorted in
descending order, so MaxMin gives (max, min)), and CReLU (``activation = "crelu"``:
``torch.cat([relu(z), relu(-z)], dim=1)``, so every layer after a hidden one has twice its
fan-in, which the shapes must chain with). Modules may be an ``nn.Sequential``
(keys ``"0.weight"``, ``"2.weight"``, …) or named (``"fc1.weight"``, ``"conv.weight"``, …).

The architecture is inferred from the shapes where that is unambiguous: 4-D weights are
convolutions and come first, 2-D weights are dense layers; the layer order is the natural order
of the module names when every name carries a number (``"0"``, ``"10"``, ``"fc2"``), otherwise
the only order in which the shapes chain. Where neither decides, pass ``key_order`` (module names
in forward order) and/or ``spec`` (an :class:`~ntkplast.models.ArchSpec` or its dict; it also sets
the activation, which a state dict does not record).

Pure conversion of arrays in memory, no files: :mod:`ntkplast.runs.interop` reads the files
(without running code) and writes run folders; :mod:`ntkplast.convert.pytrees` maps JAX
pytrees onto state dicts first.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ntkplast import models, validate
from ntkplast.errors import NtkplastError

__all__ = ["INPUT_LAYOUTS", "state_dict_to_params"]

INPUT_LAYOUTS = ("chw", "hwc")


def _natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders the numbers in a name by value: ``"net.2"`` before ``"net.10"``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _group_modules(state_dict: Mapping[str, Any], source: str
                   ) -> dict[str, dict[str, np.ndarray]]:
    """``{module name: {"weight": …, "bias": …}}``; anything else is named in an error."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):  # nn.DataParallel wrapper
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        mod, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias"):
            raise NtkplastError(f"{source}: unsupported entry {key!r} (a {leaf!r} buffer or "
                                f"parameter: only Linear, Conv2d and LayerNorm layers, with the "
                                f"activations ntkplast builds, are supported; no BatchNorm)")
        arr = np.asarray(value)
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)):
            raise NtkplastError(f"{source}: {key!r} must hold finite floats (dtype {arr.dtype})")
        modules.setdefault(mod, {})[leaf] = arr.astype(np.promote_types(arr.dtype, np.float32))
    if not modules:
        raise NtkplastError(f"{source}: the state dict is empty")
    for mod, p in modules.items():
        w = p.get("weight")
        name = f"{mod}.weight" if mod else "weight"
        if w is None:
            raise NtkplastError(f"{source}: module {mod!r} has a bias but no weight")
        if w.ndim not in (1, 2, 4):
            kind = {3: "a Conv1d", 5: "a Conv3d"}.get(w.ndim, "an unknown layer")
            raise NtkplastError(f"{source}: {name!r} has shape {w.shape}, which looks like "
                                f"{kind}; only Linear (2-D), Conv2d (4-D) and LayerNorm "
                                f"(1-D) are supported")
        if "bias" in p and p["bias"].shape != (w.shape[0],):
            raise NtkplastError(f"{source}: {mod}.bias has shape {p['bias'].shape}, expected "
                                f"({w.shape[0]},) to match {name!r} {w.shape}")
    return modules


def _chains(mods: Sequence[str], modules: Mapping[str, Mapping[str, np.ndarray]],
            widen: int = 1) -> bool:
    """Whether the modules, in this order, fit one network: convs first, channels chain
    (each hidden layer's outputs times ``widen``: 2 for CReLU, which concatenates two halves)."""
    shapes = [modules[m]["weight"].shape for m in mods]
    if any(len(a) == 2 and len(b) == 4 for a, b in zip(shapes, shapes[1:])):
        return False
    for a, b in zip(shapes, shapes[1:]):
        if len(a) == len(b) and b[1] != widen * a[0]:
            return False
        if len(a) == 4 and len(b) == 2 and b[1] % (widen * a[0]):
            return False
    return True


def _order(modules: Mapping[str, Mapping[str, np.ndarray]], key_order: Sequence[str] | None,
           source: str, widen: int = 1) -> list[str]:
    """Forward order of the modules (module docstring)."""
    names = list(modules)
    if key_order is not None:
        order = [k[: -len(".weight")] if k.endswith(".weight") else k for k in key_order]
        if sorted(order) != sorted(names):
            raise NtkplastError(f"{source}: key_order {list(key_order)} must list every module "
                                f"exactly once; the state dict has modules {names}")
        if not _chains(order, modules, widen):
            raise NtkplastError(f"{source}: the shapes do not chain in key_order {order}: "
                                f"{_shapes(order, modules)}")
        return order
    natural = sorted(names, key=lambda m: (modules[m]["weight"].ndim != 4, _natural_key(m)))
    if all(re.search(r"\d", m) for m in names) and _chains(natural, modules, widen):
        return natural
    found = []
    if len(names) <= 8:
        for perm in itertools.permutations(names):
            if _chains(perm, modules, widen):
                found.append(list(perm))
                if len(found) > 1:
                    break
    if len(found) == 1:
        return found[0]
    why = "several layer orders fit the shapes" if found else "no layer order fits the shapes"
    raise NtkplastError(f"{source}: cannot infer the architecture ({why}: "
                        f"{_shapes(names, modules)}); pass key_order (module names in forward "
                        f"order; CLI --key-order)")


def _shapes(order: Sequence[str], modules: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """The modules' weight shapes in ``order``, for error messages."""
    return ", ".join(f"{m}.weight {tuple(modules[m]['weight'].shape)}" for m in order)


def _permute_chw_rows(w: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Rows of an ``(C·H·W) × out`` matrix from PyTorch's (c, h, w) order to (h, w, c)."""
    c, h, wd = chw
    return w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(c * h * wd, -1)


def state_dict_to_params(state_dict: Mapping[str, Any],
                         spec: models.ArchSpec | Mapping[str, Any] | None = None,
                         key_order: Sequence[str] | None = None, *,
                         input_shape: Sequence[int] | None = None, input_layout: str = "chw",
                         activation: str = "relu", source: str = "state dict"
                         ) -> tuple[models.ArchSpec, models.Params]:
    """Convert a PyTorch state dict to an ntkplast ``(ArchSpec, params)`` (module docstring).

    Args:
      state_dict: ``{name: array}`` as ``model.state_dict()`` names it (numpy arrays or
        anything ``np.asarray`` takes).
      spec: the architecture, when the shapes do not say it all (activation, CNN kernel
        layout); ``None`` infers it. Its ``parameterization`` may be ``"ntk"``: the weights are
        then divided by the ntk multipliers, so the network computes the same function.
      key_order: module names (or ``"<module>.weight"`` keys) in forward order; ``None`` infers.
      input_shape: per-example input shape in ntkplast's layout (``[D]`` or ``[H, W, C]``).
        Needed for a CNN; an MLP defaults to ``[d_in]``.
      input_layout: ``"chw"`` if the PyTorch model flattened NCHW images (its default), so
        the rows of the first Linear after image inputs or convs are permuted; ``"hwc"`` if it
        was fed channels-last data.
      activation: φ of the inferred spec (a state dict does not record it); ignored with spec.
      source: how to name the input in error messages (e.g. its file path).

    Returns:
      ``(spec, params)``: ``models.build(spec).apply(params, x_nhwc)`` equals the PyTorch
      model on ``x_nchw``.

    Raises:
      NtkplastError: unknown layer types or buffers (named), shapes that chain into no
        supported network or do not match ``spec``, an ambiguous layer order.
    """
    if input_layout not in INPUT_LAYOUTS:
        raise NtkplastError(f"input_layout: unknown {input_layout!r}; choose one of "
                            f"{list(INPUT_LAYOUTS)}")
    modules = _group_modules(state_dict, source)
    norms = {m: p for m, p in modules.items() if p["weight"].ndim == 1}
    modules = {m: p for m, p in modules.items() if m not in norms}
    norm_order = sorted(norms, key=_natural_key)
    if key_order is not None:
        listed = [k.removesuffix(".weight") for k in key_order]
        norm_order = [m for m in listed if m in norms] or norm_order
        key_order = [k for k, m in zip(key_order, listed) if m not in norms]
    named = activation if spec is None else (
        spec.activation if isinstance(spec, models.ArchSpec) else spec.get("activation", "relu"))
    widen = 2 if named in models.WIDENING_ACTIVATIONS else 1  # CReLU: cat([relu, relu(−·)])
    order = _order(modules, key_order, source, widen)
    spec = _architecture(modules, order, spec, activation, source)
    num_convs = sum(modules[m]["weight"].ndim == 4 for m in order)
    if input_shape is None:
        if num_convs:
            raise NtkplastError(f"{source}: a CNN needs input_shape (H, W, C), e.g. "
                                f"--input-shape 28,28,1")
        input_shape = (modules[order[0]]["weight"].shape[1],)
    input_shape = tuple(int(s) for s in input_shape)
    model = models.build(spec)
    try:
        want = validate.expected_param_shapes(model, input_shape)
    except NtkplastError as e:
        raise NtkplastError(f"{source}: {e}") from None
    params = _ntkplast_layout(modules, order, input_shape, input_layout, widen)
    _attach_norms(params, model, {m: norms[m] for m in norm_order}, source)
    _check_layer_shapes(validate.param_shapes(params), want, num_convs, spec, input_shape,
                        source)
    if spec.parameterization == "ntk":
        params = _to_ntk_parameterization(model, params, source)
    return spec, tuple({k: jnp.asarray(v) for k, v in p.items()} for p in params)


def _architecture(modules: Mapping[str, Mapping[str, np.ndarray]], order: Sequence[str],
                  spec: models.ArchSpec | Mapping[str, Any] | None, activation: str,
                  source: str) -> models.ArchSpec:
    """``spec`` as an :class:`~ntkplast.models.ArchSpec`, or the one the shapes describe."""
    weights = [modules[m]["weight"] for m in order]
    has_bias = {"bias" in modules[m] for m in order}
    if len(has_bias) > 1:
        raise NtkplastError(f"{source}: some layers have biases and some do not "
                            f"({[m for m in order if 'bias' not in modules[m]]} lack one); "
                            f"ntkplast models use biases in every layer or none")
    convs = [w for w in weights if w.ndim == 4]
    dense = [w for w in weights if w.ndim == 2]
    if not dense:
        raise NtkplastError(f"{source}: no Linear layer; ntkplast models end in a Linear "
                            f"readout ({_shapes(order, modules)})")
    kernel = 3
    if convs:
        ks = {w.shape[2:] for w in convs}
        kernel = convs[0].shape[2]
        if len(ks) > 1 or kernel != convs[0].shape[3] or kernel % 2 == 0:
            raise NtkplastError(f"{source}: convolution kernels {sorted(ks)}; ntkplast CNNs "
                                f"use one odd square kernel size in every block")
    if spec is None:
        return models.ArchSpec(
            kind="cnn" if convs else "mlp", activation=activation,
            widths=tuple(w.shape[0] for w in (convs or dense[:-1])),
            dense_widths=tuple(w.shape[0] for w in dense[:-1]) if convs else (),
            num_outputs=dense[-1].shape[0], use_bias=has_bias == {True}, kernel_size=kernel)
    if not isinstance(spec, models.ArchSpec):
        return models.ArchSpec.from_dict(spec)
    return spec


def _ntkplast_layout(modules: Mapping[str, Mapping[str, np.ndarray]], order: Sequence[str],
                     input_shape: tuple[int, ...], input_layout: str, widen: int = 1
                     ) -> list[dict[str, np.ndarray]]:
    """The layers in ntkplast's layout: Linear ``W = weightᵀ``, Conv2d OIHW → HWIO, and the
    rows of the first Linear after images or convs from (c, h, w) to (h, w, c) for ``"chw"``
    (a conv block emits ``widen`` × its channels)."""
    params = []
    shape = input_shape
    for m in order:
        w = modules[m]["weight"]
        if w.ndim == 4:
            w_new = w.transpose(2, 3, 1, 0)
            shape = (shape[0] // 2, shape[1] // 2, widen * w.shape[0]) if len(shape) == 3 \
                else shape
        else:
            w_new = w.T
            if len(shape) == 3 and input_layout == "chw" and w_new.shape[0] == math.prod(shape):
                h, wd, c = shape
                w_new = _permute_chw_rows(w_new, (c, h, wd))
            shape = (w.shape[0],)
        p = {"W": w_new}
        if "bias" in modules[m]:
            p["b"] = modules[m]["bias"]
        params.append(p)
    return params


def _attach_norms(params: list[dict[str, np.ndarray]], model: models.Model,
                  norms: Mapping[str, Mapping[str, np.ndarray]], source: str) -> None:
    """Give the k-th LayerNorm module (``norms`` is in forward order) to the k-th layer that
    owns a norm: ``weight`` → ``ln_scale``, ``bias`` → ``ln_bias``."""
    owners = [i for i, layer in enumerate(model.layers) if layer.has_norm]
    if not model.spec.layer_norm_affine:
        owners = []
    names = list(norms)
    if len(names) != len(owners):
        raise NtkplastError(
            f"{source}: {len(names)} normalisation modules "
            f"({[f'{m}.weight' for m in names]}) for a spec whose "
            f"{len(owners)} affine LayerNorms need one each; describe the network with "
            f"spec (layer_norm, layer_norm_affine, pre_norm, residual), e.g. --spec spec.toml")
    for name, i in zip(names, owners):
        p = norms[name]
        if "bias" not in p:
            raise NtkplastError(f"{source}: {name} has a weight but no bias; ntkplast's "
                                f"affine LayerNorm has both (elementwise_affine=True)")
        params[i]["ln_scale"], params[i]["ln_bias"] = p["weight"], p["bias"]


def _check_layer_shapes(got: validate.Shapes, expected: validate.Shapes, num_convs: int,
                        spec: models.ArchSpec, input_shape: tuple[int, ...], source: str) -> None:
    """Raise, saying which layer and why, unless the converted shapes are the spec's."""
    if got == expected:
        return
    n = num_convs
    if n and len(got) == len(expected) and got[n]["W"] != expected[n]["W"]:
        raise NtkplastError(f"{source}: the first Linear after the convolutions takes "
                            f"{got[n]['W'][0]} features, but ntkplast's CNN (each block "
                            f"Conv2d(padding=k//2) → φ → AvgPool2d(2)) gives "
                            f"{expected[n]['W'][0]} on input_shape {list(input_shape)}; "
                            f"import a network with that layout, or fix input_shape")
    arch = {k: v for k, v in spec.to_dict().items()
            if k in ("kind", "widths", "dense_widths", "num_outputs", "use_bias")}
    raise NtkplastError(f"{source}: layer shapes (ntkplast layout) {list(got)} do not match "
                        f"the architecture {arch} on input_shape {list(input_shape)}, "
                        f"which needs {list(expected)}; pass the right spec/input_shape")


def _to_ntk_parameterization(model: models.Model, params: list[dict[str, np.ndarray]],
                             source: str) -> list[dict[str, np.ndarray]]:
    """Standard-parameterized weights divided by the ntk multipliers of ``model``
    (:func:`ntkplast.models.multipliers`), so the ntk network computes the same function."""
    out = []
    for i, (layer, p) in enumerate(zip(model.layers, params)):
        m_w, m_b = models.multipliers(model, layer, p["W"])
        q = {"W": p["W"] / m_w}
        if "b" in p:
            if m_b == 0 and np.any(p["b"]):
                raise NtkplastError(f"{source}: layer {i} has nonzero biases but the spec's "
                                    f"ntk parameterization has b_std=0; set b_std > 0 or use "
                                    f"parameterization='standard'")
            q["b"] = p["b"] / m_b if m_b else p["b"]
        out.append(q)
    return out
