"""ntkplast.rl.envs: MinAtar task streams through gymnax (skipped where gymnax is absent)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gymnax = pytest.importorskip("gymnax", reason="gymnax is not installed (the rl extra)")

from ntkplast.errors import NtkplastError  # noqa: E402
from ntkplast.rl import envs  # noqa: E402

STEPS = 50


def arrays(task):
    """A task's arrays as the stream's reset/step take them."""
    return jnp.asarray(task.obs_perm), jnp.asarray(task.action_map)


@functools.partial(jax.jit, static_argnums=(0, 1))
def stream_rollout(stream, game, key, actions, task_arrays):
    """(obs after reset, obs of every step, rewards, dones) of one environment of the stream."""
    k0, key = jax.random.split(key)
    obs0, state = stream.reset(game, k0, task_arrays)

    def body(state, xs):
        obs, state, reward, done = stream.step(game, xs[0], state, xs[1], task_arrays)
        return state, (obs, reward, done)

    _, out = jax.lax.scan(body, state, (jax.random.split(key, len(actions)), actions))
    return (obs0, *out)


@functools.partial(jax.jit, static_argnums=0)
def game_rollout(env, params, key, actions):
    """The same rollout played on gymnax directly, with the game's own actions."""
    k0, key = jax.random.split(key)
    obs0, state = env.reset(k0, params)

    def body(state, xs):
        obs, state, reward, done, _ = env.step(xs[0], state, xs[1], params)
        return state, (obs.astype(jnp.float32), reward.astype(jnp.float32), done)

    _, out = jax.lax.scan(body, state, (jax.random.split(key, len(actions)), actions))
    return (obs0.astype(jnp.float32), *out)


def actions_below(n, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, n, STEPS), jnp.int32)


def pixels(obs):
    """``[..., 10, 10, C]`` as ``[..., 100, C]``."""
    return obs.reshape(*obs.shape[:-3], 100, obs.shape[-1])


def test_obs_shapes_and_channel_padding():
    assert envs.make_env_stream({"games": ["Breakout-MinAtar"]}).obs_shape == (10, 10, 4)
    stream = envs.make_env_stream({"games": ["Breakout-MinAtar", "Freeway-MinAtar"]})
    assert stream.obs_shape == (10, 10, 7) and stream.games == envs.GAMES[::2]
    obs, _ = stream.reset(0, jax.random.PRNGKey(0), arrays(stream[0]))
    assert obs.shape == (10, 10, 7) and obs.dtype == jnp.float32
    assert obs[..., :4].sum() > 0 and not obs[..., 4:].any()  # Breakout's 4, then zeros
    obs, _ = stream.reset(1, jax.random.PRNGKey(0), arrays(stream[1]))
    assert obs[..., 4:].any()  # Freeway uses all 7


def test_action_union_and_mapping():
    stream = envs.make_env_stream({"games": ["Breakout-MinAtar", "SpaceInvaders-MinAtar"],
                                   "num_tasks": 3})
    # Breakout {n, l, r} ∪ SpaceInvaders {n, l, r, f} = n, l, r, f (the full set's order)
    assert stream.num_actions == 4 and stream.action_letters == ("n", "l", "r", "f")
    assert [t.game for t in stream] == [0, 1, 0]
    np.testing.assert_array_equal(stream[0].action_map, [0, 1, 2, 0])  # f: Breakout's no-op
    np.testing.assert_array_equal(stream[1].action_map, [0, 1, 2, 3])
    np.testing.assert_array_equal(stream[0].obs_perm, np.arange(100))
    every = envs.make_env_stream({"games": list(envs.GAMES)})
    assert every.action_letters == tuple("nlurdf")
    np.testing.assert_array_equal(every[2].action_map, [0, 0, 1, 0, 2, 0])  # Freeway {n, u, d}
    # playing Breakout through the union equals playing it with the hand-mapped actions
    env, params = gymnax.make("Breakout-MinAtar")
    agent = actions_below(4)
    key = jax.random.PRNGKey(1)
    ours = stream_rollout(stream, 0, key, agent, arrays(stream[0]))
    theirs = game_rollout(env, params, key, jnp.asarray([0, 1, 2, 0])[agent])
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a[..., :4] if a.ndim >= 3 else a, b)


def test_permuted_observations_reindex_the_game():
    stream = envs.make_env_stream({"kind": "permuted_observations",
                                   "games": ["SpaceInvaders-MinAtar"], "num_tasks": 3})
    task = stream[1]
    assert sorted(task.obs_perm.tolist()) == list(range(100))
    assert (task.obs_perm != np.arange(100)).any()
    np.testing.assert_array_equal(task.action_map, np.arange(4))
    env, params = gymnax.make("SpaceInvaders-MinAtar")
    agent, key = actions_below(4), jax.random.PRNGKey(2)
    ours = stream_rollout(stream, 0, key, agent, arrays(task))
    theirs = game_rollout(env, params, key, agent)
    for i in (0, 1):  # obs after reset, then every step's
        np.testing.assert_array_equal(pixels(ours[i]), pixels(theirs[i])[..., task.obs_perm, :])
    np.testing.assert_array_equal(ours[2], theirs[2])
    np.testing.assert_array_equal(ours[3], theirs[3])


