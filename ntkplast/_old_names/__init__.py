"""One stub per old module name of ntkplast, so that ``import ntkplast.<old>`` keeps working.

:mod:`ntkplast` appends this folder to its ``__path__``: ``import ntkplast.train`` finds
``train.py`` here, which replaces itself in ``sys.modules`` by :mod:`ntkplast.training` (the
module object importlib then returns and binds). The old names and their targets are the
table ``_MOVED`` of :mod:`ntkplast`; each one warns. Attribute access and
``from ntkplast import <old>`` do not need these files (``ntkplast.__getattr__``).
"""
