"""Row checks of a long-format input: ids, timestamps and values that parse, fit float32, and appear once.

Rows in messages count from 1, header excluded. Every problem found is reported at once (the first
``MAX_REPORTED``, the rest counted), before anything is written.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MAX_REPORTED = 10
# series are stored and windowed as float32: values must be finite there, and nonzero ones normal (not flushed
# towards 0)
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).smallest_normal)


# The checks run in stages, each only on input that passed the ones before: a refusal lists the problems of the
# earliest stage that found any. A shard of the input is checked alone, so the stage and a sort key per problem
# let the problems of several shards be reported as those of the whole input would be.
CHECK_ROWS, CHECK_DUPLICATES, CHECK_SERIES, CHECK_PARTS, CHECK_SCALING = range(1, 6)


class IngestError(ValueError):
    """Input that cannot become a dataset; the message names the series and the row.

    ``problems`` lists every problem found (the message shows the first ``MAX_REPORTED``), ``keys`` sorts them
    as the whole input's problems are sorted, and ``stage`` is the check that found them (``CHECK_ROWS`` ..).
    """

    def __init__(self, message: str, problems: list[str] | None = None, keys: list | None = None, stage: int = 0):
        super().__init__(message)
        self.problems = [message] if problems is None else problems
        self.keys = keys
        self.stage = stage


def fail(problems: list[str], keys: list | None = None, stage: int = 0) -> None:
    """Raise one IngestError listing the first problems found (the rest are counted); ``keys`` (one per problem)
    and ``stage`` say where they stand among the problems of other shards of the same input."""
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise IngestError("\n  ".join([f"{len(problems)} problem(s) in the input:", *shown]) + more, problems,
                          keys, stage)


def fail_together(errors: list[IngestError]) -> None:
    """Raise the refusal the whole input gets when its shards, checked alone, raised ``errors``: the problems of
    the earliest stage any shard stopped at, from every shard that stopped there, in the whole input's order."""
    if not errors:
        return
    stage = min(e.stage for e in errors)
    found = [(key, problem) for e in errors if e.stage == stage
             for key, problem in zip(e.keys or [()] * len(e.problems), e.problems, strict=True)]
    found.sort(key=lambda pair: pair[0])
    fail([problem for _, problem in found], [key for key, _ in found], stage)


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | (column.astype(str).str.strip().isin(["", "nan", "NaN", "NA", "null", "None"]))


def _overflows(cell) -> bool:
    """Whether a cell pandas cannot parse is a number beyond float64 (e.g. '1e309'), not text."""
    try:
        return math.isinf(float(str(cell).strip()))
    except ValueError:
        return False


def value_range_problems(ids: pd.Series, values: np.ndarray, rows: np.ndarray) -> list[tuple[int, str]]:
    """Values the float32 windows cannot hold: infinite, beyond float32's range, or nonzero below its normal range;
    (row, problem) each.

    NaN is a missing value (the missing policy handles it); these are refused whatever the policy, since
    dropping or interpolating them would silently change the data.
    """
    problems = []
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        infinite, huge = np.isinf(values), (magnitude > FLOAT32_MAX) & np.isfinite(values)
        tiny = (magnitude > 0) & (magnitude < FLOAT32_TINY)
    for i in np.flatnonzero(infinite | huge | tiny):
        where = f"series {ids.iat[i]!r}, row {rows[i]}: value {values[i]:g}"
        if infinite[i]:
            problem = f"{where} is not finite"
        elif huge[i]:
            problem = f"{where} does not fit float32 (largest magnitude {FLOAT32_MAX:g})"
        else:
            problem = (f"{where} is too close to 0 for float32 (smallest normal magnitude {FLOAT32_TINY:g}); "
                       f"rescale the series")
        problems.append((int(rows[i]), problem))
    return problems


