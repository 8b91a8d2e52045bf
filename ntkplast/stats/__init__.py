from ntkplast.stats.correlation import *  # noqa: F403
from ntkplast.stats.correlation import __all__  # noqa: F401
