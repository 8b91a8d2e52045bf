"""Experiments: many runs at once, and the studies built from them.

Its modules:

- ``grid``: methods × seeds (:func:`~ntkplast.experiments.grid.run_grid`): train, analyse, gather
  tables
- ``sweep``: a TOML grid of hyper-parameter points (``ntkplast sweep``)
- ``selection``: a sweep's ``[selection]``: each method's point chosen on seeds of its own
- ``executors``: where jobs run: in process or on Ray
- ``demo``: ``ntkplast demo``
- ``reactivation``: plant dead ReLU units, train, count how many revive

Import the module you need (``from ntkplast.experiments import grid``); nothing is imported here,
so ``import ntkplast.experiments.executors`` stays light.
"""