def id_codes(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's series id as a code into the ids as text (``str`` of the cell), and whether it is missing.

    The ids of present cells come first, in text order, so codes sort rows by id; a null cell's text (``'None'``,
    ``'nan'``) follows them. Each distinct cell is converted and checked once, however many rows repeat it.
    Returns (rows,) codes, (ids,) texts, (rows,) missing.
    """
    first, distinct = pd.factorize(raw)  # a null cell: -1
    text = pd.Series(np.asarray(distinct, dtype=object), dtype=object).astype(str).to_numpy(dtype=object)
    rank, names = pd.factorize(text, sort=True)
    names = list(np.asarray(names, dtype=object))
    missing = list(_blank(pd.Series(names, dtype=object)).to_numpy(dtype=bool))
    present = first >= 0
    codes = np.empty(len(raw), dtype=np.int64)
    codes[present] = rank[first[present]]
    if not present.all():
        where = {name: i for i, name in enumerate(names)}
        null_text = raw[~present].astype(str).to_numpy(dtype=object)
        for name in dict.fromkeys(null_text):
            if name not in where:
                where[name] = len(names)
                names.append(name)
                missing.append(True)
        codes[~present] = [where[name] for name in null_text]
    return codes, np.array(names, dtype=object), ~present | np.array(missing, dtype=bool)[codes]


def parse_rows(frame: pd.DataFrame, first_timestamp=None) -> pd.DataFrame:
    """Parse ids, timestamps and values; reject missing ids, unparsable timestamps and values, duplicates.

    Returns ``series_id, timestamp, value, row, code`` sorted by series id and time (stable: rows of equal keys
    keep their order); ``code`` numbers the series in id order. ``first_timestamp``: the first timestamp cell of
    the whole input when ``frame`` is a part of it, so that text timestamps parse in the format inferred from it,
    as they do in the whole input.
    """
    problems, keys = [], []
    # ids repeat once per step: each distinct id is checked and converted once
    code, names, bad_id = id_codes(frame["series_id"])
    ids = pd.Series(pd.Categorical.from_codes(code, names), index=frame.index)  # each row's id as text
    problems += [f"row {r}: series id is missing" for r in frame["row"].to_numpy()[bad_id]]
    keys += [(0, int(r)) for r in frame["row"].to_numpy()[bad_id]]

    timestamps = frame["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(timestamps):
        text = timestamps.astype(object)
        if first_timestamp is not None:  # pandas infers the format from the first cell it can parse
            text = pd.concat([pd.Series([first_timestamp], dtype=object), text], ignore_index=True)
        try:
            timestamps = pd.to_datetime(text, errors="coerce")
        except ValueError:  # several UTC offsets (or offsets and none): compare them all in UTC
            timestamps = pd.to_datetime(text, errors="coerce", utc=True)
        # pandas infers one format from the first row; cells in another format get a second, per-cell chance
        retry = timestamps.isna() & ~_blank(text)
        if retry.any():
            utc = timestamps.dt.tz is not None
            timestamps = timestamps.astype("datetime64[us, UTC]" if utc else "datetime64[us]")
            timestamps[retry] = pd.to_datetime(text[retry], format="mixed", errors="coerce", utc=utc) \
                .astype(timestamps.dtype)  # pandas refuses to set values of another time unit
        if first_timestamp is not None:
            timestamps = timestamps.iloc[1:].set_axis(frame.index)
    if timestamps.dt.tz is not None:
        # one timeline for grids, windows and forecasts: UTC wall time, without the offset
        timestamps = timestamps.dt.tz_convert("UTC").dt.tz_localize(None)
    for i in np.flatnonzero(timestamps.isna().to_numpy()):
        problems.append(f"series {ids.iat[i]!r}, row {frame['row'].iat[i]}: timestamp "
                        f"{frame['timestamp'].iat[i]!r} does not parse")
        keys.append((1, int(frame["row"].iat[i])))

    raw = frame["value"]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype("float64")
    else:
        values = pd.to_numeric(raw.astype(object), errors="coerce")
    unparsable = values.isna().to_numpy()
    unparsable[unparsable] = ~_blank(raw[unparsable]).to_numpy(dtype=bool)  # blank cells are missing, not bad
    for i in np.flatnonzero(unparsable):
        what = "is not finite" if _overflows(raw.iat[i]) else "is not a number"
        problems.append(f"series {ids.iat[i]!r}, row {frame['row'].iat[i]}: value {raw.iat[i]!r} {what}")
        keys.append((2, int(frame["row"].iat[i])))
    out_of_range = value_range_problems(ids, values.to_numpy(dtype=np.float64), frame["row"].to_numpy())
    problems += [problem for _, problem in out_of_range]
    keys += [(3, row) for row, _ in out_of_range]
    fail(problems, keys, CHECK_ROWS)

    # sorted by series and time once, here: duplicates are then neighbours, and every later step reads in order
    at = timestamps.to_numpy().view(np.int64)
    order = np.lexsort((at, code))
    code, at = code[order], at[order]
    same = (code[1:] == code[:-1]) & (at[1:] == at[:-1])
    parsed = pd.DataFrame({"series_id": pd.Categorical.from_codes(code, names),
                           "timestamp": timestamps.to_numpy()[order],
                           "value": values.to_numpy(dtype=np.float64)[order], "row": frame["row"].to_numpy()[order],
                           "code": code}, copy=False)  # columns as they are: a copy would only consolidate them
    duplicated = parsed[np.r_[same, False] | np.r_[False, same]]
    for (sid, ts), group in duplicated.groupby(["series_id", "timestamp"], sort=True, observed=True):
        problems.append(f"series {sid!r}: timestamp {ts} appears more than once, in rows "
                        f"{', '.join(map(str, group['row']))}")
        keys.append((str(sid), ts.value))
    fail(problems, keys, CHECK_DUPLICATES)
    return parsed


def first_timestamp_cell(cells):
    """The cell pandas infers the format of text timestamps from: the first that is neither missing nor blank nor
    a word for "no time" (``NaT``, ``now``, ...); None when there is none."""
    from pandas._libs.tslib import first_non_null  # the very rule pandas' format inference applies

    array = np.asarray(cells, dtype=object)
    found = first_non_null(array) if len(array) else -1
    return None if found < 0 else array[found]
