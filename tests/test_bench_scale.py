"""bench/scale.py's panel generator and sizes: copies of M3 monthly written one at a time, sizes by name."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.scale import M3_MONTHLY, copies_of, first_value, make_panel


def test_sizes_name_copies_of_m3_monthly():
    assert [copies_of(size) for size in ("30k", "100k", "300k", "1M")] == [20, 70, 210, 700]
    assert copies_of("5000") == round(5000 / M3_MONTHLY) and copies_of("2.5k") == 2 and copies_of("10") == 1
    with pytest.raises(ValueError, match="size 'lots' is not a number of series such as 30k, 1M or 5000"):
        copies_of("lots")


def test_the_panel_is_written_one_copy_per_row_group_and_is_the_same_for_a_seed(tmp_path):
    n_series, n_rows = make_panel(2, 0, tmp_path / "a.parquet")
    file = pq.ParquetFile(tmp_path / "a.parquet")
    assert n_series == 2 * M3_MONTHLY and file.metadata.num_rows == n_rows
    assert file.metadata.num_row_groups == 2  # a copy at a time: memory for one copy, whatever the panel's size
    first, second = (file.read_row_group(i) for i in range(2))
    assert first.column("unique_id")[0].as_py().endswith("_0") and second.column("unique_id")[0].as_py().endswith("_1")
    assert len(pq.read_table(tmp_path / "a.parquet").column("unique_id").unique()) == n_series
    make_panel(2, 0, tmp_path / "b.parquet")
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    levels = first.column("y").to_numpy() / second.column("y").to_numpy()
    assert not np.allclose(levels, 1)  # each copy its own level and noise


def test_the_count_is_read_from_what_seqcast_sql_prints():
    assert first_value('[\n {\n  "count_star()": 25704\n }\n]\n') == 25704
    assert first_value("Error: no table predictions\n") is None and first_value("[]") is None
