"""seqcast as a Python library, in the conventions of Nixtla's forecasting libraries (statsforecast, utilsforecast).

Input is a long data frame (pandas, Polars or a pyarrow table) or a CSV/Parquet file, one row per series and
timestamp, with the columns ``unique_id``, ``ds`` and ``y`` by default. Output is pandas: forecasts as one column
per variant with ``<variant>-lo-<level>`` and ``<variant>-hi-<level>`` beside it; cross-validation with ``cutoff``
(the last timestamp each forecast knew) and ``y``, which ``utilsforecast.evaluation.evaluate`` scores directly.

Every call is the Prefect flow run the command line starts (the same records, lineage, intervals and champions),
with the same validation and error messages; without ``PREFECT_API_URL`` Prefect starts a temporary server for
the process, so no running server is needed::

    import seqcast

    fc = seqcast.forecast(df, ["stats_theta", "mlp"], h=18, level=[80, 95])
    cv = seqcast.cross_validation(df, ["stats_theta"], h=18, n_windows=3)
    seqcast.sql("SELECT variant, smape, mase FROM backtest_scores")
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from seqcast.config.params import ForecastParams
from seqcast.models.registry import NEEDS_DATASET, REGISTRY

ID, TIME, TARGET = "unique_id", "ds", "y"  # the long format of Nixtla's libraries
INTERVAL_LEVELS = (80, 95)  # the levels a forecast run stores its conformal intervals at


def validation_message(exc: ValidationError) -> str:
    """A pydantic ValidationError as the lines the command line prints: one per field, naming it."""
    return "invalid parameters:\n" + "\n".join(
        f"  {'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors())


def _validated(model, **values):
    """``model(**values)``, with a ValidationError turned into a ValueError that names every bad field."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


def variant_list(variants: str | Iterable[str], dataset_id: str | None = None) -> list[str]:
    """The variants to run: a name, a list of names, or ``"all"`` (the statistical ones only with a dataset)."""
    if isinstance(variants, str):
        if variants == "all":
            return [v for v in REGISTRY if dataset_id or v not in NEEDS_DATASET]
        variants = [variants]
    chosen = list(variants)
    if not chosen:
        raise ValueError("name at least one variant")
    return chosen


def plan_runs(variants: list[str], store, **options) -> list[ForecastParams]:
    """Every variant's parameters, each checked against its dataset; ValueError naming the first problem."""
    planned = [_validated(ForecastParams, variant=v, **options) for v in variants]
    for params in planned:  # every variant must fit an ingested dataset before the first one trains
        params.require_data()
        if params.dataset_id is not None:
            params.for_dataset(store.datasets.require(params.dataset_id).manifest)
    return planned


@dataclass
class RunResult:
    """What ``run`` came to: the completed runs' summaries, the variants that failed, and the store's location."""

    summaries: list[dict]
    failed: list[str]
    location: str


def run(variants: str | Iterable[str], *, jobs: int | None = None, address: str | None = None,
        progress: Callable[[str], None] | None = None, **options) -> RunResult:
    """Train and score variants through the forecast flow (``seqcast run``); ``options`` are the forecast flow's
    parameters (``dataset_id``, ``epochs``, ...). Variants run one after another here, ``jobs`` at once in worker
    processes, or on the Dask cluster at ``address``. ValueError before any work for bad options."""
    from seqcast.flows.execution import training_slots
    from seqcast.flows.run import execute
    from seqcast.storage.home import current_store

    check_execution(jobs, address)
    store = current_store()  # the settings and every variant's parameters are checked before any work
    planned = plan_runs(variant_list(variants, options.get("dataset_id")), store, **options)
    jobs, runner = execution(jobs or training_slots(), address, len(planned))
    say = progress or (lambda line: None)
    say(f"running {len(planned)} variant(s) with SEQCAST_HOME={store.location}")
    outcome = execute(planned, jobs, runner, say)
    return RunResult(outcome.summaries, outcome.failed, store.location)


def check_execution(jobs: int | None, address: str | None) -> None:
    """ValueError for ``--jobs`` below 1, or given with ``--address``."""
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if jobs is not None and address is not None:
        raise ValueError("--jobs does not apply with --address: the Dask cluster's worker threads set how many "
                         "variants run at once")


