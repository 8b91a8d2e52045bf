"""Run configuration: the settings a run is reproducible from, TOML files and overrides.

:class:`TrainConfig` (optimisation) and :class:`RunConfig` (seed, model, stream, training,
method) are plain frozen dataclasses; this module reads them from TOML and ``--set`` overrides.

A config file has a top-level ``seed`` and four tables, each optional (defaults fill gaps)::

    seed = 0
    [model]    # ntkplast.models.ArchSpec fields
    kind = "mlp"
    widths = [100, 100, 100]
    [stream]   # ntkplast.data.streams.StreamSpec fields
    kind = "permuted"
    dataset = "digits"
    num_tasks = 20
    [train]    # ntkplast.training.TrainConfig fields
    optimizer = "adam"
    learning_rate = 1e-3
    steps_per_task = 500
    [method]   # a regularizer or reset method (ntkplast.regularizers.make_hooks); optional
    name = "adamo"
    lam = 1e-3

Overrides use dotted keys with TOML values: ``--set train.learning_rate=3e-4``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkplast import models
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.io import safe_read
from ntkplast.plain import from_plain

__all__ = ["LOSSES", "MEASURES", "OPTIMIZERS", "SECTIONS", "RunConfig", "TrainConfig",
           "apply_overrides", "config_from_dict", "config_seed", "load_config",
           "method_from_dict", "previous_tasks", "read_toml", "reference_task_set",
           "resolve_measure"]

OPTIMIZERS = ("sgd", "momentum", "adam")
MEASURES = ("auto", "online", "train", "test")
LOSSES = ("cross_entropy", "mse")  # the keys of ntkplast.training.step.OBJECTIVES
SECTIONS = ("model", "stream", "train", "method")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
      optimizer: ``"sgd"``, ``"momentum"`` (heavy ball) or ``"adam"`` (optax).
      learning_rate: step size η.
      momentum: β for ``"momentum"``; Adam uses optax's defaults (β1 = 0.9, β2 = 0.999).
      batch_size: minibatch size B.
      steps_per_task: training steps per task (set this or ``epochs_per_task``; 500 when
        neither is given and the protocol is not online).
      epochs_per_task: passes over the task's training set, converted to
        ⌈epochs · N_train / B⌉ steps.
      checkpoint_every: also checkpoint every this many steps inside a task (0: only at task
        boundaries and at initialisation).
      reference_tasks: which tasks get a reset-reference run: ``"all"``, ``"none"``, a list of
        task indices, or ``"every:k"`` (tasks 0, k, 2k, …).
      eval_previous: evaluate every earlier task after each task (the accuracy matrix
        ``<m>_on_tasks``): row t costs t + 1 test passes, so a stream of T tasks costs
        T(T + 1)/2 of them.
      eval_previous_every: compute that row only at the end of every k-th task (tasks k − 1,
        2k − 1, …) and of the last one, which divides the T(T + 1)/2 passes by about k; 1 = every
        task.
      eval_previous_max: evaluate at most this many tasks per row, spread evenly over 0 … t
        (:func:`previous_tasks`; the first and the current task always among them, the others
        None), so a stream costs at most T·m passes instead of T(T + 1)/2; 0 = every task.
      loss: ``"cross_entropy"`` (classification; the run records accuracies) or ``"mse"``
        (regression on float targets; the run records mean squared errors): :data:`LOSSES`,
        the objectives of :data:`ntkplast.training.step.OBJECTIVES`.
      online: the online protocol: each task's training set is visited once, in the order the
        stream gives it, minibatch k = examples kB … (k+1)B − 1 (⌊N/B⌋ steps; the last N mod B
        examples are not trained on); batch size 1 is allowed. Leave ``steps_per_task`` and
        ``epochs_per_task`` unset.
      plasticity_measure: which per-task measure ``plasticity_loss`` compares with the reset
        references: ``"online"`` (mean score over the task's examples, each before the step
        that trains on it; Dohare et al. 2024), ``"train"`` (score on the task's training set at
        its end: memorisation, Lyle et al. 2023 and Kumar et al. 2023), ``"test"`` (on its test
        set), or ``"auto"``: training for random labels, online for the online protocol and for
        tasks without a test set, test otherwise (:func:`resolve_measure`).
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 32
    steps_per_task: int | None = None
    epochs_per_task: float | None = None
    checkpoint_every: int = 0
    reference_tasks: str | list[int] = "none"
    eval_previous: bool = True
    eval_previous_every: int = 1
    eval_previous_max: int = 0
    loss: str = "cross_entropy"
    online: bool = False
    plasticity_measure: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise NtkplastError(f"train.optimizer: unknown {self.optimizer!r}; "
                                f"choose one of {list(OPTIMIZERS)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise NtkplastError(f"train.learning_rate must be a positive number, "
                                f"got {self.learning_rate}")
        if self.batch_size < 1:
            raise NtkplastError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.online and (self.steps_per_task is not None
                            or self.epochs_per_task is not None):
            raise NtkplastError("train.online: an online task takes one pass over its examples; "
                                "remove steps_per_task / epochs_per_task")
        if (self.steps_per_task is None and self.epochs_per_task is None
                and not self.online):
            object.__setattr__(self, "steps_per_task", 500)
        if self.steps_per_task is not None and self.epochs_per_task is not None:
            raise NtkplastError("train: give steps_per_task or epochs_per_task, not both")
        if self.steps_per_task is not None and self.steps_per_task < 1:
            raise NtkplastError(f"train.steps_per_task must be >= 1, got {self.steps_per_task}")
        if self.epochs_per_task is not None and not self.epochs_per_task > 0:
            raise NtkplastError(f"train.epochs_per_task must be > 0, got {self.epochs_per_task}")
        if self.eval_previous_every < 1:
            raise NtkplastError(f"train.eval_previous_every must be >= 1, got "
                                f"{self.eval_previous_every}")
        if self.eval_previous_max < 0 or self.eval_previous_max == 1:
            raise NtkplastError(f"train.eval_previous_max must be 0 (every task) or >= 2 (the "
                                f"first and the current task at least), got "
                                f"{self.eval_previous_max}")
        if self.checkpoint_every < 0:
            raise NtkplastError("train.checkpoint_every must be >= 0 (0 = task boundaries only)")
        reference_task_set(self.reference_tasks, 1)  # validates the form
        if self.plasticity_measure not in MEASURES:
            raise NtkplastError(f"train.plasticity_measure: unknown {self.plasticity_measure!r}; "
                                f"choose one of {list(MEASURES)}")
        if self.loss not in LOSSES:
            raise NtkplastError(f"train.loss: unknown {self.loss!r}; choose one of "
                                f"{list(LOSSES)}")

    def steps_for(self, num_train: int) -> int:
        """Training steps per task for a task with ``num_train`` training examples (a
        minibatch larger than the task is refused)."""
        if self.online:
            if num_train < self.batch_size:
                raise NtkplastError(f"train.online: a task of {num_train} examples holds no "
                                    f"minibatch of train.batch_size = {self.batch_size}")
            return num_train // self.batch_size
        if self.batch_size > num_train:
            raise NtkplastError(f"train.batch_size = {self.batch_size} is larger than the task's "
                                f"{num_train} training examples; use at most {num_train}")
        if self.steps_per_task is not None:
            return self.steps_per_task
        return math.ceil(self.epochs_per_task * num_train / self.batch_size)


def reference_task_set(value: str | Sequence[int], num_tasks: int) -> Container[int]:
    """Resolve ``TrainConfig.reference_tasks`` to the task indices that get a reset reference.

    ``"all"`` and ``"every:k"`` give a ``range`` (membership in constant time and memory, so a
    stream of 10⁹ tasks costs nothing here), a list the set of its indices below
    ``num_tasks``."""
    if isinstance(value, str):
        if value == "all":
            return range(num_tasks)
        if value == "none":
            return frozenset()
        k = value[6:]
        if value.startswith("every:") and k.isascii() and k.isdigit() and 0 < int(k[:19]):
            return range(0, num_tasks, int(k[:19]))
    elif all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        return frozenset(t for t in value if t < num_tasks)
    raise NtkplastError(f"train.reference_tasks must be 'all', 'none', 'every:k' or a list of "
                        f"task indices, got {value!r}")


# TrainConfig fields added after format v1 shipped: left out of the manifest at their default
# value, so runs written before them still resume (their stored config compares equal).
_ADDED_TRAIN_FIELDS = {"loss": "cross_entropy", "online": False, "plasticity_measure": "auto",
                       "eval_previous_every": 1, "eval_previous_max": 0}


def previous_tasks(task: int, most: int) -> list[int]:
    """The tasks 0 … ``task`` that a row of the accuracy matrix evaluates: all of them when
    ``most`` is 0 or at least task + 1, else ``most`` of them evenly spaced,
    round(i·task/(most − 1)) for i = 0 … most − 1 (0 and ``task`` included, no repeats)."""
    if most == 0 or most > task:
        return list(range(task + 1))
    return sorted({round(i * task / (most - 1)) for i in range(most)})


def resolve_measure(measure: str, stream_kind: str | None, online: bool, has_test: bool) -> str:
    """The measure ``"online"``, ``"train"`` or ``"test"`` that ``train.plasticity_measure``
    names for a task (``"auto"``: module docs of :class:`TrainConfig`); ``stream_kind`` is the
    built-in stream's kind, None for a custom stream."""
    if measure != "auto":
        if measure == "test" and not has_test:
            raise NtkplastError("train.plasticity_measure = 'test', but the task has no test "
                                "set; use 'online' or 'train'")
        return measure
    if stream_kind == "random_labels":
        return "train"
    return "online" if online or not has_test else "test"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run is reproducible from: seed, model, stream, training settings, method.

    ``method`` is plain data naming a regularizer or reset method and its options
    (``{"name": "adamo", "lam": 1e-3}``; :func:`ntkplast.regularizers.make_hooks`); empty for
    plain training.
    """

    seed: int = 0
    model: models.ArchSpec = dataclasses.field(default_factory=models.ArchSpec)
    stream: streams.StreamSpec = dataclasses.field(default_factory=streams.StreamSpec)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    method: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as stored in the manifest (``method`` only when one is set, newer
        training fields only when they differ from their default)."""
        train = dataclasses.asdict(self.train)
        for key, default in _ADDED_TRAIN_FIELDS.items():  # absent from older manifests
            if train[key] == default:
                del train[key]
        d = {"seed": self.seed, "model": self.model.to_dict(),
             "stream": self.stream.to_dict(), "train": train}
        if self.method:
            d["method"] = dict(self.method)
        return d


