"""Table ↔ pandas: typed tidy columns and a lossless round trip."""

import numpy as np
import pandas as pd
import pytest

from ntkplast.errors import NtkplastError
from ntkplast.table import COLUMNS, Table

ROWS = [(0, 0, 0, "all", "ntk_trace", 1.5), (1, 5, 0, "all", "ntk_trace", 2.0),
        (1, 5, 0, "layer0", "chi", float("nan")), (2, 9, 1, "layer1", "chi", -0.25)]


def test_to_pandas_is_tidy_and_typed():
    frame = Table.from_rows(ROWS).to_pandas()
    assert tuple(frame.columns) == COLUMNS and len(frame) == len(ROWS)
    assert [str(frame[c].dtype) for c in COLUMNS] == [
        "int64", "int64", "int64", "category", "category", "float64"]
    assert frame["value"].isna().tolist() == [False, False, True, False]
    # the rows, read back through pandas, are the ones put in (NaN compared apart)
    got = [tuple(r) for r in frame.itertuples(index=False)]
    for g, r in zip(got, ROWS):
        assert g[:5] == r[:5] and (g[5] == r[5] or (np.isnan(g[5]) and np.isnan(r[5])))
    wide = frame.pivot_table(index="checkpoint", columns="metric", values="value",
                             observed=True)
    assert wide.loc[1, "ntk_trace"] == 2.0


def test_from_pandas_round_trips_through_pandas_and_csv(tmp_path):
    table = Table.from_rows(ROWS)
    table.write(tmp_path)
    # the frame itself, and the CSV file read the way a pandas user reads it
    for frame in (table.to_pandas(), pd.read_csv(tmp_path / "metrics.csv")):
        back = Table.from_pandas(frame)
        for c in COLUMNS:  # (NaN == NaN here)
            np.testing.assert_array_equal(back.columns[c], table.columns[c])
            assert back.columns[c].dtype == table.columns[c].dtype


def test_from_pandas_refuses_non_tidy_frames():
    frame = Table.from_rows(ROWS).to_pandas()
    with pytest.raises(NtkplastError, match="unexpected column"):
        Table.from_pandas(frame.assign(seed=0))
    with pytest.raises(NtkplastError, match="missing column"):
        Table.from_pandas(frame.drop(columns="task"))
    with pytest.raises(NtkplastError, match="does not convert"):
        Table.from_pandas(frame.assign(step="five"))
