"""Continual reinforcement learning: PPO agents on streams of MinAtar tasks, written as runs.

============  =================================================================================
module        what it holds
============  =================================================================================
``envs``      MinAtar (Young & Tian 2019, "MinAtar: An Atari-inspired testbed for thorough and
              reproducible reinforcement learning experiments") through gymnax (Lange 2022),
              pure JAX: games switched (channels padded, the union of their actions), permuted
              observations, permuted actions
``ppo``       PPO (Schulman et al. 2017) with GAE (Schulman et al. 2016), actor and critic as
              two ntkplast networks, U updates in one compiled ``lax.scan``
``config``    an RL config (a TOML with an ``[env]`` table): env, actor, critic, ppo, train,
              method
``loop``      the continual agent task after task, its folder (``agent.json``, ``actor/`` and
              ``critic/`` run folders, visited states), fresh-agent references, resume
``analysis``  ``ntkplast analyze`` of an agent: every diagnostic on actor and critic, on the
              states the agent visited
============  =================================================================================

``ntkplast train CONFIG`` trains an agent when the config has an ``[env]`` table
(``configs/rl/``); ``ntkplast analyze RUN_DIR`` then writes ``actor/…`` and ``critic/…`` rows.
Needs the ``rl`` extra: ``pip install 'ntkplast[rl]'`` (gymnax 0.0.9, Apache-2.0).
"""
