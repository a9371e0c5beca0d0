"""The monitor flow's deployment, ``monitor/daily``: every served model's live MASE against its backtest MASE, each day,
an hour before the first nightly forecast run, so a retraining it triggers is under way before the nightly runs
start."""

from __future__ import annotations

from seqcast.deployments.scheduled import ScheduledDeployment, before_first_run
from seqcast.forecasting.live import MonitorParams

LEAD_MIN = 60  # minutes before the first forecast run


def monitor_spec() -> ScheduledDeployment:
    """The monitor's deployment under the current schedule settings (SettingsError naming a bad one)."""
    return before_first_run(
        LEAD_MIN, flow_name="monitor", name="daily", parameters=MonitorParams().model_dump(),
        tags=("seqcast", "monitor"), entrypoint="flows/monitor.py:monitor",
        description=("flag datasets whose live MASE exceeds their backtest MASE by more than the threshold; "
                     "retrain them with retrain=true"))


def monitor_deployment(schedules: bool = True, switched_off: set[tuple[str, str, str]] = frozenset()):
    """The runner deployment that ``seqcast serve`` serves beside the forecast deployments."""
    from seqcast.flows.monitor import monitor

    return monitor_spec().runner_deployment(monitor, schedules, switched_off)
