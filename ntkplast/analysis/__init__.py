"""Analysis: every diagnostic at every checkpoint of a run, into one tidy table.

===================  ========================================================================
module               what it holds
===================  ========================================================================
``driver``           :func:`analyze` (cached, resumable), :func:`analyze_checkpoint`
``probes``           the fixed probe set a run is analysed on (:func:`build_probe`)
===================  ========================================================================

The table itself is :class:`ntkplast.table.Table`.
"""

from ntkplast.analysis.driver import (
    CACHE_VERSION,
    FAMILIES,
    Settings,
    analyze,
    analyze_checkpoint,
    parse_metrics,
)
from ntkplast.analysis.probes import Probe, build_probe

__all__ = ["CACHE_VERSION", "FAMILIES", "Probe", "Settings", "analyze", "analyze_checkpoint",
           "build_probe", "parse_metrics"]
