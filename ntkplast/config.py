"""Run configuration files (TOML) and command-line overrides.

A config file has a top-level ``seed`` and four tables, each optional (defaults fill gaps)::

    seed = 0
    [model]    # ntkplast.models.ArchSpec fields
    kind = "mlp"
    widths = [100, 100, 100]
    [stream]   # ntkplast.streams.StreamSpec fields
    kind = "permuted"
    dataset = "digits"
    num_tasks = 20
    [train]    # ntkplast.train.TrainConfig fields
    optimizer = "adam"
    learning_rate = 1e-3
    steps_per_task = 500
    [method]   # a regularizer or reset method (ntkplast.regularizers.make_hooks); optional
    name = "adamo"
    lam = 1e-3

Overrides use dotted keys with TOML values: ``--set train.learning_rate=3e-4``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast import models, streams
from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain
from ntkplast.train import RunConfig, TrainConfig

SECTIONS = ("model", "stream", "train", "method")


def config_from_dict(d: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from plain data (as read from TOML or a manifest)."""
    unknown = sorted(set(d) - {"seed", *SECTIONS})
    if unknown:
        raise NtkplastError(f"{where}: unknown key(s) {unknown}; a config has 'seed' and the "
                            f"tables {list(SECTIONS)}")
    seed = d.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise NtkplastError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return RunConfig(
        seed=seed,
        model=models.ArchSpec.from_dict(d.get("model", {}), where=f"{where}: model"),
        stream=streams.StreamSpec.from_dict(d.get("stream", {}), where=f"{where}: stream"),
        train=from_plain(TrainConfig, d.get("train", {}), where=f"{where}: train"),
        method=_method(d.get("method", {}), where),
    )


def _method(method: Any, where: str) -> dict[str, Any]:
    """Validate the ``[method]`` table (names and option names; values when hooks are built)."""
    if not method:
        return {}
    from ntkplast.regularizers import check_method  # imports jax-heavy modules; only when used

    try:
        return check_method(method)
    except NtkplastError as e:
        raise NtkplastError(f"{where}: {e}") from None


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML file; unreadable or malformed files raise :class:`NtkplastError`."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise NtkplastError(f"config file {path} does not exist; give the path of a .toml "
                            f"config (see configs/ for examples)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NtkplastError(f"config file {path} cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise NtkplastError(f"config file {path} is not valid TOML: {e}") from None


def apply_overrides(d: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``d`` with ``section.key=value`` overrides (values parsed as TOML)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in d.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise NtkplastError(f"--set {item!r}: expected section.key=value, "
                                f"e.g. train.learning_rate=3e-4")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is taken as a string
        parts = key.split(".")
        if len(parts) == 1:
            out[parts[0]] = value
        elif len(parts) == 2 and parts[0] in SECTIONS:
            out.setdefault(parts[0], {})[parts[1]] = value
        else:
            raise NtkplastError(f"--set {item!r}: the key must be 'seed' or one of "
                                f"{[s + '.<key>' for s in SECTIONS]}")
    return out


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML config (or start from defaults when ``path`` is None) and apply overrides."""
    d = read_toml(path) if path is not None else {}
    where = str(Path(path)) if path is not None else "config"
    return config_from_dict(apply_overrides(d, overrides), where=where)


def demo_config(quick: bool = False, overrides: Sequence[str] = ()) -> RunConfig:
    """The ``ntkplast demo`` run: permuted digits, 20 tasks, a 3×100 ReLU MLP trained with Adam.

    Every task gets a checkpoint at its end and one halfway; tasks 0, 5, 10, 15 get a
    reset-reference run. ``quick`` shrinks the budget (for smoke tests), not the stream length.
    """
    d: dict[str, Any] = {
        "seed": 0,
        "model": {"kind": "mlp", "widths": [100, 100, 100], "activation": "relu"},
        "stream": {"kind": "permuted", "dataset": "digits", "num_tasks": 20},
        "train": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32,
                  "steps_per_task": 20 if quick else 1000,
                  "checkpoint_every": 10 if quick else 500,
                  "reference_tasks": "every:5"},
    }
    return config_from_dict(apply_overrides(d, overrides), where="demo config")
