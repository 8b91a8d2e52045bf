"""The :class:`Table` itself: :data:`COLUMNS` as numpy arrays (described in :mod:`ntkplast.table`).

Queries in numpy (``select``, ``series``), pandas both ways (``to_pandas``, ``from_pandas``),
and its files: ``<stem>.csv`` and ``<stem>.jsonl`` written chunk by chunk by
:func:`table_writer`, read back by :meth:`Table.read_csv` or, parsed on first use, by
:func:`stored_table`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkplast.errors import NtkplastError
from ntkplast.io.files import atomic_file
from ntkplast.io.safe_read import TABLE_BYTES, open_regular

__all__ = ["COLUMNS", "Table", "stored_table", "table_writer"]

COLUMNS = ("checkpoint", "step", "task", "layer", "metric", "value")
_DTYPES = {"checkpoint": np.int64, "step": np.int64, "task": np.int64, "layer": str,
           "metric": str, "value": np.float64}


class Table:
    """Tidy metrics (:mod:`ntkplast.table`). ``table.columns[name]`` is a numpy array."""

    def __init__(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise NtkplastError(f"table: missing column(s) {missing}; expected {list(COLUMNS)}")
        self.columns = {c: np.asarray(columns[c], dtype=_DTYPES[c]) for c in COLUMNS}
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise NtkplastError(f"table: columns differ in length {sorted(lengths)}")

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> Table:
        """Build from ``(checkpoint, step, task, layer, metric, value)`` tuples.

        Examples:
          Rows are ``(checkpoint, step, task, layer, metric, value)``:

          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> table
          Table(4 rows, 2 checkpoints, metrics=['ntk_trace', 'test_accuracy'])
          >>> table.columns["value"].dtype, table.columns["step"].tolist()
          (dtype('float64'), [0, 0, 100, 100])
        """
        rows = list(rows)
        return cls({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})

    @classmethod
    def concat(cls, tables: Iterable[Table]) -> Table:
        """Stack tables row-wise.

        Examples:
          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> len(Table.concat([table, table])), len(Table.concat([]))
          (8, 0)
        """
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
        """The rows as tuples of Python scalars.

        Examples:
          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> table.rows()[0]
          (0, 0, 0, 'all', 'ntk_trace', 4.0)
        """
        return list(zip(*(self.columns[c].tolist() for c in COLUMNS)))

    def select(self, metric: str | None = None, layer: str | None = None) -> Table:
        """Rows with the given metric and/or layer.

        Examples:
          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> len(table.select(metric="ntk_trace")), len(table.select("ntk_trace", layer="all"))
          (3, 2)
        """
        keep = np.ones(len(self), bool)
        if metric is not None:
            keep &= self.columns["metric"] == metric
        if layer is not None:
            keep &= self.columns["layer"] == layer
        return Table({c: v[keep] for c, v in self.columns.items()})

    def series(self, metric: str, layer: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """``(step, value)`` of one metric over checkpoints, sorted by checkpoint.

        Examples:
          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> steps, values = table.series("ntk_trace")            # layer "all"
          >>> steps.tolist(), values.tolist()
          ([0, 100], [4.0, 2.0])
        """
        t = self.select(metric, layer)
        order = np.argsort(t.columns["checkpoint"], kind="stable")
        return t.columns["step"][order], t.columns["value"][order]

    def to_pandas(self) -> Any:
        """A tidy pandas DataFrame: one row per (checkpoint, layer, metric), typed columns.

        ``checkpoint``, ``step``, ``task``: int64; ``layer``, ``metric``: categorical (few
        distinct names, so groupby/pivot are cheap); ``value``: float64 (NaN kept).
        ``Table.from_pandas(table.to_pandas()) == table``.

        Examples:
          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> frame = table.to_pandas()
          >>> frame.shape, str(frame["metric"].dtype)
          ((4, 6), 'category')
          >>> Table.from_pandas(frame) == table
          True
        """
        pd = _pandas("to_pandas")
        frame = pd.DataFrame({c: self.columns[c] for c in COLUMNS})
        return frame.astype({"layer": "category", "metric": "category"})

    @classmethod
    def from_pandas(cls, frame: Any) -> Table:
        """A table from a DataFrame with the :data:`COLUMNS` (extra columns are an error, so a
        pivoted or aggregated frame is not silently taken as tidy rows)."""
        _pandas("from_pandas")
        extra = [c for c in frame.columns if c not in COLUMNS]
        if extra:
            raise NtkplastError(f"from_pandas: unexpected column(s) {extra}; a tidy table has "
                                f"exactly {list(COLUMNS)} (select them first)")
        try:
            return cls({c: frame[c].astype(object if _DTYPES[c] is str else _DTYPES[c])
                        .to_numpy() for c in COLUMNS if c in frame.columns})
        except (TypeError, ValueError) as e:
            raise NtkplastError(f"from_pandas: a column does not convert to its type "
                                f"({type(e).__name__}: {e})") from None

    def to_csv_bytes(self, header: bool = True) -> bytes:
        """CSV text (header row unless ``header=False``, then one line per row; floats with full
        precision).

        Examples:
          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> print(table.to_csv_bytes().decode().splitlines()[:2])
          ['checkpoint,step,task,layer,metric,value', '0,0,0,all,ntk_trace,4.0']
        """
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(COLUMNS)
        for r in self.rows():
            w.writerow([*r[:5], repr(float(r[5]))])
        return buf.getvalue().encode("utf-8")

    def to_jsonl_bytes(self) -> bytes:
        """JSON lines, one object per row (NaN/Inf written as null).

        Examples:
          >>> from ntkplast.table import Table
          >>> data = Table.from_rows([(0, 0, 0, "all", "loss", float("nan"))]).to_jsonl_bytes()
          >>> print(data.decode().strip())                  # NaN as null
          {"checkpoint": 0, "step": 0, "task": 0, "layer": "all", "metric": "loss", "value": null}
        """
        lines = []
        for r in self.rows():
            d = dict(zip(COLUMNS, r))
            if not np.isfinite(d["value"]):
                d["value"] = None
            lines.append(json.dumps(d))
        return ("\n".join(lines) + "\n" if lines else "").encode("utf-8")

    def write(self, folder: str | os.PathLike, stem: str = "metrics") -> None:
        """Write ``<stem>.csv`` and ``<stem>.jsonl`` into ``folder`` atomically
        (:func:`table_writer` with one chunk).

        Examples:
          Written and read back in a temporary folder:

          >>> from ntkplast.table import Table
          >>> table = Table.from_rows([
          ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
          ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
          >>> import os, tempfile
          >>> with tempfile.TemporaryDirectory() as folder:
          ...     table.write(folder)
          ...     names = sorted(os.listdir(folder))
          ...     back = Table.read_csv(os.path.join(folder, "metrics.csv"))
          >>> names, back == table
          (['metrics.csv', 'metrics.jsonl'], True)
        """
        with table_writer(folder, stem) as add:
            add(self)

    @classmethod
    def read_csv(cls, path: str | os.PathLike | io.BytesIO, *,
                 within: str | os.PathLike | None = None) -> Table:
        """Read a table written by :meth:`write` (a regular file of at most
        :data:`ntkplast.io.safe_read.TABLE_BYTES`; with ``within``, inside that folder; or the
        file's bytes already read, as ``io.BytesIO``)."""
        try:
            with contextlib.ExitStack() as stack:
                raw = path if isinstance(path, io.BytesIO) else stack.enter_context(
                    open_regular(path, limit=TABLE_BYTES, within=within))
                f = stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
                reader = csv.reader(f)
                header = next(reader)
                if tuple(header) != COLUMNS:
                    raise NtkplastError(f"{path}: header {header} is not {list(COLUMNS)}")
                rows = [(int(a), int(b), int(c), d, e, float(v)) for a, b, c, d, e, v in reader]
            return cls.from_rows(rows)
        except NtkplastError:
            raise
        except (OSError, ValueError, StopIteration, UnicodeDecodeError, csv.Error,
                OverflowError) as e:  # OverflowError: an integer beyond int64
            raise NtkplastError(f"{path} is not a metrics table written by ntkplast "
                                f"({type(e).__name__}: {str(e)[:200]})") from None


class _StoredTable(Table):
    """A :class:`Table` kept as the CSV text it was written as, parsed on first use
    (:func:`stored_table`)."""

    def __init__(self, text: bytes, rows: int) -> None:  # columns: parsed on first use
        self._text, self._rows = text, rows
        self._columns: dict[str, np.ndarray] | None = None

    @property
    def columns(self) -> dict[str, np.ndarray]:
        if self._columns is None:
            self._columns = Table.read_csv(io.BytesIO(self._text)).columns
            self._text = b""
        return self._columns

    def __len__(self) -> int:
        return self._rows

    def __reduce__(self) -> tuple[type[Table], tuple[dict[str, np.ndarray]]]:
        return Table, (self.columns,)  # pickled (sent to another process) as a plain Table


def stored_table(path: str | os.PathLike, rows: int) -> Table:
    """The table of ``rows`` rows in the CSV at ``path`` (written by :func:`table_writer`): its
    bytes are read now (≈ 60 bytes a row, a snapshot that later writes to ``path`` do not
    change) and parsed into columns on first use (``len`` parses nothing), so a caller that
    never looks at the rows never builds them. Pickles as a plain :class:`Table`."""
    with open_regular(path, limit=TABLE_BYTES) as f:
        return _StoredTable(f.read(), rows)


@contextlib.contextmanager
def table_writer(folder: str | os.PathLike,
                 stem: str = "metrics") -> Iterator[Callable[[Table], None]]:
    """Stream a table into ``<stem>.csv`` and ``<stem>.jsonl`` in ``folder``: ``add(chunk)``.

    Each chunk goes to disk as it is added (memory holds one chunk); the files are byte for byte
    ``Table.concat(chunks)``'s (:meth:`Table.to_csv_bytes`, :meth:`Table.to_jsonl_bytes`) and
    appear under their names only when the block exits without an error
    (:func:`ntkplast.io.files.atomic_file`: an interrupted writer leaves any previous version).

    Examples:
      >>> from ntkplast.table import Table
      >>> table = Table.from_rows([
      ...     (0, 0, 0, "all", "ntk_trace", 4.0), (0, 0, 0, "layer0", "ntk_trace", 3.0),
      ...     (1, 100, 0, "all", "ntk_trace", 2.0), (1, 100, 0, "all", "test_accuracy", 0.9)])
      >>> import os, tempfile
      >>> from ntkplast.table import stored_table, table_writer
      >>> with tempfile.TemporaryDirectory() as folder:
      ...     with table_writer(folder) as add:       # one chunk per checkpoint, say
      ...         add(table.select(metric="ntk_trace"))
      ...         add(table.select(metric="test_accuracy"))
      ...     back = stored_table(os.path.join(folder, "metrics.csv"), rows=4)
      ...     print(len(back), back.rows()[-1])
      4 (1, 100, 0, 'all', 'test_accuracy', 0.9)
    """
    folder = Path(folder)
    with atomic_file(folder / f"{stem}.csv") as csv_file, \
            atomic_file(folder / f"{stem}.jsonl") as jsonl_file:
        csv_file.write(Table.from_rows([]).to_csv_bytes())  # the header

        def add(chunk: Table) -> None:
            csv_file.write(chunk.to_csv_bytes(header=False))
            jsonl_file.write(chunk.to_jsonl_bytes())
        yield add


def _pandas(what: str) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise NtkplastError(f"{what} needs pandas (pip install pandas); the numpy columns are "
                            f"in table.columns") from None
    return pd

