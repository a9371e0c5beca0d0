"""Scoring stages: read a file of actuals, and match it with the stored forecasts into ``forecast_errors`` rows."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.data.ingest import IngestParams, Series, period_of
from seqcast.forecasting.live import ScoreError, scope_text, score_forecasts
from seqcast.storage.home import current_store
from seqcast.tasks.ingest import read_validated


@task(name="read-actuals", cache_policy=NO_CACHE)
def read_actuals(reader: IngestParams) -> list[Series]:
    """Read and validate the file like an ingest (same messages); a series needs two steps to show its grid."""
    series = read_validated(reader, min_length=2)
    get_run_logger().info("read %d series from %s", len(series), reader.origin)
    return series


@task(name="score-actuals", cache_policy=NO_CACHE)
def score_actuals(series: list[Series], reader: IngestParams, score_run_id: str, forecast_run_id: str | None = None,
                  dataset_id: str | None = None, actuals_dataset_id: str | None = None,
                  strict: bool = True) -> list[dict]:
    """Match the stored forecasts of these series with the values the file holds at their timestamps; return the
    ``forecast_errors`` rows of this scoring run.

    ``strict`` (``seqcast score``): an unknown forecast run or dataset, a series without forecasts, one whose
    forecasts lie beyond the file's end, or a file that scores nothing raises ScoreError before anything is written.
    Without it (an ingest of a newer file) whatever matches is scored and the rest only logged.
    """
    logger, results = get_run_logger(), current_store().results
    scope = scope_text(forecast_run_id, dataset_id)
    if strict and (forecast_run_id or dataset_id) and not results.has_forecasts(forecast_run_id, dataset_id):
        raise ScoreError(f"no stored forecast{scope} in {results.location}; `seqcast predict` writes them")
    try:
        forecasts = results.stored_forecasts([s.series_id for s in series], forecast_run_id, dataset_id)
    except (OSError, duckdb.Error) as exc:
        if strict:
            raise
        # an ingest does not fail for the scoring it adds: its dataset is recorded, the file can be scored later
        logger.warning("stored forecasts not scored (%s); score them later with `seqcast score --source %s`", exc,
                       reader.origin)
        return []
    if strict and not forecasts["run_id"] and not results.has_forecasts():
        raise ScoreError(f"no stored forecast in {results.location}: nothing to score; `seqcast predict` writes them")
    periods = {s.series_id: period_of(s.freq, reader) for s in series}
    rows, problems = score_forecasts(series, periods, forecasts, score_run_id, datetime.now(UTC), reader.origin,
                                     actuals_dataset_id, strict, scope)
    if problems:
        logger.info("%d series of %s not scored: %s", len(problems), reader.origin, "; ".join(problems[:3]))
    runs = sorted({r["run_id"] for r in rows})
    logger.info("scored %d forecast step(s) of %d series from %d forecast run(s)", len(rows),
                len({r["series_id"] for r in rows}), len(runs))
    return rows

