"""Every bad input ends in a clear IngestError (and, through the CLI, exit code 2), never another exception.

Plain regressions for the cases of issue 18 come first; the property-based tests after them generate long-format
files with random damage. Most examples run against the pure ``prepare`` (fast); a few go through the CLI and the
ingest flow, which cost a Prefect flow run each. ``make test-fuzz`` runs the ``long`` hypothesis profile.
"""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pandas as pd
import pytest
from prefect.logging.handlers import PrefectConsoleHandler

from flows.ingest import ingest
from seqcast.cli import main as cli  # the one place these tests name the CLI
from seqcast.ingest import IngestError, IngestParams, prepare
from tests.series_files import COLUMNS, daily_series, write

WINDOW = {"n_steps": 14, "horizon": 7}
CLI_OPTIONS = ["--id-column", "store", "--time-column", "day", "--value-column", "sales", "--n-steps", "14",
               "--horizon", "7"]


def params(path, **over) -> IngestParams:
    return IngestParams(**{"source": str(path), **COLUMNS, **WINDOW, **over})


def refused_by_cli(path, capsys, *options: str) -> str:
    """Run ``seqcast ingest`` on a bad file: exit code 2, one ``seqcast: error:`` message, no traceback."""
    assert cli(["ingest", str(path), *CLI_OPTIONS, *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqcast: error: ") and "Traceback" not in err
    return err


def with_value(frame: pd.DataFrame, row: int, value) -> pd.DataFrame:
    """The frame with ``value`` (a number or its text) in 0-based ``row`` of the sales column."""
    frame = frame.copy()
    frame["sales"] = frame["sales"].astype(object)
    frame.loc[row, "sales"] = value
    return frame


# ---- regressions: the cases of issue 18 ---------------------------------------------------------------------------

@pytest.mark.usefixtures("prefect_harness")
def test_header_only_csv_is_refused_before_anything_is_written(home, tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("store,day,sales\n")
    with pytest.raises(IngestError, match=r"empty\.csv has no data rows"):
        prepare(params(path))
    with pytest.raises(IngestError, match=r"empty\.csv has no data rows"):
        ingest(source=str(path), **COLUMNS, **WINDOW)
    assert "empty.csv has no data rows" in refused_by_cli(path, capsys)
    assert not home.exists()



@pytest.mark.usefixtures("prefect_harness")
def test_a_refusal_reaches_the_console_without_a_traceback(home, tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("store,day,sales\n")
    # Prefect's console handler writes to the stderr of its set-up time, which no capture fixture sees
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    console, handler.console.file = handler.console.file, io.StringIO()
    try:
        assert cli(["ingest", str(path), *CLI_OPTIONS]) == 2
        prefect_lines = handler.console.file.getvalue()
    finally:
        handler.console.file = console
    # Prefect's own lines about the failed run stay, as one line each
    assert "Task run failed with exception: IngestError('empty.csv has no data rows" in prefect_lines
    assert "Traceback" not in prefect_lines
    assert capsys.readouterr().err.startswith("seqcast: error: empty.csv has no data rows")

def test_empty_parquet_is_refused(tmp_path):
    path = write(daily_series().iloc[:0], tmp_path / "empty.parquet")
    with pytest.raises(IngestError, match=r"empty\.parquet has no data rows"):
        prepare(params(path))


@pytest.mark.parametrize("value, shown", [("inf", "inf"), ("-inf", "-inf"), ("Infinity", "inf")])
def test_infinite_values_are_refused_naming_series_and_row(tmp_path, value, shown):
    path = write(with_value(daily_series(), 125, value), tmp_path / "inf.csv")
    with pytest.raises(IngestError, match=rf"series 's01', row 126: value {shown} is not finite"):
        prepare(params(path, missing="drop"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("value", [1e308, -1e39, 3.5e38])
def test_values_beyond_float32_are_refused(tmp_path, suffix, value):
    path = write(with_value(daily_series(), 5, value).astype({"sales": "float64"}), tmp_path / f"big{suffix}")
    message = f"series 's00', row 6: value {value:g} does not fit float32 (largest magnitude 3.40282e+38)"
    with pytest.raises(IngestError, match=re.escape(message)):
        prepare(params(path))


def test_value_beyond_float64_is_refused_as_not_finite(tmp_path):
    path = write(with_value(daily_series(), 5, "1e309"), tmp_path / "big.csv")
    with pytest.raises(IngestError, match=r"series 's00', row 6: value '1e309' is not finite"):
        prepare(params(path))


def test_values_too_tiny_for_float32_are_refused(tmp_path):
    frame = daily_series()
    frame["sales"] *= 1e-300  # stored as float32 they would all be 0
    with pytest.raises(IngestError, match=r"series 's00', row 1: value 1\.\d+e-299 is too close to 0 for float32"):
        prepare(params(write(frame, tmp_path / "tiny.csv")))


@pytest.mark.usefixtures("prefect_harness")
def test_huge_values_leave_no_dataset_through_the_cli(home, tmp_path, capsys):
    frame = daily_series()
    frame["sales"] *= 1e200  # the scaler's std would overflow to inf
    err = refused_by_cli(write(frame, tmp_path / "huge.csv"), capsys)
    assert re.search(r"series 's00', row 1: value \S+e\+20\d does not fit float32", err)
    assert not home.exists()


@pytest.mark.usefixtures("prefect_harness")
def test_non_utf8_file_is_refused_naming_file_line_and_byte(home, tmp_path, capsys):
    path = write(daily_series(), tmp_path / "latin1.csv")
    text = path.read_bytes()
    offset = text.index(b"s01")
    path.write_bytes(text[:offset] + b"s\xe901" + text[offset + 3:])  # 's\xe901' is s01 with an é in Latin-1
    line = text[:offset].count(b"\n") + 1
    message = rf"latin1\.csv is not UTF-8 text: byte 0xe9 at offset {offset + 1} \(line {line}\)"
    with pytest.raises(IngestError, match=message):
        prepare(params(path))
    assert f"at offset {offset + 1} (line {line})" in refused_by_cli(path, capsys)
    assert not home.exists()


def test_utf8_with_byte_order_mark_still_reads(tmp_path):
    path = write(daily_series(), tmp_path / "bom.csv")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert prepare(params(path)).spec["n_series"] == 3


@pytest.mark.parametrize("column, convert, message", [
    ("sales", lambda s: s > 12, r"value column 'sales' holds bool, not numbers"),
    ("sales", lambda s: s.astype(str), r"value column 'sales' holds string, not numbers"),
    ("day", lambda s: np.arange(len(s)), r"timestamp column 'day' holds int64, neither timestamps nor text"),
    ("day", lambda s: np.linspace(0, 1, len(s)), r"timestamp column 'day' holds double, neither timestamps nor "
                                                  r"text"),
    ("store", lambda s: [[1]] * len(s), r"series id column 'store' holds list<element: int64>, not text or "
                                        r"whole numbers"),
])
def test_parquet_columns_of_the_wrong_type_are_refused(tmp_path, column, convert, message):
    frame = daily_series()
    frame[column] = convert(frame[column])
    with pytest.raises(IngestError, match=rf"wrong\.parquet: {message}"):
        prepare(params(write(frame, tmp_path / "wrong.parquet")))


def test_parquet_timestamps_and_dates_still_read(tmp_path):
    frame = daily_series()
    frame["day"] = pd.to_datetime(frame["day"])
    as_timestamps = prepare(params(write(frame, tmp_path / "ts.parquet")))
    frame["day"] = frame["day"].dt.date
    as_dates = prepare(params(write(frame, tmp_path / "dates.parquet")))
    assert as_timestamps.dataset_id == as_dates.dataset_id



def test_timestamps_far_apart_on_a_microsecond_step_are_refused_not_built_into_a_grid(tmp_path):
    frame = pd.DataFrame({"store": "s00", "sales": np.arange(25.0),
                          "day": [*pd.date_range("2024-01-01", periods=24, freq="us").astype(str), "2024-01-02"]})
    with pytest.raises(IngestError, match=r"series 's00': its 'us' grid from 2024-01-01 00:00:00 \(row 1\) to "
                                          r"2024-01-02 00:00:00 \(row 25\) would have about 8\.64e\+10 steps"):
        prepare(params(write(frame, tmp_path / "us.csv")))


@pytest.mark.filterwarnings("error::FutureWarning")  # pandas announces an error where it warns today
def test_timestamps_parsed_on_a_second_pass_keep_one_time_unit(tmp_path):
    # the first row fixes the format; a nanosecond timestamp after it is parsed on the per-cell second pass
    path = tmp_path / "units.csv"
    path.write_text("store,day,sales\ns0,2024-01-01 00:00:00,1.0\ns0,1970-01-01 00:00:00.000000001,1.2\n"
                    "s0,2024-01-03 00:00:00,1.3\n")
    with pytest.raises(IngestError, match=r"series 's0', row 1: timestamp 2024-01-01 00:00:00 is off the series' "
                                          r"regular '2D' grid"):
        prepare(params(path, n_steps=2, horizon=1))
