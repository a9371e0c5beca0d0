"""Every bad input ends in a clear IngestError (and, through the CLI, exit code 2), never another exception.

Plain regressions for the cases of issue 18 come first; the property-based tests after them generate long-format
files with random damage. Most examples run against the pure ``prepare`` (fast); a few go through the CLI and the
ingest flow, which cost a Prefect flow run each. ``make test-fuzz`` runs the ``long`` hypothesis profile.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from prefect.logging.handlers import PrefectConsoleHandler

from seqcast.app.cli import main as cli  # the one place these tests name the CLI
from seqcast.data.ingest import IngestError, IngestParams
from seqcast.data.scaling import Scaler
from seqcast.flows.ingest import ingest
from seqcast.storage import Store
from seqcast.tasks.ingest import prepare
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


# ---- property-based: random damage ends in a valid dataset or an IngestError --------------------------------------

FUZZ_WINDOW = {"n_steps": 4, "horizon": 2}  # short windows: most undamaged generated series can hold some
FUZZ_COLUMNS = {"id_column": "sid", "time_column": "ts", "value_column": "y"}
VALUE_DAMAGE = [np.nan, np.inf, -np.inf, 1e308, -3.5e38, 3.4e38, 1e-300, -1e-40, 0.0, "abc", "", "1e309", True]
TIMESTAMP_DAMAGE = ["2024-02-31", "not a date", "", "2200-01-01", "1970-01-01 00:00:00.000000001", 17,
                    "2024-03-01+05:00"]
DAMAGES = ["drop column", "extra column", "rename column", "shuffle", "duplicate row", "value", "timestamp",
           "off grid", "value type", "timestamp type", "id", "scale", "constant", "no rows", "single row series"]


def finite_windows(prepared) -> None:
    """A dataset's every stored window, the scaled windows the model sees, and the latest inputs are finite."""
    assert prepared.spec["n_series"] >= 1 and len(prepared.splits["train"]) > 0
    for part, windows in prepared.splits.items():
        assert windows.dtype == np.float32 and np.isfinite(windows).all(), part
        scaled = prepared.scaler.transform(windows, prepared.extra[part]["series_id"])
        assert np.isfinite(scaled).all(), part
    for latest in prepared.series.column("latest").to_pylist():
        assert latest is None or np.isfinite(latest).all()
    # padding fills inputs only: every target lies on or after its series' first observed timestamp
    first = prepared.series.to_pandas().set_index("series_id")["first_timestamp"]
    for part, extra in prepared.extra.items():
        starts = pd.Series(extra["target_start"], dtype="datetime64[ns]")
        assert (starts.to_numpy() >= first.reindex(extra["series_id"]).to_numpy()).all(), part


@st.composite
def damaged_frames(draw) -> tuple[pd.DataFrame, list[str]]:
    """A long frame of 1-3 regular series, then up to three kinds of damage."""
    freq = draw(st.sampled_from(["D", "h", "MS", "W-MON", "15min"]))
    start = draw(st.sampled_from(["2024-01-01", "2023-06-05 06:00", "1999-12-31"]))
    frames = []
    for i in range(draw(st.integers(1, 3))):
        length = draw(st.sampled_from([3, 12, 30, 40, 40, 40]))
        level = draw(st.sampled_from([1.0, 10.0, -5.0, 1e-30, 1e30, 1e37]))
        t = np.arange(length)
        values = level * (1 + 0.3 * np.sin(2 * np.pi * t / 7 + i)) + level * 0.01 * t
        frames.append(pd.DataFrame({"sid": f"s{i}", "ts": pd.date_range(start, periods=length, freq=freq)
                                    .strftime("%Y-%m-%d %H:%M:%S"), "y": values}))
    frame = pd.concat(frames, ignore_index=True).astype({"sid": object, "ts": object, "y": object})
    # a third of the files stay whole, so valid datasets get checked as often as refusals
    damage = draw(st.one_of(st.just([]), st.lists(st.sampled_from(DAMAGES), min_size=1, max_size=3)))
    for kind in damage:
        if len(frame) == 0:
            break
        row = draw(st.integers(0, len(frame) - 1))
        column = draw(st.sampled_from(["sid", "ts", "y"]))
        if kind == "drop column" and column in frame:
            frame = frame.drop(columns=column)
        elif kind == "extra column":
            frame["extra"] = draw(st.sampled_from([1, "x", None]))
        elif kind == "rename column" and column in frame:
            frame = frame.rename(columns={column: column.upper()})
        elif kind == "shuffle":
            frame = frame.sample(frac=1, random_state=draw(st.integers(0, 9))).reset_index(drop=True)
        elif kind == "duplicate row":
            frame = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
        elif kind == "value" and "y" in frame:
            frame.loc[row, "y"] = draw(st.sampled_from(VALUE_DAMAGE))
        elif kind == "timestamp" and "ts" in frame:
            frame.loc[row, "ts"] = draw(st.sampled_from(TIMESTAMP_DAMAGE))
        elif kind == "off grid" and "ts" in frame:
            stamp = pd.to_datetime(frame.loc[row, "ts"], errors="coerce")
            if stamp is not pd.NaT:
                frame.loc[row, "ts"] = str(stamp + pd.Timedelta(draw(st.sampled_from(["1min", "1ns", "36h"]))))
        elif kind == "value type" and "y" in frame:
            numbers = pd.to_numeric(frame["y"], errors="coerce")
            frame["y"] = numbers > numbers.median() if draw(st.booleans()) else numbers.astype(str)
        elif kind == "timestamp type" and "ts" in frame:
            frame["ts"] = np.arange(len(frame)) * draw(st.sampled_from([1, 86_400, 0.5]))
        elif kind == "id" and "sid" in frame:
            frame.loc[row, "sid"] = draw(st.sampled_from(["", None, 7, "s0", "ş\u00e9ries"]))
        elif kind == "scale" and "y" in frame:
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # inf and 0 are wanted here
                frame["y"] = pd.to_numeric(frame["y"], errors="coerce") * float(f"1e{draw(st.integers(-330, 330))}")
        elif kind == "constant" and "y" in frame:
            frame["y"] = draw(st.sampled_from([0.0, 1e-38, 3e38, -2.0]))
        elif kind == "no rows":
            frame = frame.iloc[:0]
        elif kind == "single row series" and "sid" in frame:
            frame.loc[row, "sid"] = "lonely"
        frame = frame.astype(object)  # any cell may take any damage next
    return frame, damage


