"""The predict flow: choose the dataset's champion (recorded) or a named run -> calibrate its intervals on its
backtest -> latest windows -> forecast -> Parquet + DuckDB ``forecasts`` -> the forecasts with their bands in the
Prefect UI.

Deployment-ready: every parameter is a plain value, so ``deployment()`` (or ``python -m seqcast.flows.predict``)
can put it on a schedule, e.g. every morning for the best linear run of a dataset.
"""

from __future__ import annotations

import uuid

from prefect import flow
from prefect.runtime import flow_run

from seqcast.data.ingest import MissingPolicy
from seqcast.forecasting.predict import PredictParams
from seqcast.tasks.champion import choose_champion, record_champion
from seqcast.tasks.predict import calibrate_intervals, choose_run, forecast_series, latest_windows, record_forecasts
from seqcast.tasks.publish import publish_forecasts


def run_name() -> str:
    """Name flow runs after the model they use, e.g. ``predict · ds-1a2b3c4d5e6f · linear``."""
    p = flow_run.parameters or {}
    which = p.get("run_id") or " · ".join(str(v) for v in (p.get("dataset_id"), p.get("family") or p.get("variant")
                                                           or "champion") if v)
    return f"predict · {which or '?'}"


@flow(name="predict", flow_run_name=run_name, log_prints=True)
def predict(
    run_id: str | None = None,
    dataset_id: str | None = None,
    family: str | None = None,
    variant: str | None = None,
    source: str | None = None,
    id_column: str | None = "series_id",
    time_column: str = "timestamp",
    value_column: str = "value",
    freq: str | None = None,
    missing: MissingPolicy = "fail",
    output: str | None = None,
    margin: float | None = None,
) -> dict:
    """Forecast the next horizon after the latest window of every series, with conformal intervals (80% and 95%)
    where the run has a completed backtest on its dataset; write the forecasts durably.

    Without ``run_id``, ``family`` or ``variant`` the dataset's champion forecasts: the choice (best backtest MASE,
    a challenger replacing the sitting champion only when better by ``margin`` percent) is recorded first.
    """
    params = PredictParams(**locals())  # validated before any work
    forecast_run_id = str(flow_run.id or uuid.uuid4())
    champion = None
    if params.uses_champion:
        choice = choose_champion(params.dataset_id, params.margin)
        champion = (choice, record_champion(choice))
    model = choose_run(params, champion)
    interval_run_id, calibration = calibrate_intervals(model)
    latest = latest_windows(params, model)
    target = None if params.source else (params.dataset_id or model.dataset_id)
    rows = forecast_series(forecast_run_id, model, target, latest, calibration, interval_run_id)
    record_forecasts(forecast_run_id, rows, params.output)
    summary = {"run_id": forecast_run_id, "model_run_id": model.run_id, "variant": model.variant,
               "dataset_id": target, "n_series": len(latest.series_ids), "n_rows": len(rows),
               "intervals_from": interval_run_id, "choice_id": model.choice_id,
               "output": params.output}
    publish_forecasts(summary, model, latest, rows)
    return summary


def deployment(name: str = "predict", cron: str | None = None, **parameters):
    """A deployment of the predict flow with fixed parameters (validated now) and an optional cron schedule."""
    PredictParams(**parameters)
    return predict.to_deployment(name=name, cron=cron, parameters=parameters)


if __name__ == "__main__":
    import sys

    from prefect import serve

    # e.g. python -m seqcast.flows.predict ds-1a2b3c4d5e6f linear "0 6 * * *": serve the schedule in this process
    dataset, family, cron = sys.argv[1:4]
    serve(deployment(f"predict-{dataset}-{family}", cron, dataset_id=dataset, family=family))
