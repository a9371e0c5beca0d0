"""Results: the store's Delta tables (:mod:`seqcast.storage.tables`), and every query seqcast makes on them.

A run's rows go into the tables in one commit per table (:meth:`Results.record`); every read is DuckDB over the
tables' Arrow datasets (:mod:`seqcast.storage.table_queries`), in memory, with the views of
:mod:`seqcast.storage.views`. There is no database file: nothing to lock, to load, to sync or to rebuild, and no
cache to go stale, so a second process or host sees a run as soon as its commit lands.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seqcast.storage import queries, table_queries
from seqcast.storage.objects import ObjectStore
from seqcast.storage.tables import DEFAULT_RETENTION_HOURS, Rows, Tables


class Results:
    """The results part of a store: its Delta tables under ``<location>/tables`` and seqcast's queries on them.

    ``home`` is the store's local root: file paths that rows name (datasets, models) resolve against it.
    An instance keeps its tables open, so a process that queries or records many times reads each table's log once
    and then only its new entries.
    """

    def __init__(self, home: Path, remote: ObjectStore | None = None):
        self.home = home
        self.tables = Tables.of_store(home, remote)

    @property
    def location(self) -> str:
        """Where the tables live, as users name it (a folder or an ``s3://`` URL)."""
        return f"{self.tables.location}/tables"

    def record(self, run_id: str, rows: dict[str, Rows]) -> dict[str, int]:
        """Commit one run's rows (table name -> row dicts, an Arrow table, or the run's staged dataset of the table:
        ``Staged.dataset``), replacing any the run wrote before;
        return table -> version committed. ValueError names a bad name or row before anything is written."""
        return self.tables.write(run_id, rows)

    def compact(self, retention_hours: int = DEFAULT_RETENTION_HOURS) -> dict[str, dict]:
        """Merge each table's small files and delete those no version younger than ``retention_hours`` reads."""
        return self.tables.compact(retention_hours)

    def query(self, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
        """Run one query of seqcast's own; file paths in it resolve against the store's root."""
        return table_queries.query(self.tables, sql, params, home=self.home)

    def frame(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one query of seqcast's own and return its rows as a pandas data frame."""
        columns, rows = self.query(sql, params)
        return pd.DataFrame.from_records(rows, columns=columns)

    def read_only_query(self, sql: str) -> tuple[list[str], list[tuple]]:
        """Run a user's statement, which may read the store's files and write nothing (ValueError names a refused
        one)."""
        return table_queries.read_only_query(self.tables, sql, self.home)

    def forecast_frame(self, run_id: str) -> pd.DataFrame:
        """A predict run's forecasts: ``series_id, timestamp, value, lo_80, hi_80, lo_95, hi_95``."""
        return self.frame(queries.FORECAST_FRAME, [run_id])

    def backtest_frame(self, run_id: str, levels: list[float]) -> pd.DataFrame:
        """A backtest's forecasts, one row per cutoff, series and step, with ``lo_<level>``/``hi_<level>`` columns
        for each of ``levels`` (NULL where the cutoff had no earlier cutoffs to calibrate on)."""
        long = self.frame(queries.BACKTEST_FRAME, [list(levels), run_id])
        keys = ["series_id", "timestamp", "cutoff_index", "step", "actual", "forecast"]
        out = long[keys].drop_duplicates(subset=["series_id", "cutoff_index", "step"]).reset_index(drop=True)
        for level in levels:
            at = long[long["level"] == level][["series_id", "cutoff_index", "step", "lo", "hi"]]
            name = f"{level:g}"
            out = out.merge(at.rename(columns={"lo": f"lo_{name}", "hi": f"hi_{name}"}),
                            on=["series_id", "cutoff_index", "step"], how="left")
        return out

    def leaderboard(self, variants: list[str], book_valid_mse: list[float], dataset_ids: list[str]):
        """The best run per variant on these datasets, with the book's figure on the book's data."""
        return self.query(queries.LEADERBOARD, [variants, book_valid_mse, dataset_ids])

    def completed_run(self, run_id: str) -> dict | None:
        """The completed run ``run_id``: its runs row and valid MSE, or None."""
        return _first(self.query(queries.COMPLETED_RUN, [run_id]))

    def trained_runs(self, variant: str, dataset_id: str, run_id: str | None = None) -> list[dict]:
        """The completed runs of ``variant`` on ``dataset_id`` that saved a model (only ``run_id``, if given),
        newest first: ``runs`` rows."""
        return self._dicts(queries.TRAINED_RUNS, [variant, dataset_id, run_id, run_id])

    def best_run(self, dataset_id: str, family: str | None = None, variant: str | None = None,
                 excluded: list[str] = ()) -> dict | None:
        """The scored run of the best valid MSE on a dataset (of a family or variant, none of ``excluded``), or
        None."""
        return _first(self.query(queries.BEST_RUN, [dataset_id, family, family, variant, variant, list(excluded)]))

    def sweep_scores(self, flow_run_ids: list[str]) -> list[dict]:
        """The scores of the runs of these flow run ids."""
        return self._dicts(queries.SWEEP_SCORES, [flow_run_ids])

    def backtest_scores(self, run_ids: list[str]):
        """The backtests' sMAPE, MASE, OWA and interval scores over all their cutoffs, best sMAPE first."""
        return self.query(queries.BACKTEST_SCORES, [run_ids])

    def run_backtest(self, run_id: str, dataset_id: str, variant: str, horizon: int) -> dict | None:
        """The newest completed backtest on ``dataset_id`` whose cutoff 0 this run forecast, or None."""
        return _first(self.query(queries.RUN_BACKTEST, [dataset_id, run_id, variant, horizon]))

    def backtest_residuals(self, run_id: str) -> dict[str, list]:
        """Every scored forecast of a backtest: series_id, step and scaled_error lists, all its cutoffs."""
        columns, rows = self.query(queries.BACKTEST_RESIDUALS, [run_id])
        return {c: [row[i] for row in rows] for i, c in enumerate(columns)}

    def benchmark_scores(self, run_ids: list[str], split: str = "test") -> list[dict]:
        """The ``benchmark_scores`` rows of these runs on one split."""
        return self._dicts(queries.BENCHMARK_SCORES, [run_ids, split])

    def series_scores(self, run_ids: list[str], split: str = "test") -> list[dict]:
        """The per-series sMAPE and MASE of these runs on one split, the runs' own and Naive2's."""
        return self._dicts(queries.SERIES_SCORES, [run_ids, split])

    def champion_candidates(self, dataset_id: str) -> list[dict]:
        """Every completed backtest on the dataset over all its cutoffs (MASE, sMAPE, cutoff set) with the run that
        serves its model."""
        return self._dicts(queries.CHAMPION_CANDIDATES, [dataset_id])

    def sitting_champion(self, dataset_id: str) -> dict | None:
        """The dataset's latest ``champions`` row, or None."""
        return _first(self.query(queries.SITTING_CHAMPION, [dataset_id]))

    def completed_backtest(self, run_id: str) -> dict | None:
        """The completed backtest ``run_id``: variant, dataset, horizon, windows, params (JSON); or None."""
        return _first(self.query(queries.CHAMPION_BACKTEST, [run_id]))

    def stored_forecasts(self, series_ids: list[str], run_id: str | None = None,
                         dataset_id: str | None = None) -> dict[str, list]:
        """The stored forecasts of these series (of one forecast run and/or dataset): column -> list."""
        columns, rows = self.query(queries.STORED_FORECASTS, [series_ids, run_id, run_id, dataset_id, dataset_id])
        return {c: [row[i] for row in rows] for i, c in enumerate(columns)}

    def has_forecasts(self, run_id: str | None = None, dataset_id: str | None = None) -> bool:
        """Whether any forecast is stored (of this forecast run and/or dataset)."""
        return self.query(queries.FORECASTS_STORED, [run_id, run_id, dataset_id, dataset_id])[1][0][0] > 0

    def live_vs_backtest(self) -> list[dict]:
        """Every ``live_vs_backtest`` row with its model run's training parameters (JSON), worst ratio first."""
        return self._dicts(queries.LIVE_VS_BACKTEST)

    def live_scores(self, run_ids: list[str]):
        """The live scores of these forecast runs: MASE, MAE and coverage over the actuals scored so far."""
        return self.query(queries.LIVE_SCORES, [run_ids])

    def forecasts(self, run_id: str, limit: int):
        """The first ``limit`` forecast rows of a predict run."""
        return self.query(queries.FORECASTS, [run_id, limit])

    def _dicts(self, sql: str, params: list | None = None) -> list[dict]:
        columns, rows = self.query(sql, params)
        return [dict(zip(columns, row)) for row in rows]


def _first(result: tuple[list[str], list[tuple]]) -> dict | None:
    columns, rows = result
    return dict(zip(columns, rows[0])) if rows else None
