"""ntkplast's PPO against rejax's on Breakout-MinAtar: environment steps per second and return.

    .venv-core/bin/pip install rejax==0.1.3     # the peer (needs jax >= 0.4.34, flax >= 0.9)
    JAX_PLATFORMS=cpu .venv-core/bin/python benchmarks/rl_ppo.py [--seeds 3]
        [--steps 262144] [--game Breakout-MinAtar]

One configuration for both (the issue's measured rejax setting): 64 environments × 128 steps
per update, 4 epochs × 8 minibatches, 256×256 ReLU actor and critic, Adam at 5e-4 (ε 1e-8),
γ 0.99, λ 0.95, ε_clip 0.2, c_v 0.5, c_e 0.01, no observation or reward normalisation; rejax's
``max_grad_norm = 0.5`` clips each gradient element (``optax.clip``), so ntkplast runs without
norm clipping (:data:`AS_REJAX`; ntkplast's own default, purejaxrl's, is norm 0.5 and ε 1e-5).
``--init rejax`` also initialises ntkplast's networks as rejax does (orthogonal, the policy head
at scale 0.01; default: ntkplast's ``ArchSpec`` defaults, Gaussian with σ_w² = 2 for ReLU).

Per implementation and seed: compile time (trace, lower and compile; the first call of one
chunk of 8 updates for ntkplast, which compiles once per chunk length), steady throughput
(environment steps per second of the compiled training: rejax's whole ``train``, ntkplast's
updater over the same number of steps), the end-to-end wall time (ntkplast: ``train_agent``,
which also writes the run folder), and the return of the policy each trained end to end
(actions sampled) over 128 episodes by rejax's own ``evaluate`` for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SETTING = {"num_envs": 64, "num_steps": 128, "epochs": 4, "minibatches": 8,
           "learning_rate": 5e-4, "max_grad_norm": 0.5, "gamma": 0.99, "gae_lambda": 0.95,
           "clip_eps": 0.2, "vf_coef": 0.5, "ent_coef": 0.01}


def _evaluate(act, game: str, seed: int) -> float:
    import gymnax
    from rejax.evaluate import evaluate

    env, params = gymnax.make(game)
    _, returns = jax.jit(lambda k: evaluate(act, k, env, params, 128,
                                            params.max_steps_in_episode))(
        jax.random.PRNGKey(10_000 + seed))
    return float(jnp.mean(returns))


AS_REJAX = {"max_grad_norm": 0, "adam_eps": 1e-8}
"""rejax 0.1.3's ``max_grad_norm`` is ``optax.clip``: each gradient element clipped to ±0.5, not
the norm; its Adam has optax's ε = 1e-8. ntkplast runs as it does: no norm clipping, ε 1e-8."""

NETS = {"default": ({}, {}),  # ntkplast's ArchSpec defaults: Gaussian, σ_w² = 2, readout σ 1
        # as rejax (and purejaxrl) initialise: orthogonal, the policy head at scale 0.01
        "rejax": ({"init": "orthogonal", "readout_w_std": 0.01}, {"init": "orthogonal"})}