def test_permuted_actions_match_identity_when_mapped_back():
    stream = envs.make_env_stream({"kind": "permuted_actions", "games": ["Asterix-MinAtar"],
                                   "num_tasks": 2, "seed": 3})
    perm = stream[1].action_map
    np.testing.assert_array_equal(stream[0].action_map, np.arange(5))
    assert sorted(perm.tolist()) == list(range(5)) and (perm != np.arange(5)).any()
    wanted, key = actions_below(5, seed=1), jax.random.PRNGKey(3)  # the game actions to play
    identity = stream_rollout(stream, 0, key, wanted, arrays(stream[0]))
    inverse = {int(g): a for a, g in enumerate(perm)}  # the agent action giving game action g
    agent = jnp.asarray([inverse[int(g)] for g in wanted], jnp.int32)
    permuted = stream_rollout(stream, 0, key, agent, arrays(stream[1]))
    for a, b in zip(identity, permuted):
        np.testing.assert_array_equal(a, b)
    assert identity[1].shape == (STEPS, 10, 10, 4)


def test_tasks_of_one_game_share_one_program():
    stream = envs.make_env_stream({"kind": "games", "num_tasks": 4,
                                   "games": ["Breakout-MinAtar", "SpaceInvaders-MinAtar"]})
    perms = envs.make_env_stream({"kind": "permuted_observations", "num_tasks": 3,
                                  "games": ["Breakout-MinAtar"]})
    traces = []

    def step(stream, game, key, state, action, task_arrays):
        traces.append(game)
        return stream.step(game, key, state, action, task_arrays)

    jstep = jax.jit(step, static_argnums=(0, 1))
    key = jax.random.PRNGKey(0)
    for s, t in [(stream, 0), (stream, 2), (stream, 1), (stream, 3), (perms, 1), (perms, 2)]:
        task = s[t]
        _, state = s.reset(task.game, key, arrays(task))
        jstep(s, task.game, key, state, jnp.int32(1), arrays(task))
    assert traces == [0, 1, 0]  # one trace per (stream, game), none per task
    assert (perms[1].obs_perm != perms[2].obs_perm).any()


def test_vmap_and_scan():
    stream = envs.make_env_stream({"games": ["Freeway-MinAtar", "Breakout-MinAtar"]})
    task = stream[1]
    ta = arrays(task)

    @jax.jit
    def run(key):
        keys = jax.random.split(key, 8)
        obs, state = jax.vmap(lambda k: stream.reset(task.game, k, ta))(keys)

        def body(carry, k):
            state, total = carry
            ka, ks = jax.random.split(k)
            action = jax.random.randint(ka, (8,), 0, stream.num_actions)
            obs, state, reward, done = jax.vmap(
                lambda k, s, a: stream.step(task.game, k, s, a, ta))(
                jax.random.split(ks, 8), state, action)
            return (state, total + reward), (obs, done)

        (_, total), (obs_seq, done) = jax.lax.scan(body, (state, jnp.zeros(8)),
                                                   jax.random.split(key, STEPS))
        return obs, total, obs_seq, done

    obs, total, obs_seq, done = run(jax.random.PRNGKey(0))
    assert obs.shape == (8, 10, 10, 7) and obs_seq.shape == (STEPS, 8, 10, 10, 7)
    assert total.shape == (8,) and total.dtype == jnp.float32 and done.dtype == jnp.bool_
    assert np.isfinite(np.asarray(total)).all() and not obs_seq[..., 4:].any()


@pytest.mark.parametrize(("table", "field"), [
    ({"kind": "atari"}, "env.kind"),
    ({"games": []}, "env.games"),
    ({"games": ["Pong-MinAtar"]}, "env.games"),
    ({"games": "Breakout-MinAtar"}, "env.games"),
    ({"games": [3]}, "env.games"),
    ({"kind": "permuted_actions", "games": ["Breakout-MinAtar", "Asterix-MinAtar"]},
     "env.games"),
    ({"num_tasks": 0}, "env.num_tasks"),
    ({"num_tasks": True}, "env.num_tasks"),
    ({"num_tasks": 1.5}, "env.num_tasks"),
    ({"seed": -1}, "env.seed"),
    ({"seed": "x"}, "env.seed"),
    ({"sead": 1}, "'sead'"),
])
def test_bad_specs_name_the_field(table, field):
    with pytest.raises(NtkplastError, match=field) as info:
        envs.make_env_stream(table)
    assert "\n" not in str(info.value)


def test_bad_spec_constructed_directly_and_bad_use():
    with pytest.raises(NtkplastError, match="env.num_tasks"):
        envs.EnvStreamSpec(num_tasks=0)
    assert envs.EnvStreamSpec(games=["Asterix-MinAtar"]).games == ("Asterix-MinAtar",)
    stream = envs.make_env_stream(envs.EnvStreamSpec(num_tasks=2))
    assert stream[-1].game == 0
    with pytest.raises(IndexError):
        stream[2]
    with pytest.raises(NtkplastError, match="task index"):
        stream["0"]
    key = jax.random.PRNGKey(0)
    with pytest.raises(NtkplastError, match="env game"):
        stream.reset(1, key, arrays(stream[0]))
    with pytest.raises(NtkplastError, match="env task_arrays"):
        stream.reset(0, key, (jnp.arange(100), jnp.arange(5)))
    with pytest.raises(NtkplastError, match="env:"):
        envs.make_env_stream(["games"])


def test_stream_is_deterministic_in_the_seed():
    table = {"kind": "permuted_observations", "games": ["Breakout-MinAtar"], "num_tasks": 4,
             "seed": 7}
    a, b = envs.make_env_stream(table), envs.make_env_stream(dict(table))
    other = envs.make_env_stream({**table, "seed": 8})
    for t in range(4):
        np.testing.assert_array_equal(a[t].obs_perm, b[t].obs_perm)
        assert a[t].obs_perm.dtype == np.int32 and a[t].action_map.dtype == np.int32
    assert any((a[t].obs_perm != other[t].obs_perm).any() for t in range(1, 4))
    np.testing.assert_array_equal(a[0].obs_perm, other[0].obs_perm)  # task 0 is the identity
    spec = a.spec
    assert envs.EnvStreamSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["games"] == ["Breakout-MinAtar"]
