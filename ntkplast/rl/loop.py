"""Continual reinforcement learning: one PPO agent trained task after task, written as a run.

The agent's folder::

    RUN_DIR/
      agent.json            {"format": "ntkplast-agent", "format_version": 1, "config": {…},
                             "networks": ["actor", "critic"], "complete": …}
      actor/, critic/       run folders (:mod:`ntkplast.runs.checkpoints`): the initial
                            checkpoint and one per task end, each with its optimizer state; the
                            manifests' ``tasks`` hold the returns (below)
      visited/task_<t>.npz  ``x``: observations the agent visited in task t's last rollout —
                            the states ``ntkplast analyze`` measures the networks on

Task t trains for ``updates_per_task`` PPO updates (:mod:`ntkplast.rl.ppo`) from the agent's
state at the end of task t − 1, with its environments reset at the task's start. Its record
holds the *online return* (mean return of every episode that ended in the task), the *final
return* (of the episodes that ended in its last ``final_fraction`` of updates) and, on
reference tasks, the final return of a fresh agent trained on task t alone with the same budget
and keys (``reference_final_return``; with a method also a fresh plain-PPO agent,
``baseline_final_return``): plasticity loss = reference − run (positive: the continual agent
learns the task worse than a fresh one), as for supervised runs (Dohare et al. 2024, "Loss of
plasticity in deep continual learning", Nature 632).

Everything is keyed by the seed, the task and the update index, and a task's checkpoints are
written only when it is done, so a killed run resumed with the same command (``--resume``)
retrains the unfinished task and ends with the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast import models
from ntkplast.base import Hooks
from ntkplast.errors import NtkplastError
from ntkplast.io.files import atomic_write_bytes, save_arrays
from ntkplast.io.lock import folder_lock
from ntkplast.io.safe_read import read_json
from ntkplast.rl.config import AgentConfig
from ntkplast.rl.envs import EnvStream
from ntkplast.rl.ppo import AgentState, Rollout, make_updater
from ntkplast.runs import checkpoints
from ntkplast.training.config import reference_task_set

__all__ = ["AGENT", "AGENT_FORMAT", "NETWORKS", "read_agent", "read_tasks", "train_agent"]

AGENT = "agent.json"
AGENT_FORMAT = "ntkplast-agent"
NETWORKS = ("actor", "critic")


def read_agent(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The validated ``agent.json`` of an RL run folder."""
    path = Path(run_dir) / AGENT
    try:
        doc = read_json(path, within=run_dir, finite=True)
    except FileNotFoundError:
        raise NtkplastError(f"{run_dir} is not an RL run folder: it has no {AGENT}") from None
    if not isinstance(doc, dict) or doc.get("format") != AGENT_FORMAT \
            or doc.get("format_version") != 1 or doc.get("networks") != list(NETWORKS):
        raise NtkplastError(f"{path}: not an ntkplast agent file (format {AGENT_FORMAT!r}, "
                            f"version 1, networks {list(NETWORKS)})")
    return doc


