"""The configuration of a continual-RL run: environment stream, actor, critic, PPO, budget, method.

A TOML config is an RL config when it has an ``[env]`` table (``ntkplast train`` then trains an
agent)::

    seed = 0
    [env]            # ntkplast.rl.envs.EnvStreamSpec: kind, games, num_tasks, seed
    kind = "permuted_observations"
    games = ["Breakout-MinAtar"]
    num_tasks = 6
    [actor]          # ntkplast.models.ArchSpec; num_outputs is the stream's number of actions
    widths = [256, 256]
    [critic]         # ntkplast.models.ArchSpec; num_outputs is 1
    widths = [256, 256]
    [ppo]            # ntkplast.rl.ppo.PPOConfig
    learning_rate = 5e-4
    [train]          # RLTrainConfig: the budget per task, references, probe states
    steps_per_task = 262144
    [method]         # as for supervised runs: l2, isometry, adamo, redo, cbp, shrink_perturb …
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ntkplast import models
from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain
from ntkplast.rl.envs import EnvStream, EnvStreamSpec, make_env_stream
from ntkplast.rl.ppo import PPOConfig
from ntkplast.training.config import config_seed, method_from_dict, reference_task_set

__all__ = ["SECTIONS", "AgentConfig", "RLTrainConfig", "agent_config_from_dict"]

SECTIONS = ("env", "actor", "critic", "ppo", "train", "method")
_DEFAULT_NET = {"widths": [256, 256]}


@dataclasses.dataclass(frozen=True)
class RLTrainConfig:
    """The budget and bookkeeping of a continual-RL run.

    Attributes:
      steps_per_task: environment steps per task, rounded down to whole PPO updates of
        ``ppo.num_envs × ppo.num_steps`` steps (at least one update).
      updates_per_chunk: updates per compiled call (progress is reported per chunk).
      reference_tasks: which tasks also train a fresh agent with the same budget, for the
        plasticity measure: ``"all"``, ``"none"``, ``"every:k"`` or a list of task indices.
      final_fraction: a task's *final return* is the mean return of the episodes that end in its
        last ``final_fraction`` of updates (its *online return*: of all its episodes).
      probe_states: observations visited in each task's last rollout that are saved with the run
        (``probe_states.npz``), the states ``ntkplast analyze`` measures the networks on.
    """

    steps_per_task: int = 262_144
    updates_per_chunk: int = 8
    reference_tasks: str | list[int] = "none"
    final_fraction: float = 0.25
    probe_states: int = 32

    def __post_init__(self):
        for name in ("steps_per_task", "updates_per_chunk", "probe_states"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise NtkplastError(f"train.{name}: expected an integer >= 1, got {v!r}")
        if not 0 < self.final_fraction <= 1:
            raise NtkplastError(f"train.final_fraction: expected a number in (0, 1], got "
                                f"{self.final_fraction!r}")
        if isinstance(self.reference_tasks, list):
            object.__setattr__(self, "reference_tasks", list(self.reference_tasks))
        reference_task_set(self.reference_tasks, 1)  # validates the form


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Everything an RL run is reproducible from (module docstring for the TOML form)."""

    seed: int = 0
    env: EnvStreamSpec = dataclasses.field(default_factory=EnvStreamSpec)
    actor: models.ArchSpec = dataclasses.field(
        default_factory=lambda: models.ArchSpec(widths=(256, 256), num_outputs=3))
    critic: models.ArchSpec = dataclasses.field(
        default_factory=lambda: models.ArchSpec(widths=(256, 256), num_outputs=1))
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    train: RLTrainConfig = dataclasses.field(default_factory=RLTrainConfig)
    method: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def updates_per_task(self) -> int:
        """Whole PPO updates per task (at least one)."""
        return max(1, self.train.steps_per_task // self.ppo.steps_per_update)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as stored in the run's manifests."""
        d = {"seed": self.seed, "env": self.env.to_dict(), "actor": self.actor.to_dict(),
             "critic": self.critic.to_dict(), "ppo": self.ppo.to_dict(),
             "train": dataclasses.asdict(self.train)}
        if self.method:
            d["method"] = dict(self.method)
        return d


def _net(d: Any, outputs: int, name: str, where: str) -> models.ArchSpec:
    if not isinstance(d, Mapping):
        raise NtkplastError(f"{where}: [{name}] must be a table of model settings")
    given = d.get("num_outputs", outputs)
    if given != outputs:
        raise NtkplastError(f"{where}: {name}.num_outputs = {given!r}, but the {name} has "
                            f"{outputs} output(s) here; leave num_outputs out")
    return models.ArchSpec.from_dict({**_DEFAULT_NET, **d, "num_outputs": outputs},
                                     where=f"{where}: {name}")


def agent_config_from_dict(d: Mapping[str, Any], where: str = "config"
                           ) -> tuple[AgentConfig, EnvStream]:
    """Build an :class:`AgentConfig` (and its environment stream) from plain data."""
    seed = config_seed(d, SECTIONS, where, what="an RL config")
    env = d.get("env", {})
    spec = env if isinstance(env, EnvStreamSpec) else EnvStreamSpec.from_dict(
        env, where=f"{where}: env")
    stream = make_env_stream(spec)
    cfg = AgentConfig(
        seed=seed, env=spec,
        actor=_net(d.get("actor", {}), stream.num_actions, "actor", where),
        critic=_net(d.get("critic", {}), 1, "critic", where),
        ppo=from_plain(PPOConfig, d.get("ppo", {}), where=f"{where}: ppo"),
        train=from_plain(RLTrainConfig, d.get("train", {}), where=f"{where}: train"),
        method=method_from_dict(d.get("method", {}), where))
    return cfg, stream
