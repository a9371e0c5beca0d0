"""The monitor flow: compare every served model's live MASE with its backtest MASE -> flag -> publish -> retrain."""

from __future__ import annotations

from prefect import flow, get_run_logger

from seqcast.forecasting.live import DEFAULT_THRESHOLD, MonitorParams, flagged
from seqcast.tasks.monitor import publish_flagged, read_live_scores, retrain_flagged


@flow(name="monitor", flow_run_name="monitor · {threshold}x", log_prints=True)
def monitor(threshold: float = DEFAULT_THRESHOLD, min_errors: int = 1, retrain: bool = False) -> list[dict]:
    """Flag each dataset whose model's live MASE (``live_vs_backtest``) exceeds ``threshold`` times its backtest MASE,
    after at least ``min_errors`` scored steps; publish them as the ``seqcast-monitor`` artifact; with ``retrain``,
    trigger each flagged model's forecast deployment on the dataset's newest data."""
    params = MonitorParams(threshold=threshold, min_errors=min_errors, retrain=retrain)  # validated before any work
    health = read_live_scores()
    found = flagged(health, params)
    if params.retrain and found:
        found = retrain_flagged(found)
    table = publish_flagged(found, params.threshold, len(health))
    get_run_logger().info("%d of %d served model(s) flagged: %s", len(table), len(health),
                          ", ".join(f"{r['dataset_id']} ({r['variant']}, {r['mase_ratio']:.2f}x)" for r in table)
                          or "none")
    return table
