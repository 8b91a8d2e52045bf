"""Continual-RL environment streams on MinAtar, played through gymnax; pure JAX.

MinAtar (Young & Tian 2019, "MinAtar: An Atari-inspired testbed for thorough and reproducible
reinforcement learning experiments") shrinks Atari games to a 10×10 grid of binary channels;
gymnax (Lange 2022) reimplements them in JAX, so reset and step jit, vmap and scan. A stream is
a sequence of tasks, each a game seen through a fixed change of its interface:

* ``"games"``: task t plays ``spec.games[t % len(spec.games)]``. The agent's actions are the
  union of the games' MinAtar action sets (letters of MinAtar's full set ``n l u r d f``: no-op,
  left, up, right, down, fire, in that order); a letter the current game lacks is its no-op.
  Observations carry the most channels over the games, fewer-channel games zero-padded.
* ``"permuted_observations"``: one game; task 0 as is, every later task shows the 100 pixel
  positions in an order drawn from ``(seed, t)`` (channels are not permuted).
* ``"permuted_actions"``: one game; task 0 as is, every later task relabels the game's actions
  by a permutation drawn from ``(seed, t)``.

A task's permutation and action map are data, not program: :meth:`EnvStream.reset` and
:meth:`EnvStream.step` take them as (traced) arrays, so every task of one game runs one
compiled program; only ``game`` (a Python int) selects a program. gymnax's default
environment parameters are used. Needs the ``rl`` extra (``pip install 'ntkplast[rl]'``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.plain import from_plain

__all__ = ["ACTION_LETTERS", "GAMES", "KINDS", "EnvStream", "EnvStreamSpec", "EnvTask",
           "make_env_stream"]

GAMES: tuple[str, ...] = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar",
                          "SpaceInvaders-MinAtar")
"""The MinAtar games a stream may play (gymnax's names)."""
KINDS: tuple[str, ...] = ("games", "permuted_observations", "permuted_actions")
"""The kinds of stream (see the module docstring)."""
ACTION_LETTERS: str = "nlurdf"
"""MinAtar's full action set in its order: no-op, left, up, right, down, fire."""

_GRID = (10, 10)
_PIXELS = _GRID[0] * _GRID[1]
_GYMNAX_MISSING = "env: MinAtar environments need gymnax: pip install 'ntkplast[rl]'"


def _is_int(v: Any) -> bool:
    """Whether ``v`` is an integer (Python or NumPy) and not a ``bool``."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings gymnax 0.0.9's MinAtar code raises while it is traced (a bool
    scatter of float values, an int64 request without x64): nothing a caller can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="scatter inputs have incompatible types",
                                category=FutureWarning)
        warnings.filterwarnings("ignore", message="Explicitly requested dtype int64",
                                category=UserWarning)
        yield


@functools.cache
def _game(name: str) -> tuple[Any, Any]:
    """gymnax's environment and default parameters for ``name``, one instance per process (so
    gymnax's own jitted methods, static in the instance, are compiled once)."""
    try:
        import gymnax
    except ImportError as e:
        raise NtkplastError(f"{_GYMNAX_MISSING} ({e})") from None
    with _quiet():
        env, params = gymnax.make(name)
    return env, params


@dataclasses.dataclass(frozen=True)
class EnvStreamSpec:
    """Plain-data description of an environment stream (the ``[env]`` table of a config).

    Attributes:
      kind: one of :data:`KINDS`.
      games: names from :data:`GAMES`; ``"games"`` cycles them task by task (task t plays
        ``games[t % len(games)]``, repeats allowed), the other kinds take exactly one.
      num_tasks: number of tasks, at least 1.
      seed: non-negative integer from which the permutations are drawn (not the agent's seed).
    """

    kind: str = "games"
    games: tuple[str, ...] = ("Breakout-MinAtar",)
    num_tasks: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        w = "env"
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise NtkplastError(f"{w}.kind: unknown stream kind {self.kind!r}; choose one of "
                                f"{list(KINDS)}")
        games = self.games
        if isinstance(games, str):
            raise NtkplastError(f"{w}.games: expected a list of game names, got the string "
                                f"{games!r}; write [{games!r}]")
        if not isinstance(games, list | tuple):
            raise NtkplastError(f"{w}.games: expected a list of game names, got {games!r}")
        games = tuple(games)
        object.__setattr__(self, "games", games)
        if not games:
            raise NtkplastError(f"{w}.games: expected at least one game; choose from "
                                f"{list(GAMES)}")
        unknown = [g for g in games if not isinstance(g, str) or g not in GAMES]
        if unknown:
            raise NtkplastError(f"{w}.games: unknown game(s) {unknown}; choose from "
                                f"{list(GAMES)}")
        if self.kind != "games" and len(games) != 1:
            raise NtkplastError(f"{w}.games: kind {self.kind!r} plays exactly one game, got "
                                f"{len(games)}; give one, or use kind 'games' to cycle several")
        if not _is_int(self.num_tasks) or self.num_tasks < 1:
            raise NtkplastError(f"{w}.num_tasks: expected an integer >= 1, got "
                                f"{self.num_tasks!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise NtkplastError(f"{w}.seed: expected a non-negative integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready dict (``games`` as a list);
        ``EnvStreamSpec.from_dict(spec.to_dict()) == spec``."""
        d = dataclasses.asdict(self)
        d["games"] = list(self.games)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "env") -> EnvStreamSpec:
        """Build a spec from plain data; unknown keys and wrong types name ``where.key``."""
        return from_plain(cls, d, where)


class EnvTask(NamedTuple):
    """One task of an :class:`EnvStream`.

    Attributes:
      game: index into :attr:`EnvStream.games` (a Python int: one compiled program per game).
      obs_perm: int32 ``[100]``; pixel p of the agent's view is pixel ``obs_perm[p]`` of the
        game's (row-major over the 10×10 grid; the identity unless the stream's kind is
        ``"permuted_observations"``).
      action_map: int32 ``[num_actions]``; the agent's action a is the game's own action
        ``action_map[a]`` (an index into the game's MinAtar action set).
    """

    game: int
    obs_perm: np.ndarray
    action_map: np.ndarray


class EnvStream:
    """A stream of MinAtar tasks (see the module docstring); build it with
    :func:`make_env_stream`.

    Attributes:
      spec: the :class:`EnvStreamSpec` it was built from.
      games: the distinct games, in order of first appearance in ``spec.games``.
      obs_shape: ``(10, 10, C)``, C the most channels over :attr:`games`.
      num_actions: the agent's action count (``"games"``: the size of the union of the games'
        action sets; otherwise the game's own).
      action_letters: the MinAtar letter (:data:`ACTION_LETTERS`) of each of the agent's
        actions in task 0.
    """

    def __init__(self, spec: EnvStreamSpec):
        self.spec = spec
        self.games: tuple[str, ...] = tuple(dict.fromkeys(spec.games))
        found = [_game(g) for g in self.games]
        self._envs = tuple(env for env, _ in found)
        self._params = tuple(params for _, params in found)
        sets = [tuple(int(a) for a in np.asarray(env.action_set)) for env in self._envs]
        channels = max(int(env.obs_shape[-1]) for env in self._envs)
        self.obs_shape: tuple[int, int, int] = (*_GRID, channels)
        if spec.kind == "games":
            letters = sorted(set().union(*sets))
            self._maps = tuple(np.array([s.index(a) if a in s else s.index(0) for a in letters],
                                        dtype=np.int32) for s in sets)
        else:
            letters = list(sets[0])
            self._maps = (np.arange(len(letters), dtype=np.int32),)
        self.num_actions: int = len(letters)
        self.action_letters: tuple[str, ...] = tuple(ACTION_LETTERS[a] for a in letters)

    def __len__(self) -> int:
        return self.spec.num_tasks

    def __getitem__(self, t: int) -> EnvTask:
        """Task ``t`` (negative counts from the end, as for a list); IndexError out of range."""
        if not _is_int(t):
            raise NtkplastError(f"env task index must be an integer, got {t!r}")
        t = int(t) + (len(self) if t < 0 else 0)
        if not 0 <= t < len(self):
            raise IndexError(f"env task index {t} out of range for a stream of {len(self)} "
                             f"tasks")
        spec = self.spec
        game = self.games.index(spec.games[t % len(spec.games)])
        obs_perm = np.arange(_PIXELS, dtype=np.int32)
        action_map = self._maps[game].copy()
        if t > 0 and spec.kind == "permuted_observations":
            obs_perm = np.random.default_rng([spec.seed, t]).permutation(_PIXELS)
        elif t > 0 and spec.kind == "permuted_actions":
            action_map = np.random.default_rng([spec.seed, t]).permutation(self.num_actions)
        return EnvTask(game, obs_perm.astype(np.int32), action_map.astype(np.int32))

    def __iter__(self) -> Iterator[EnvTask]:
        for t in range(len(self)):
            yield self[t]

    def __repr__(self) -> str:
        return (f"EnvStream(kind={self.spec.kind!r}, games={list(self.games)}, "
                f"num_tasks={len(self)}, obs_shape={self.obs_shape}, "
                f"num_actions={self.num_actions})")

    def _checked(self, game: Any, task_arrays: Any) -> tuple[Any, Any, jax.Array, jax.Array]:
        """(env, params, obs_perm, action_map) after checking ``game`` and the arrays' shapes."""
        if not _is_int(game) or not 0 <= int(game) < len(self.games):
            raise NtkplastError(f"env game: expected a Python int in [0, {len(self.games)}) "
                                f"(static under jit: EnvTask.game), got {game!r}")
        if not isinstance(task_arrays, tuple | list) or len(task_arrays) != 2:
            raise NtkplastError("env task_arrays: expected (obs_perm, action_map), as "
                                "(jnp.asarray(task.obs_perm), jnp.asarray(task.action_map))")
        obs_perm, action_map = (jnp.asarray(a) for a in task_arrays)
        if obs_perm.shape != (_PIXELS,) or action_map.shape != (self.num_actions,):
            raise NtkplastError(f"env task_arrays: expected shapes ({_PIXELS},) and "
                                f"({self.num_actions},), got {obs_perm.shape} and "
                                f"{action_map.shape}; pass a task of this stream")
        return self._envs[int(game)], self._params[int(game)], obs_perm, action_map

    def _view(self, obs: jax.Array, obs_perm: jax.Array) -> jax.Array:
        """The agent's view of a game observation: float32, pixels permuted, channels padded."""
        obs = jnp.asarray(obs, jnp.float32)
        c = obs.shape[-1]
        flat = jnp.take(obs.reshape(_PIXELS, c), obs_perm, axis=0)
        flat = jnp.pad(flat, ((0, 0), (0, self.obs_shape[-1] - c)))
        return flat.reshape(self.obs_shape)

    def reset(self, game: int, key: jax.Array,
              task_arrays: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, Any]:
        """Start one environment of ``game`` (a task's :attr:`EnvTask.game`, a Python int).

        Returns ``(obs, state)``: the agent's view, float32 ``obs_shape``, and gymnax's
        environment state (a pytree). ``task_arrays`` is ``(obs_perm, action_map)`` of the task,
        as arrays (traced under jit, so tasks of one game share one program). Pure; vmap over
        ``key`` for a batch of environments.
        """
        env, params, obs_perm, _ = self._checked(game, task_arrays)
        with _quiet():
            obs, state = env.reset(key, params)
        return self._view(obs, obs_perm), state

    def step(self, game: int, key: jax.Array, state: Any, action: jax.Array,
             task_arrays: tuple[jax.Array, jax.Array]
             ) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
        """Advance one environment by the agent's ``action`` (an index below
        :attr:`num_actions`, mapped to the game's action by the task's ``action_map``).

        Returns ``(obs, state, reward, done)``: the agent's view (float32 ``obs_shape``), the new
        state, the reward (float32) and whether the episode ended (bool). When it ended, ``obs``
        and ``state`` already belong to a fresh episode (gymnax's step resets automatically).
        Pure; vmap over ``key``, ``state`` and ``action`` for a batch of environments.
        """
        env, params, obs_perm, action_map = self._checked(game, task_arrays)
        game_action = action_map[jnp.asarray(action, jnp.int32)]
        with _quiet():
            obs, state, reward, done, _ = env.step(key, state, game_action, params)
        return (self._view(obs, obs_perm), state, jnp.asarray(reward, jnp.float32),
                jnp.asarray(done, jnp.bool_))


def make_env_stream(spec: EnvStreamSpec | Mapping[str, Any]) -> EnvStream:
    """The :class:`EnvStream` that ``spec`` describes (an :class:`EnvStreamSpec`, or its plain
    table, read by :meth:`EnvStreamSpec.from_dict`). Raises
    :class:`~ntkplast.errors.NtkplastError` when gymnax (the ``rl`` extra) is not installed."""
    if isinstance(spec, Mapping):
        spec = EnvStreamSpec.from_dict(spec)
    elif not isinstance(spec, EnvStreamSpec):
        raise NtkplastError(f"env: expected an EnvStreamSpec or a table of settings, got "
                            f"{type(spec).__name__}")
    return EnvStream(spec)