def execution(jobs: int, address: str | None, n_planned: int) -> tuple[int, tuple | None]:
    """How ``n_planned`` runs execute: the worker processes (at most one per run), and the Dask cluster's runner and
    threads at ``address`` (None: this machine). ValueError when no Dask scheduler answers there."""
    from seqcast.flows.run import dask_cluster

    return min(jobs, max(n_planned, 1)), dask_cluster(address) if address is not None else None


def backtests(planned: list, *, jobs: int | None = None, address: str | None = None,
              progress: Callable[[str], None] | None = None):
    """Run planned backtests (:func:`plan_backtests`): one after another here (``jobs`` 1, the default: a statistical
    variant's fits already use every core), ``jobs`` at once in worker processes, or on the Dask cluster at
    ``address``. Returns the :class:`seqcast.flows.run.Outcome`."""
    from seqcast.flows.run import execute

    check_execution(jobs, address)
    jobs, runner = execution(jobs or 1, address, len(planned))
    return execute(planned, jobs, runner, progress or (lambda line: None))


def _as_source(data, folder: Path) -> str:
    """A path the ingest flow reads: ``data`` itself when it is a path, else the frame written to Parquet in
    ``folder``."""
    if isinstance(data, str | os.PathLike):
        return os.fspath(data)
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pd.DataFrame):
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif hasattr(data, "to_arrow"):  # a Polars data frame (Polars itself is not needed otherwise)
        table = data.to_arrow()
    else:
        raise ValueError(f"expected a pandas or Polars data frame, a pyarrow table or a path, got "
                         f"{type(data).__name__}")
    path = folder / "frame.parquet"  # the dataset's id comes from its content, not from this name
    pq.write_table(table, path)
    return str(path)


def ingest(data, *, id_col: str = ID, time_col: str = TIME, target_col: str = TARGET, **options) -> dict:
    """Turn a long data frame or file into a dataset (``seqcast ingest``); return the ingest flow's summary, whose
    ``dataset_id`` the other calls take. ``options`` are the ingest flow's (``horizon``, ``split``, ``freq``, ...)."""
    from seqcast.data.ingest import IngestParams
    from seqcast.flows.ingest import ingest as ingest_flow

    with tempfile.TemporaryDirectory(prefix="seqcast-frame-") as folder:
        params = _validated(IngestParams, source=_as_source(data, Path(folder)), id_column=id_col,
                            time_column=time_col, value_column=target_col, **options)
        return ingest_flow(**params.model_dump())


def _levels(level: Iterable[float] | None, allowed: Iterable[float] | None = None) -> list[float]:
    levels = sorted({float(x) for x in level or ()})
    if allowed is not None:
        unknown = [x for x in levels if x not in allowed]
        if unknown:
            raise ValueError(f"level {unknown[0]:g} is not stored with forecasts: choose among "
                             f"{', '.join(f'{x:g}' for x in allowed)} (cross_validation takes any level)")
    return levels


def _level_name(level: float) -> str:
    return f"{level:g}"


def _ingest_for(df, h: int, freq: str | None, n_steps: int | None, columns: dict) -> str:
    """Ingest ``df`` with its last ``h`` steps held out as the test part (and the ``h`` before them for
    validation), the layout every variant, backtest and champion works on; return the dataset id."""
    options = {"horizon": h, "split": "last-horizon", "short_series": "pad", "freq": freq, "n_steps": n_steps}
    return ingest(df, **columns, **{k: v for k, v in options.items() if v is not None})["dataset_id"]


