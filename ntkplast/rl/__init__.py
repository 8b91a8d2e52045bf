"""Continual reinforcement learning: streams of MinAtar tasks (Young & Tian 2019, "MinAtar: An
Atari-inspired testbed for thorough and reproducible reinforcement learning experiments") played
through gymnax (Lange 2022), pure JAX so that agents and environments jit and vmap together
(:mod:`ntkplast.rl.envs`). Needs the ``rl`` extra: ``pip install 'ntkplast[rl]'``.
"""