def ntkplast_run(game: str, steps: int, seed: int, init: str = "default") -> dict:
    """End to end (``train_agent``: the run folder, compile included) for the return; then the
    compiled updater alone (``ntkplast.rl.ppo.make_updater``, what rejax's compiled ``train``
    is) for the compile time and the steady throughput: one chunk of 8 updates compiles, the
    next ``steps`` worth of chunks are timed."""
    from ntkplast import models
    from ntkplast.base import Hooks
    from ntkplast.rl import config as rl_config
    from ntkplast.rl import loop
    from ntkplast.rl.ppo import AgentState, Rollout, make_updater
    from ntkplast.runs import checkpoints

    cfg, stream = rl_config.agent_config_from_dict({
        "seed": seed, "env": {"kind": "games", "games": [game], "num_tasks": 1},
        "actor": {"widths": [256, 256], **NETS[init][0]},
        "critic": {"widths": [256, 256], **NETS[init][1]},
        "ppo": {**SETTING, **AS_REJAX}, "train": {"steps_per_task": steps,
                                                  "updates_per_chunk": 8}})
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        loop.train_agent(cfg, stream, Path(d) / "run", progress=False)
        wall = time.perf_counter() - t0
        run = checkpoints.open_run(Path(d) / "run" / "actor")
        actor, params = models.build(run.spec), run.params(len(run) - 1)

    def act(obs, rng):
        return jax.random.categorical(rng, actor.apply(params, obs[None])[0])

    nets = (models.build(cfg.actor), models.build(cfg.critic))
    tx = cfg.ppo.optimizer()
    task = stream[0]
    arrays = (jnp.asarray(task.obs_perm), jnp.asarray(task.action_map))
    update = make_updater(*nets, lambda k, s, a, t: stream.step(task.game, k, s, a, t),
                          cfg.ppo, (tx, tx), (Hooks(), Hooks()))
    key = jax.random.PRNGKey(seed)
    a_p, c_p = (n.init(jax.random.fold_in(key, i), stream.obs_shape) for i, n in enumerate(nets))
    agent = AgentState(a_p, c_p, tx.init(a_p), tx.init(c_p), jnp.asarray(0, jnp.int32))
    obs, env_state = jax.vmap(lambda k: stream.reset(task.game, k, arrays))(
        jax.random.split(key, SETTING["num_envs"]))
    rollout = Rollout(env_state, obs, jnp.zeros(SETTING["num_envs"]))
    chunk = jax.random.split(key, 8)
    t0 = time.perf_counter()
    agent, rollout, stats = update(agent, rollout, arrays, chunk)
    jax.block_until_ready(stats)
    compile_s = time.perf_counter() - t0
    chunks = max(1, steps // (8 * SETTING["num_envs"] * SETTING["num_steps"]))
    t0 = time.perf_counter()
    for i in range(chunks):
        agent, rollout, stats = update(agent, rollout, arrays, jax.random.split(
            jax.random.fold_in(key, i), 8))
    jax.block_until_ready(stats)
    rate = chunks * 8 * SETTING["num_envs"] * SETTING["num_steps"] / (time.perf_counter() - t0)
    return {"compile_s": compile_s, "steps_per_s": rate, "wall_s": wall,
            "return": _evaluate(act, game, seed)}


def rejax_run(game: str, steps: int, seed: int) -> dict:
    from rejax import PPO

    algo = PPO.create(env=game, total_timesteps=steps, eval_freq=steps,
                      skip_initial_evaluation=True, num_envs=SETTING["num_envs"],
                      num_steps=SETTING["num_steps"], num_epochs=SETTING["epochs"],
                      num_minibatches=SETTING["minibatches"],
                      learning_rate=SETTING["learning_rate"],
                      max_grad_norm=SETTING["max_grad_norm"], gamma=SETTING["gamma"],
                      gae_lambda=SETTING["gae_lambda"], clip_eps=SETTING["clip_eps"],
                      vf_coef=SETTING["vf_coef"], ent_coef=SETTING["ent_coef"],
                      agent_kwargs={"hidden_layer_sizes": (256, 256), "activation": "relu"})
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    train = jax.jit(algo.train).lower(key).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts, _ = train(key)
    jax.block_until_ready(ts)
    wall = time.perf_counter() - t0
    act = algo.make_act(ts)  # the trained policy, actions sampled
    return {"compile_s": compile_s, "steps_per_s": steps / wall, "wall_s": wall + compile_s,
            "return": _evaluate(act, game, seed)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=262_144)
    p.add_argument("--game", default="Breakout-MinAtar")
    p.add_argument("--init", choices=sorted(NETS), default="default",
                   help="ntkplast's initialisation: its defaults, or rejax's (orthogonal, "
                        "policy head at 0.01)")
    args = p.parse_args(argv)
    results: dict[str, list[dict]] = {"ntkplast": [], "rejax": []}
    for seed in range(args.seeds):
        for name, fn in (("ntkplast", lambda *a: ntkplast_run(*a, init=args.init)),
                         ("rejax", rejax_run)):
            r = fn(args.game, args.steps, seed)
            results[name].append(r)
            print(f"{name:8s} seed {seed}: compile {r['compile_s']:5.1f} s, "
                  f"{r['steps_per_s']:7.0f} steps/s, return {r['return']:.2f}", flush=True)
    summary = {}
    for name, rs in results.items():
        summary[name] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        summary[name]["return_per_seed"] = [round(r["return"], 3) for r in rs]
    ratio = summary["ntkplast"]["steps_per_s"] / summary["rejax"]["steps_per_s"]
    print(json.dumps({"jax": jax.__version__, "game": args.game, "steps": args.steps,
                      "ntkplast_init": args.init,
                      "seeds": args.seeds, **summary,
                      "throughput_ratio_ntkplast_over_rejax": round(ratio, 3)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
