"""The monitor flow's deployment, ``monitor/daily``: every served model's live MASE against its backtest, each day.

Its schedule follows the forecast deployments' configuration (``SEQCAST_SCHEDULE_START``, ``..._TIMEZONE``,
``..._PAUSED``): it runs an hour before the first nightly forecast run, so a retraining it triggers is under way
before the nightly runs start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seqcast.forecasting.live import MonitorParams
from seqcast.storage.home import current_settings

MONITOR_FLOW = "monitor"
LEAD_MIN = 60  # minutes before the first forecast run


@dataclass(frozen=True)
class MonitorDeployment:
    """What the monitor's deployment is, independent of how it is served (``serve`` or a work pool)."""

    cron: str
    timezone: str
    paused: bool
    name: str = "daily"
    parameters: dict = field(default_factory=lambda: MonitorParams().model_dump())
    tags: tuple[str, ...] = ("seqcast", "monitor")
    description: str = ("flag datasets whose live MASE exceeds their backtest MASE by more than the threshold; "
                        "retrain them with retrain=true")
    entrypoint: str = "flows/monitor.py:monitor"

    @property
    def full_name(self) -> str:
        return f"{MONITOR_FLOW}/{self.name}"


def monitor_spec() -> MonitorDeployment:
    """The monitor's deployment under the current schedule settings (SettingsError naming a bad one)."""
    settings = current_settings()
    hour, minute = settings.schedule_time
    total = (hour * 60 + minute - LEAD_MIN) % (24 * 60)
    return MonitorDeployment(cron=f"{total % 60} {total // 60} * * *", timezone=settings.schedule_timezone,
                             paused=settings.schedule_paused)


def monitor_deployment(schedules: bool = True, switched_off: set[tuple[str, str, str]] = frozenset()):
    """The runner deployment that ``seqcast serve`` serves beside the forecast deployments; ``switched_off`` as in
    :func:`seqcast.deployments.forecast.forecast_deployments`."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from seqcast.flows.monitor import monitor

    spec = monitor_spec()
    active = not (spec.paused or (spec.full_name, spec.cron, spec.timezone) in switched_off)
    return monitor.to_deployment(
        name=spec.name, parameters=spec.parameters, tags=list(spec.tags), description=spec.description,
        schedules=[Cron(spec.cron, timezone=spec.timezone, active=active)] if schedules else [],
        entrypoint_type=EntrypointType.MODULE_PATH)