def write_damaged(frame: pd.DataFrame, folder: Path, suffix: str, typed: bool) -> Path:
    """Write the frame as CSV, or as Parquet with each column typed by its cells where they share a type."""
    path = folder / f"fuzz{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
        return path
    if typed:
        frame = frame.infer_objects()
    try:
        frame.to_parquet(path, index=False)
    except (pa.ArrowException, ValueError, TypeError):  # cells of several types: Parquet holds them as text
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(path, index=False)
    return path


def damage_bytes(path: Path, data: st.DataObject) -> None:
    """Maybe overwrite some bytes with ones that are not UTF-8 (CSV) or corrupt the file, or truncate it."""
    raw = path.read_bytes()
    kind = data.draw(st.sampled_from(["none", "none", "none", "none", "bytes", "truncate"]), label="byte damage")
    if kind == "none" or not raw:
        return
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    if kind == "bytes":
        junk = data.draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\x00", b"\xef\xbb", b"\"", b",,"]))
        path.write_bytes(raw[:at] + junk + raw[at + 1:])
    else:
        path.write_bytes(raw[:at])


fuzz_params = st.fixed_dictionaries({
    "missing": st.sampled_from(["fail", "drop", "interpolate"]),
    "scaling": st.sampled_from(["series", "global", "none"]),
    "freq": st.sampled_from([None, None, None, None, None, "D", "h"]),
    "split": st.sampled_from(["fractions", "last-horizon"]),
    "short_series": st.sampled_from(["fail", "pad"]),
})


@given(damaged=damaged_frames(), suffix=st.sampled_from([".csv", ".parquet"]), typed=st.booleans(),
       options=fuzz_params, data=st.data())
def test_damaged_files_give_a_dataset_or_an_ingest_error(damaged, suffix, typed, options, data):
    frame, damage = damaged
    with tempfile.TemporaryDirectory() as folder:
        path = write_damaged(frame, Path(folder), suffix, typed)
        damage_bytes(path, data)
        try:
            prepared = prepare(IngestParams(source=str(path), **FUZZ_COLUMNS, **FUZZ_WINDOW, **options))
        except IngestError as exc:
            assert str(exc).strip()
            event("refused")
            return
    event("dataset")
    finite_windows(prepared)


@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
       header=st.sampled_from([b"", b"sid,ts,y\n", b"sid,ts,y\ns0,2024-01-01,1\n"]))
def test_arbitrary_bytes_as_csv_give_an_ingest_error_or_a_dataset(content, header):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bytes.csv"
        path.write_bytes(header + content)
        try:
            prepared = prepare(IngestParams(source=str(path), **FUZZ_COLUMNS, **FUZZ_WINDOW))
        except IngestError as exc:
            assert str(exc).strip()
            return
    finite_windows(prepared)


@contextmanager
def fresh_home() -> Iterator[Path]:
    """A SEQCAST_HOME of its own for one example (the function-scoped ``home`` fixture spans every example)."""
    before = os.environ.get("SEQCAST_HOME")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["SEQCAST_HOME"] = str(Path(folder) / "home")
        try:
            yield Path(folder) / "home"
        finally:
            if before is None:
                del os.environ["SEQCAST_HOME"]
            else:
                os.environ["SEQCAST_HOME"] = before


@pytest.mark.usefixtures("prefect_harness")
@settings(max_examples=max(1, settings().max_examples // 10))  # each runs a Prefect flow
@given(damaged=damaged_frames(), suffix=st.sampled_from([".csv", ".parquet"]), options=fuzz_params,
       data=st.data())
def test_damaged_files_through_the_cli_exit_0_with_a_dataset_or_2_leaving_nothing(damaged, suffix, options, data):
    frame, damage = damaged
    with tempfile.TemporaryDirectory() as folder, fresh_home() as home:
        path = write_damaged(frame, Path(folder), suffix, typed=True)
        damage_bytes(path, data)
        argv = ["ingest", str(path), "--id-column", "sid", "--time-column", "ts", "--value-column", "y",
                "--n-steps", "4", "--horizon", "2", "--missing", options["missing"], "--scaling", options["scaling"]]
        err, out = io.StringIO(), io.StringIO()
        with redirect_stderr(err), redirect_stdout(out):
            code = cli(argv)
        if code == 2:
            event("refused")
            assert err.getvalue().startswith("seqcast: error: ") and "Traceback" not in err.getvalue()
            assert not (home / "datasets").exists() and not (home / "records").exists()
            return
        assert code == 0, err.getvalue()
        event("dataset")
        (folder,) = (home / "datasets").iterdir()
        datasets = Store(home).datasets
        ref = datasets.find(folder.name)
        scaler = Scaler.from_dict(ref.manifest["scaling"])
        for part in ("train", "valid", "test"):
            raw, series_ids = datasets.read_windows(ref, part)
            assert np.isfinite(raw).all() and np.isfinite(scaler.transform(raw, series_ids)).all()
