"""The public API's conventions (``ntkplast`` package docstring): every array argument of a
diagnostic has its shape written in the docstring, and PRNG keys are keyword-only."""

import importlib
import inspect
import pkgutil
import re

import jax
import pytest

import ntkplast

DIAGNOSTICS = ("ntkplast.ntk", "ntkplast.spectra", "ntkplast.isometry", "ntkplast.dormancy",
               "ntkplast.ranks", "ntkplast.linalg", "ntkplast.curvature", "ntkplast.gradients")
SHAPE = re.compile(r"×|``\(|\bscalar\b|\bany shape\b")
KEY_NAMES = ("key", "rng_key", "prng_key")
# a model's init(key, input_shape), in stax's init_fn(rng, input_shape) order
STAX_INIT = {"ntkplast.models.init_params", "ntkplast.models.network.init_params"}


def _public_functions(module_names):
    for name in module_names:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            fn = getattr(module, attr)
            if inspect.isfunction(fn):
                yield f"{name}.{attr}", fn


def _array_params(fn):
    return [p.name for p in inspect.signature(fn).parameters.values()
            if "Array" in str(p.annotation) and "Callable" not in str(p.annotation)
            and p.name not in KEY_NAMES]


@pytest.mark.parametrize("module", DIAGNOSTICS)
def test_array_arguments_have_their_shape_documented(module):
    missing = []
    for name, fn in _public_functions([module]):
        if name.endswith("_unchecked"):  # documented as its checked twin
            continue
        prose = (inspect.getdoc(fn) or "").split("Examples:")[0]
        if _array_params(fn) and not SHAPE.search(prose):
            missing.append(name)
    assert missing == []


def test_the_shape_check_can_fail():
    def undocumented(x: jax.Array) -> jax.Array:
        """Does something to x."""

    def documented(x: jax.Array) -> jax.Array:
        """``x``: ``(N, d)``."""

    assert _array_params(undocumented) == ["x"]
    assert not SHAPE.search(undocumented.__doc__) and SHAPE.search(documented.__doc__)


def test_prng_keys_are_keyword_only():
    modules = [m.name for m in pkgutil.walk_packages(ntkplast.__path__, "ntkplast.")
               if not any(part.startswith("_") for part in m.name.split("."))]
    positional = [name for name, fn in _public_functions(modules) if name not in STAX_INIT
                  for p in inspect.signature(fn).parameters.values()
                  if p.name in KEY_NAMES and p.kind is not p.KEYWORD_ONLY]
    assert positional == []
