"""Build frozen dataclasses from plain data (TOML/JSON), checking keys and types.

One checker serves every config section, so an unknown key or a wrong type reads the same way
wherever it occurs: ``model.widths: expected a list of int, got 'abc'``. A float field takes a
finite number only (NaN and ±Inf are refused).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from ntkplast.errors import NtkplastError

T = TypeVar("T")


def _matches(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the type ``hint``; returns (ok, value converted to the hint)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, v = _matches(value, arg)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:  # finite: NaN or Inf in a config is always a mistake
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            converted = float(value) if ok else math.nan
        except OverflowError:  # an integer beyond the float range
            converted = math.nan
        ok = ok and math.isfinite(converted)
        return ok, converted if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            return False, value
        out = []
        for item in value:
            ok, v = _matches(item, args[0])
            if not ok:
                return False, value
            out.append(v)
        return True, tuple(out) if origin is tuple else out
    if hint is Any:
        return True, value
    raise TypeError(f"unsupported annotation {hint!r}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if hint is float:
        return "a finite number"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def from_plain(cls: type[T], data: Any, where: str) -> T:
    """Instantiate the frozen dataclass ``cls`` from the mapping ``data``.

    Unknown keys and values of the wrong type raise :class:`~ntkplast.errors.NtkplastError`
    naming ``where.key``; missing keys take the dataclass defaults; the class's own
    ``__post_init__`` checks ranges.
    """
    if not isinstance(data, Mapping):
        raise NtkplastError(f"{where}: expected a table of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise NtkplastError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        ok, converted = _matches(value, hints[key])
        if not ok:
            raise NtkplastError(f"{where}.{key}: expected {_describe(hints[key])}, "
                                f"got {value!r}")
        kwargs[key] = converted
    return cls(**kwargs)