def forecast(df, variants: str | Iterable[str], h: int, freq: str | None = None,
             level: Iterable[float] | None = None, *, n_windows: int = 3, n_steps: int | None = None,
             id_col: str = ID, time_col: str = TIME, target_col: str = TARGET, **options) -> pd.DataFrame:
    """Forecast the ``h`` steps after each series' last value with every variant.

    ``df`` is ingested with its last ``h`` steps held out, each variant is trained and scored on it (a forecast
    run), and with ``level`` backtested from ``n_windows`` cutoffs to calibrate its conformal intervals; then each
    run forecasts from each series' whole history (a predict run). ``options`` are the forecast flow's training
    parameters (``epochs``, ``units``, ...). Returns ``unique_id, ds, <variant>..., <variant>-lo-<level>,
    <variant>-hi-<level>`` (levels among 80 and 95).
    """
    from seqcast.flows.backtest import backtest
    from seqcast.flows.predict import predict

    levels = _levels(level, INTERVAL_LEVELS)
    chosen = variant_list(variants, dataset_id="any")
    columns = {"id_col": id_col, "time_col": time_col, "target_col": target_col}
    dataset_id = _ingest_for(df, h, freq, n_steps, columns)
    outcome = run(chosen, dataset_id=dataset_id, jobs=1, **options)
    if outcome.failed:
        raise RuntimeError(f"{len(outcome.failed)} variant(s) failed: {', '.join(outcome.failed)}")
    runs = []
    for summary in outcome.summaries:
        if levels:
            backtest(variant=summary["variant"], dataset_id=dataset_id, windows=n_windows, parameters=options)
        runs.append((summary["variant"], predict(run_id=summary["run_id"], dataset_id=dataset_id)["run_id"]))
    frame = forecast_frame(runs, levels)
    return frame.rename(columns={ID: id_col, TIME: time_col})


def forecast_frame(runs: list[tuple[str, str]], levels: list[float]) -> pd.DataFrame:
    """Predict runs (``(variant, run_id)`` pairs) in the layout of Nixtla's forecasts: ``unique_id, ds,
    <variant>..., <variant>-lo-<level>, <variant>-hi-<level>`` (levels among 80 and 95)."""
    from seqcast.storage.home import current_store

    results = current_store().results
    out = None
    for variant, run_id in runs:
        frame = results.forecast_frame(run_id)
        columns = frame[["series_id", "timestamp", "value"]].rename(columns={"series_id": ID, "timestamp": TIME,
                                                                             "value": variant})
        for level in levels:
            for side in ("lo", "hi"):
                columns[f"{variant}-{side}-{_level_name(level)}"] = frame[f"{side}_{_level_name(level)}"]
        out = columns if out is None else out.merge(columns, on=[ID, TIME], how="outer")
    return out.sort_values([ID, TIME], ignore_index=True)


def cross_validation(df, variants: str | Iterable[str], h: int, n_windows: int = 1, step_size: int | None = None,
                     refit: bool = False, level: Iterable[float] | None = None, *, freq: str | None = None,
                     n_steps: int | None = None, id_col: str = ID, time_col: str = TIME, target_col: str = TARGET,
                     **options) -> pd.DataFrame:
    """Forecast each series from ``n_windows`` cutoffs ``step_size`` steps apart (default ``h``), the last one
    ``h`` steps before its end: one backtest flow run per variant (``seqcast backtest``), a model trained once, or
    per cutoff with ``refit``. Intervals at ``level`` are conformal, calibrated on the cutoffs before each one (so
    the earliest cutoff has none). Returns ``unique_id, ds, cutoff, y, <variant>..., <variant>-lo-<level>,
    <variant>-hi-<level>``."""
    from seqcast.flows.backtest import backtest

    levels = _levels(level)
    columns = {"id_col": id_col, "time_col": time_col, "target_col": target_col}
    dataset_id = _ingest_for(df, h, freq, n_steps, columns)
    planned, _ = plan_backtests(variant_list(variants, dataset_id), dataset_id, n_windows, step_size, refit,
                                levels or None, options)
    runs = [(params.variant, backtest(**params.model_dump())["run_id"]) for params in planned]
    frame = cv_frame(runs, dataset_id, levels)
    return frame.rename(columns={ID: id_col, TIME: time_col, TARGET: target_col})