def read_tasks(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The task records of an agent (its actor's manifest holds them; module docstring)."""
    read_agent(run_dir)
    return checkpoints.read_manifest(Path(run_dir) / "actor").get("tasks", [])


class _Agent:
    """The two networks, their optimizers and the compiled updaters of one method."""

    def __init__(self, cfg: AgentConfig, stream: EnvStream, method: Mapping[str, Any]):
        self.models = (models.build(cfg.actor), models.build(cfg.critic))
        self.shape = stream.obs_shape
        if method:
            from ntkplast.regularizers import make_hooks

            self.hooks = tuple(make_hooks(method, m, self.shape, cfg.ppo.learning_rate)
                               for m in self.models)
        else:
            self.hooks = (Hooks(), Hooks())
        base = cfg.ppo.optimizer()
        self.txs = tuple(h.optimizer(base) if h.optimizer is not None else base
                         for h in self.hooks)
        self.cfg, self.stream, self._run = cfg, stream, {}

    def init(self, key: jax.Array) -> AgentState:
        actor, critic = (m.init(jax.random.fold_in(key, i), self.shape)
                         for i, m in enumerate(self.models))
        return AgentState(actor, critic, self.txs[0].init(actor), self.txs[1].init(critic),
                          jnp.asarray(0, jnp.int32))

    def updater(self, game: int) -> Callable[..., Any]:
        if game not in self._run:
            def step_env(key, state, action, task_arrays):
                return self.stream.step(game, key, state, action, task_arrays)
            self._run[game] = make_updater(*self.models, step_env, self.cfg.ppo, self.txs,
                                           self.hooks)
        return self._run[game]

    def train_task(self, agent: AgentState, t: int, key: jax.Array
                   ) -> tuple[AgentState, Rollout, np.ndarray, np.ndarray]:
        """Task t's updates from ``agent``; (agent, last rollout, per-update return sums,
        per-update episode counts)."""
        task = self.stream[t]
        arrays = (jnp.asarray(task.obs_perm), jnp.asarray(task.action_map))
        n = self.cfg.ppo.num_envs
        k_reset, k_updates = jax.random.split(key)
        reset = jax.vmap(lambda k: self.stream.reset(task.game, k, arrays))
        obs, env_state = reset(jax.random.split(k_reset, n))
        rollout = Rollout(env_state, obs, jnp.zeros(n))
        run, total = self.updater(task.game), self.cfg.updates_per_task
        sums, counts = [], []
        for a in range(0, total, self.cfg.train.updates_per_chunk):
            u = jnp.arange(a, min(total, a + self.cfg.train.updates_per_chunk))
            keys = jax.vmap(lambda i: jax.random.fold_in(k_updates, i))(u)
            agent, rollout, stats = run(agent, rollout, arrays, keys)
            sums.append(np.asarray(stats.return_sum, np.float64))
            counts.append(np.asarray(stats.episodes, np.int64))
        return agent, rollout, np.concatenate(sums), np.concatenate(counts)

    def final_return(self, sums: np.ndarray, counts: np.ndarray) -> float | None:
        last = max(1, math.ceil(self.cfg.train.final_fraction * len(sums)))
        return _mean_return(sums[-last:], counts[-last:])


def _mean_return(sums: np.ndarray, counts: np.ndarray) -> float | None:
    n = int(np.sum(counts))
    return float(np.sum(sums) / n) if n else None


def _keys(seed: int) -> tuple[jax.Array, ...]:
    """(init, task, reference, task-end) keys of a run."""
    return tuple(jax.random.split(jax.random.PRNGKey(seed), 4))


def _task_record(agent: _Agent, t: int, sums: np.ndarray, counts: np.ndarray,
                 references: Mapping[str, float | None]) -> dict[str, Any]:
    final = agent.final_return(sums, counts)
    record: dict[str, Any] = {
        "task": t, "game": agent.stream.games[agent.stream[t].game],
        "online_return": _mean_return(sums, counts), "final_return": final,
        "episodes": int(np.sum(counts)), "updates": len(sums),
        "env_steps": len(sums) * agent.cfg.ppo.steps_per_update,
        "plasticity_measure": "final_return", "plasticity_score": final}
    for name, value in references.items():
        record[f"{name}_final_return"] = value
        loss = None if value is None or final is None else value - final
        record["plasticity_loss" if name == "reference" else "plasticity_loss_baseline"] = loss
    if "reference" in references and "baseline" not in references:  # plain PPO: its own
        record["plasticity_loss_baseline"] = record["plasticity_loss"]  # reference is the base
    return record


def _new_manifests(cfg: AgentConfig, stream: EnvStream) -> dict[str, dict[str, Any]]:
    return {net: checkpoints.new_manifest(
        spec, stream.obs_shape, about={"num_classes": None, "num_tasks": len(stream),
                                       "config": cfg.to_dict(), "network": net}, tasks=True)
            for net, spec in zip(NETWORKS, (cfg.actor, cfg.critic), strict=True)}


def _open(cfg: AgentConfig, stream: EnvStream, run_dir: Path, resume: bool
          ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(agent document, manifests) of a new run, or of the run to resume (both manifests cut
    to the tasks both finished)."""
    record = {"format": AGENT_FORMAT, "format_version": 1, "config": cfg.to_dict(),
              "networks": list(NETWORKS), "complete": False}
    if not os.path.lexists(run_dir / AGENT):
        for net in NETWORKS:
            if any((run_dir / net).glob("*")):
                raise NtkplastError(f"{run_dir / net} already holds files but {run_dir} has no "
                                    f"{AGENT}; choose a new output folder")
        atomic_write_bytes(run_dir / AGENT, json.dumps(record, indent=1).encode())
        return record, _new_manifests(cfg, stream)
    if not resume:
        raise NtkplastError(f"{run_dir} already holds an agent; pass --resume to continue it or "
                            f"choose another output folder")
    doc = read_agent(run_dir)
    if doc.get("config") != cfg.to_dict():
        raise NtkplastError(f"{run_dir} was written with a different configuration; resume it "
                            f"with the same config, or train into a new folder")
    manifests = _new_manifests(cfg, stream)
    for net in NETWORKS:
        if os.path.lexists(run_dir / net / checkpoints.MANIFEST):
            manifests[net] = checkpoints.read_manifest(run_dir / net)
    done = min(len(m["tasks"]) for m in manifests.values())
    if any(not m["checkpoints"] for m in manifests.values()):
        done = -1  # not even the initial checkpoints of both: start again
    for m in manifests.values():
        m["tasks"] = m["tasks"][:max(done, 0)]
        m["checkpoints"] = m["checkpoints"][:done + 1]
        m["complete"] = False
    return doc, manifests


def train_agent(cfg: AgentConfig, stream: EnvStream, run_dir: str | os.PathLike, *,
                resume: bool = False, progress: bool = True,
                stop_after_tasks: int | None = None) -> Path:
    """Train the continual PPO agent of ``cfg`` on ``stream`` into ``run_dir`` (module doc).

    Args:
      cfg: the run's configuration.
      stream: its environment stream (``cfg`` and ``stream`` as
        :func:`ntkplast.rl.config.agent_config_from_dict` returns them).
      run_dir: the agent's folder (locked while it is written).
      resume: continue a run already in ``run_dir`` (same configuration).
      progress: print one line per task to stderr.
      stop_after_tasks: stop (as if killed) after this many tasks — for tests of resume.

    Returns:
      ``run_dir``.
    """
    run_dir = Path(run_dir)
    with folder_lock(run_dir, "train"):
        doc, manifests = _open(cfg, stream, run_dir, resume)
        if doc.get("complete"):
            return run_dir
        for sub in (*NETWORKS, "visited"):
            (run_dir / sub).mkdir(exist_ok=True)
            checkpoints.remove_stale_temporaries(run_dir / sub)
        _train_tasks(cfg, stream, run_dir, manifests, progress, stop_after_tasks)
        if stop_after_tasks is None or stop_after_tasks >= len(stream):
            for net in NETWORKS:
                manifests[net]["complete"] = True
                checkpoints.write_manifest(run_dir / net, manifests[net])
            atomic_write_bytes(run_dir / AGENT, json.dumps(
                {**doc, "complete": True}, indent=1).encode())
    return run_dir


def _save(run_dir: Path, manifests: dict[str, dict[str, Any]], state: AgentState, *,
          step: int, task: int, kind: str, record: Mapping[str, Any] | None) -> None:
    """Both networks' checkpoints, then both manifests (a crash in between: resume redoes it)."""
    nets = ((state.actor, state.actor_opt), (state.critic, state.critic_opt))
    for net, (params, opt) in zip(NETWORKS, nets, strict=True):
        metrics: dict[str, Any] = {"task_step": 0}
        if record is not None:  # the task's returns and losses, as rows of the analysis
            metrics.update((k, v) for k, v in record.items() if k != "task")
            manifests[net]["tasks"].append(dict(record))
        checkpoints.append_checkpoint(run_dir / net, manifests[net], params, step=step,
                                      task=task, kind=kind, metrics=metrics, opt_state=opt,
                                      save_manifest=False)
    for net in NETWORKS:
        checkpoints.write_manifest(run_dir / net, manifests[net])


def _train_tasks(cfg: AgentConfig, stream: EnvStream, run_dir: Path,
                 manifests: dict[str, dict[str, Any]], progress: bool,
                 stop_after_tasks: int | None) -> None:
    agent = _Agent(cfg, stream, cfg.method)
    plain = _Agent(cfg, stream, {}) if cfg.method else None
    k_init, k_task, k_ref, k_end = _keys(cfg.seed)
    refs = reference_task_set(cfg.train.reference_tasks, len(stream))
    done = len(manifests["actor"]["tasks"])
    state = agent.init(k_init)
    if done == 0 and not manifests["actor"]["checkpoints"]:
        _save(run_dir, manifests, state, step=0, task=0, kind="init", record=None)
    elif manifests["actor"]["checkpoints"]:
        entries = [manifests[net]["checkpoints"][-1] for net in NETWORKS]
        (a, ao), (c, co) = (checkpoints.checkpoint_state(run_dir / net, e, tx.init(p))
                            for net, e, tx, p in zip(NETWORKS, entries, agent.txs,
                                                     (state.actor, state.critic), strict=True))
        state = AgentState(a, c, ao, co, jnp.asarray(
            done * cfg.updates_per_task * cfg.ppo.epochs * cfg.ppo.minibatches, jnp.int32))
    last = len(stream) if stop_after_tasks is None else min(len(stream), stop_after_tasks)
    for t in range(done, last):
        state, rollout, sums, counts = agent.train_task(state, t, jax.random.fold_in(k_task, t))
        references: dict[str, float | None] = {}
        if t in refs:
            key = jax.random.fold_in(k_ref, t)
            for name, who in (("reference", agent), ("baseline", plain)):
                if who is not None:
                    _, _, s, c = who.train_task(who.init(jax.random.fold_in(key, 1)), t, key)
                    references[name] = who.final_return(s, c)
        state = _task_end(agent, state, t, jax.random.fold_in(k_end, t))
        record = _task_record(agent, t, sums, counts, references)
        save_arrays(run_dir / "visited" / f"task_{t:04d}.npz",
                    {"x": np.asarray(rollout.obs[:cfg.train.probe_states], np.float32)})
        step = (t + 1) * cfg.updates_per_task * cfg.ppo.steps_per_update
        _save(run_dir, manifests, state, step=step, task=t, kind="task_end", record=record)
        if progress:
            ref = references.get("reference")
            print(f"task {t} ({record['game']}): final return {_show(record['final_return'])}"
                  + (f", fresh agent {_show(ref)}" if "reference" in references else ""),
                  file=sys.stderr, flush=True)


def _show(v: float | None) -> str:
    return "no episode ended" if v is None else f"{v:.3g}"


def _task_end(agent: _Agent, state: AgentState, t: int, key: jax.Array) -> AgentState:
    """The method's task-end hooks (resets), each network with its own key."""
    out = []
    for i, (h, p, o) in enumerate(zip(agent.hooks, (state.actor, state.critic),
                                      (state.actor_opt, state.critic_opt), strict=True)):
        out.append((p, o) if h.on_task_end is None else h.on_task_end(
            p, o, t, jax.random.fold_in(key, i)))
    return AgentState(out[0][0], out[1][0], out[0][1], out[1][1], state.step)
