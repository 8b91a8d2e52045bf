"""Statistics over runs' metric tables: correlations, onset order, the predictor test, intervals.

===============  ==============================================================================
module           what it holds
===============  ==============================================================================
``correlation``  :func:`spearman`, :func:`partial_spearman`, :func:`lead_lag` across checkpoints,
                 trend-controlled by default (:data:`Trend`)
``trend``        :func:`metric_series`, :func:`aligned`: the runs' series joined on common
                 checkpoints, and the trend control's data step (differences, position, lag)
``contrasts``    :func:`paired_contrast`, :func:`method_contrast`: method A against B on the same
                 seeds (paired t over seeds)
``onsets``       :func:`onset`, :func:`onset_order`: which metric moves first, in how many runs
``predictors``   :func:`compare_predictors`, :func:`predictor_lead_lag`: which task-end metric
                 best predicts plasticity on a later task (:data:`PREDICTORS`)
``sensitivity``  :func:`sensitivity`: the predictor test over trend controls × lags, so a reader
                 sees which choice turns a verdict
``intervals``    intervals that hold their coverage at R = 3–8 runs: :func:`t_interval`,
                 :func:`jackknife_interval`, :func:`correlation_interval`, :func:`jackknife_p`,
                 :func:`mean_interval`, :func:`final_tasks_interval`
===============  ==============================================================================

Every function takes one :class:`~ntkplast.table.Table` per run (or method name → one per seed)
and returns a result that prints its sample sizes. Its old name, ``ntkplast.hypotheses``, still
imports, with a DeprecationWarning.
"""

from ntkplast.stats._inputs import TREND_TEXT, Trend
from ntkplast.stats.contrasts import (
    PairedContrast,
    last_tasks_means,
    method_contrast,
    paired_contrast,
)
from ntkplast.stats.correlation import (
    At,
    CorrelationResult,
    LeadLagResult,
    MetricRef,
    lead_lag,
    partial_spearman,
    spearman,
)
from ntkplast.stats.intervals import (
    correlation_interval,
    final_tasks_interval,
    jackknife_interval,
    jackknife_p,
    log_positive,
    mean_interval,
    t_interval,
)
from ntkplast.stats.onsets import Onset, OnsetOrder, onset, onset_order
from ntkplast.stats.predictors import (
    PREDICTORS,
    Contrast,
    PredictorComparison,
    PredictorLeadLag,
    PredictorRanking,
    PredictorSpec,
    PredictorStat,
    compare_predictors,
    predictor_lead_lag,
)
from ntkplast.stats.sensitivity import Sensitivity, SensitivityRow, sensitivity
from ntkplast.stats.trend import aligned, metric_series

__all__ = [
    "At", "Contrast", "CorrelationResult", "LeadLagResult", "MetricRef", "Onset", "OnsetOrder",
    "PREDICTORS", "PairedContrast", "PredictorComparison", "PredictorLeadLag", "PredictorRanking",
    "PredictorSpec", "PredictorStat", "Sensitivity", "SensitivityRow", "TREND_TEXT", "Trend",
    "aligned", "compare_predictors", "correlation_interval", "final_tasks_interval",
    "jackknife_interval", "jackknife_p", "last_tasks_means", "lead_lag", "log_positive",
    "mean_interval", "method_contrast", "metric_series", "onset", "onset_order", "paired_contrast",
    "partial_spearman", "predictor_lead_lag", "sensitivity", "spearman", "t_interval",
]
