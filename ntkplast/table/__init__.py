"""A tidy metrics table: one row per (checkpoint, layer, metric), as plain numpy columns.

Columns: ``checkpoint`` (index in the run), ``step``, ``task``, ``layer`` (``"all"`` for
whole-network metrics, ``"layer<l>"`` for weight layer l), ``metric`` (a name from
:mod:`ntkplast.analysis`), ``value`` (float). ``to_pandas()`` gives a tidy DataFrame with
typed columns (int64 checkpoint/step/task, categorical layer/metric, float64 value) and
``Table.from_pandas`` takes one back; ``select``/``series`` cover the common queries in numpy.
:func:`table_writer` streams a table to disk chunk by chunk, :func:`stored_table` gives back
one written so, read on first use.

Task ends are the checkpoints with a :data:`TASK_END_METRICS` row (:func:`task_end_checkpoints`);
:func:`task_end_values` reads one metric there (one layer, or the strict mean over the layers,
:func:`layer_mean`) and
:func:`per_task` stacks that over runs into a ``seeds × tasks`` array.

===============  ==========================================================================
module           what it holds
===============  ==========================================================================
``tidy``         :class:`Table`, :data:`COLUMNS`, :func:`table_writer`, :func:`stored_table`
``task_ends``    :data:`TASK_END_METRICS` and the task-end readers above
===============  ==========================================================================

Everything is imported from ``ntkplast.table`` itself (``from ntkplast.table import Table``).
"""

from ntkplast.table.task_ends import (
    TASK_END_METRICS,
    layer_mean,
    per_task,
    task_end_checkpoints,
    task_end_values,
)
from ntkplast.table.tidy import COLUMNS, Table, stored_table, table_writer

__all__ = ["COLUMNS", "TASK_END_METRICS", "Table", "layer_mean", "per_task", "stored_table",
           "table_writer", "task_end_checkpoints", "task_end_values"]
