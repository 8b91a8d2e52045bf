"""A tidy metrics table: one row per (checkpoint, layer, metric), as plain numpy columns.

Columns: ``checkpoint`` (index in the run), ``step``, ``task``, ``layer`` (``"all"`` for
whole-network metrics, ``"layer<l>"`` for weight layer l), ``metric`` (a name from
:mod:`ntkplast.analysis`), ``value`` (float). ``to_pandas()`` gives a DataFrame when pandas is
installed; without it, ``select``/``series`` cover the common queries.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.files import atomic_write_bytes

COLUMNS = ("checkpoint", "step", "task", "layer", "metric", "value")
TASK_END_METRICS = ("test_accuracy", "test_mse")
"""Metrics only task-end checkpoints carry (classification, regression): they mark task ends."""
_DTYPES = {"checkpoint": np.int64, "step": np.int64, "task": np.int64, "layer": str,
           "metric": str, "value": np.float64}


class Table:
    """Tidy metrics (module docstring). ``table.columns[name]`` is a numpy array."""

    def __init__(self, columns: Mapping[str, Sequence[Any] | np.ndarray]):
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise NtkplastError(f"table: missing column(s) {missing}; expected {list(COLUMNS)}")
        self.columns = {c: np.asarray(columns[c], dtype=_DTYPES[c]) for c in COLUMNS}
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise NtkplastError(f"table: columns differ in length {sorted(lengths)}")

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> Table:
        """Build from ``(checkpoint, step, task, layer, metric, value)`` tuples."""
        rows = list(rows)
        return cls({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})

    @classmethod
    def concat(cls, tables: Iterable[Table]) -> Table:
        """Stack tables row-wise."""
        tables = list(tables)
        if not tables:
            return cls.from_rows([])
        return cls({c: np.concatenate([t.columns[c] for t in tables]) for c in COLUMNS})

    def __len__(self) -> int:
        return len(self.columns["value"])

    def __repr__(self) -> str:
        metrics = sorted(set(self.columns["metric"].tolist()))
        return (f"Table({len(self)} rows, {len(set(self.columns['checkpoint'].tolist()))} "
                f"checkpoints, metrics={metrics[:6]}{'…' if len(metrics) > 6 else ''})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Table) and all(
            np.array_equal(self.columns[c], other.columns[c]) for c in COLUMNS)

    def rows(self) -> list[tuple[Any, ...]]:
        """The rows as tuples of Python scalars."""
        return list(zip(*(self.columns[c].tolist() for c in COLUMNS)))

    def select(self, metric: str | None = None, layer: str | None = None) -> Table:
        """Rows with the given metric and/or layer."""
        keep = np.ones(len(self), bool)
        if metric is not None:
            keep &= self.columns["metric"] == metric
        if layer is not None:
            keep &= self.columns["layer"] == layer
        return Table({c: v[keep] for c, v in self.columns.items()})

    def series(self, metric: str, layer: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """``(step, value)`` of one metric over checkpoints, sorted by checkpoint."""
        t = self.select(metric, layer)
        order = np.argsort(t.columns["checkpoint"], kind="stable")
        return t.columns["step"][order], t.columns["value"][order]

    def to_pandas(self) -> Any:
        """A pandas DataFrame with the same columns (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise NtkplastError("to_pandas needs pandas (pip install pandas); the numpy "
                                "columns are in table.columns") from None
        return pd.DataFrame(self.columns)

    def to_csv_bytes(self) -> bytes:
        """CSV text (header row, then one line per row; floats with full precision)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.rows():
            w.writerow([*r[:5], repr(float(r[5]))])
        return buf.getvalue().encode("utf-8")

    def to_jsonl_bytes(self) -> bytes:
        """JSON lines, one object per row (NaN/Inf written as null)."""
        lines = []
        for r in self.rows():
            d = dict(zip(COLUMNS, r))
            if not np.isfinite(d["value"]):
                d["value"] = None
            lines.append(json.dumps(d))
        return ("\n".join(lines) + "\n" if lines else "").encode("utf-8")

    def write(self, folder: str | os.PathLike, stem: str = "metrics") -> None:
        """Write ``<stem>.csv`` and ``<stem>.jsonl`` into ``folder`` atomically."""
        atomic_write_bytes(os.path.join(folder, f"{stem}.csv"), self.to_csv_bytes())
        atomic_write_bytes(os.path.join(folder, f"{stem}.jsonl"), self.to_jsonl_bytes())

    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> Table:
        """Read a table written by :meth:`write`."""
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader)
                if tuple(header) != COLUMNS:
                    raise NtkplastError(f"{path}: header {header} is not {list(COLUMNS)}")
                rows = [(int(a), int(b), int(c), d, e, float(v)) for a, b, c, d, e, v in reader]
        except (OSError, ValueError, StopIteration, UnicodeDecodeError) as e:
            raise NtkplastError(f"{path} is not a metrics table written by ntkplast "
                                f"({type(e).__name__}: {e})") from None
        return cls.from_rows(rows)


def task_end_checkpoints(table: Table) -> np.ndarray:
    """Sorted checkpoints that end a task: those with a finite :data:`TASK_END_METRICS` row."""
    c = table.columns
    mark = np.isin(c["metric"], TASK_END_METRICS) & (c["layer"] == "all") & np.isfinite(c["value"])
    return np.unique(c["checkpoint"][mark])