def config_seed(d: Mapping[str, Any], sections: Sequence[str], where: str,
                what: str = "a config") -> int:
    """The seed of plain config data whose other keys must be ``sections`` (``what`` names the
    kind of config in the error); unknown keys or a seed that is not an integer >= 0 raise
    :class:`NtkplastError` naming ``where``."""
    unknown = sorted(set(d) - {"seed", *sections})
    if unknown:
        raise NtkplastError(f"{where}: unknown key(s) {unknown}; {what} has 'seed' and the "
                            f"tables {list(sections)}")
    seed = d.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise NtkplastError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return seed


def config_from_dict(d: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from plain data (as read from TOML or a manifest)."""
    return RunConfig(
        seed=config_seed(d, SECTIONS, where),
        model=models.ArchSpec.from_dict(d.get("model", {}), where=f"{where}: model"),
        stream=streams.StreamSpec.from_dict(d.get("stream", {}), where=f"{where}: stream"),
        train=from_plain(TrainConfig, d.get("train", {}), where=f"{where}: train"),
        method=method_from_dict(d.get("method", {}), where),
    )


def method_from_dict(method: Any, where: str) -> dict[str, Any]:
    """Validate the ``[method]`` table (names and option names; values when hooks are built)."""
    if not method:
        return {}
    from ntkplast.regularizers import check_method  # imports jax-heavy modules; only when used

    try:
        return check_method(method)
    except NtkplastError as e:
        raise NtkplastError(f"{where}: {e}") from None


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML file (a regular file, size and nesting bounded: :mod:`ntkplast.io.safe_read`);
    unreadable or malformed files raise :class:`NtkplastError`."""
    try:
        return safe_read.read_toml(path)
    except FileNotFoundError:
        raise NtkplastError(f"config file {path} does not exist; give the path of a .toml "
                            f"config (see configs/ for examples)") from None
    except NtkplastError as e:
        raise NtkplastError(f"config file {e}") from None


def apply_overrides(d: dict[str, Any], overrides: Sequence[str],
                    sections: Sequence[str] = SECTIONS) -> dict[str, Any]:
    """Return a copy of ``d`` with ``section.key=value`` overrides (values parsed as TOML);
    ``sections`` are the config's tables (default: a supervised run's, :data:`SECTIONS`)."""
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
        except (RecursionError, ValueError) as e:  # nested too deep, a 5,000-digit integer
            raise NtkplastError(f"--set {item[:60]!r}: cannot parse the value "
                                f"({type(e).__name__}); it nests too deep or is too large") \
                from None
        safe_read.check_limits(value, f"--set {key}")
        parts = key.split(".")
        if len(parts) == 1 and parts[0] in sections and not isinstance(value, Mapping):
            raise NtkplastError(f"--set {item[:60]!r}: [{parts[0]}] is a table; set one of its "
                                f"keys ({parts[0]}.<key>=value) or give a table ({parts[0]}="
                                f"{{key = value}})")
        if len(parts) == 1:
            out[parts[0]] = dict(value) if isinstance(value, Mapping) else value
        elif len(parts) == 2 and parts[0] in sections:
            section = out.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise NtkplastError(f"--set {item[:60]!r}: [{parts[0]}] in the config is not a "
                                    f"table (it is {section!r:.40}); fix the config file")
            section[parts[1]] = value
        else:
            raise NtkplastError(f"--set {item!r}: the key must be 'seed' or one of "
                                f"{[s + '.<key>' for s in sections]}")
    return out


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML config (or start from defaults when ``path`` is None) and apply overrides."""
    d = read_toml(path) if path is not None else {}
    where = str(Path(path)) if path is not None else "config"
    return config_from_dict(apply_overrides(d, overrides), where=where)