def plan_backtests(variants: list[str], dataset_id: str, windows: int, step: int | None, refit: bool,
                   levels: list[float] | None, parameters: dict, skip_unfit: bool = False):
    """Every variant's backtest parameters, each checked against the dataset before the first one trains; returns
    (planned, skipped). ValueError naming the first problem, unless ``skip_unfit`` (``--all``: every variant that
    can run here), which skips a variant that does not fit and says why in ``skipped``."""
    from seqcast.evaluation.backtest import BacktestParams
    from seqcast.tasks.backtest import check_plan

    planned, skipped = [], []
    for variant in variants:
        try:
            params = _validated(BacktestParams, variant=variant, dataset_id=dataset_id, windows=windows, step=step,
                                refit=refit, parameters=parameters, levels=levels)
            check_plan(params)
        except ValueError as exc:
            if not skip_unfit:
                raise
            skipped.append(f"{variant} ({exc})")
            continue
        planned.append(params)
    return planned, skipped


def cv_frame(runs: list[tuple[str, str]], dataset_id: str, levels: list[float]) -> pd.DataFrame:
    """Backtests (``(variant, run_id)`` pairs, all on ``dataset_id``) in the layout of Nixtla's cross-validation:
    ``unique_id, ds, cutoff, y, <variant>..., <variant>-lo-<level>, <variant>-hi-<level>``, where ``cutoff`` is the
    last timestamp the forecast knew."""
    from seqcast.storage.home import current_store

    store = current_store()
    out = None
    for variant, run_id in runs:
        frame = store.results.backtest_frame(run_id, levels)
        frame = frame.rename(columns={"series_id": ID, "timestamp": TIME, "actual": TARGET, "forecast": variant,
                                      **{f"{side}_{_level_name(x)}": f"{variant}-{side}-{_level_name(x)}"
                                         for x in levels for side in ("lo", "hi")}})
        out = frame if out is None else out.merge(frame.drop(columns=[TARGET, "step"]),
                                                  on=[ID, TIME, "cutoff_index"], how="outer")
    values = store.datasets.read_table(store.datasets.require(dataset_id), "values")
    known = values.filter(pc.invert(values["padded"])).select(["series_id", "step", "timestamp"])
    history = known.to_pandas().rename(columns={"series_id": ID, "step": "position", "timestamp": TIME})
    return _with_cutoff_times(out.drop(columns=["step"]), history)


def _with_cutoff_times(cv: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Replace the cutoffs' indexes by the last timestamp each forecast knew: the series' timestamp just before
    the first forecast step of its cutoff (``history``: ``unique_id, ds, position``)."""
    first = cv.sort_values(TIME).groupby([ID, "cutoff_index"], as_index=False)[TIME].first()
    first = first.merge(history, on=[ID, TIME], how="left")
    first["position"] -= 1
    first = first.drop(columns=[TIME]).merge(history.rename(columns={TIME: "cutoff"}), on=[ID, "position"],
                                             how="left")
    cv = cv.merge(first[[ID, "cutoff_index", "cutoff"]], on=[ID, "cutoff_index"], how="left")
    ordered = [ID, TIME, "cutoff", TARGET] + [c for c in cv.columns if c not in (ID, TIME, "cutoff", TARGET,
                                                                                   "cutoff_index")]
    return cv[ordered].sort_values(["cutoff", ID, TIME], ignore_index=True)


def export(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` to a .parquet or .csv file atomically (a reader never sees half of it); return its path."""
    path = Path(path)
    check_export(path)
    partial = path.with_name(f".{path.name}.partial")
    if path.suffix.lower() == ".csv":
        frame.to_csv(partial, index=False)
    else:
        frame.to_parquet(partial, index=False)
    partial.replace(path)
    return path


def check_export(path: str | os.PathLike | None) -> None:
    """Refuse an export path that is not a .parquet or .csv file in an existing folder (before any work)."""
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".csv") or not path.parent.is_dir():
        raise ValueError(f"export {str(path)!r} must be a .parquet or .csv file in an existing folder")


def sql(query: str, arrow: bool = False) -> pd.DataFrame | pa.Table:
    """Run a read-only query on the results (``seqcast sql``): the tables and views of ``docs/results.md``."""
    from seqcast.storage.home import current_store

    columns, rows = current_store().results.read_only_query(query)
    table = pa.table({c: [row[i] for row in rows] for i, c in enumerate(columns)})
    return table if arrow else table.to_pandas()
