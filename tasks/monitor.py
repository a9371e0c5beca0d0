"""Monitor stages: read each dataset's live MASE beside its backtest MASE, publish the flagged ones, retrain them."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from seqcast.config.names import FLOW_NAME
from seqcast.config.params import ForecastParams, normalized_params
from seqcast.storage.home import current_store
from seqcast.tasks.data import fit_to_dataset

MONITOR_KEY = "seqcast-monitor"
SHOWN = ("dataset_id", "variant", "model_run_id", "basis", "live_mase", "backtest_mase", "mase_ratio", "n_errors",
         "n_series", "coverage_80", "coverage_95", "last_actual", "backtest_run_id", "retrain_dataset_id")


@task(name="read-live-scores", cache_policy=NO_CACHE)
def read_live_scores() -> list[dict]:
    """Every ``live_vs_backtest`` row (with its model run's parameters), worst ratio first."""
    health = current_store().results.live_vs_backtest()
    get_run_logger().info("%d served model(s) with scored forecasts", len(health))
    return health


@task(name="retrain-flagged", cache_policy=NO_CACHE)
def retrain_flagged(flagged: list[dict]) -> list[dict]:
    """Trigger ``forecast/<variant>`` for each flagged model with its own training parameters, on the newest data of
    its dataset (``retrain_dataset_id``); return each row with ``retrain_flow_run_id`` or ``retrain_error``.

    The runs are triggered, not awaited: they train on whichever worker or ``seqcast serve`` picks them up. A model
    whose parameters do not fit that dataset (another window or horizon) is reported, not retrained.
    """
    from prefect.deployments import run_deployment

    logger, done = get_run_logger(), []
    for row in flagged:
        try:
            parameters = {k: v for k, v in normalized_params(row["params"]).items() if k != "variant"}
            parameters["dataset_id"] = row["retrain_dataset_id"]
            fit_to_dataset(ForecastParams(variant=row["variant"], **parameters))
        except (ValueError, TypeError) as exc:  # ValidationError and a missing dataset included
            logger.warning("not retraining %s of %s: %s", row["variant"], row["dataset_id"], exc)
            done.append({**row, "retrain_error": str(exc)})
            continue
        run = run_deployment(f"{FLOW_NAME}/{row['variant']}", parameters={"variant": row["variant"], **parameters},
                             timeout=0, as_subflow=True, tags=["monitor", "retrain"])
        logger.info("retraining %s on %s: flow run %s", row["variant"], parameters["dataset_id"], run.id)
        done.append({**row, "retrain_flow_run_id": str(run.id)})
    return done


@task(name="publish-flagged", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def publish_flagged(flagged: list[dict], threshold: float, n_watched: int) -> list[dict]:
    """Publish the flagged datasets (worst first) as a table artifact under a stable key; return its rows."""
    table = [{k: row.get(k) for k in SHOWN}
             | {k: row[k] for k in ("retrain_flow_run_id", "retrain_error") if k in row} for row in flagged]
    for row in table:  # the artifact is JSON: timestamps as text
        row["last_actual"] = str(row["last_actual"]) if row["last_actual"] is not None else None
    create_table_artifact(table, key=MONITOR_KEY,
                          description=f"{len(table)} of {n_watched} served model(s) whose live MASE exceeds "
                                      f"{threshold:g}x their backtest MASE")
    return table
