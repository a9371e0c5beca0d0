"""A deployment of one of seqcast's own flows on a cron schedule tied to the nightly forecast runs: the monitor's
(``deployments/monitor.py``) and the results maintenance's (``deployments/maintenance.py``).

Its schedule follows the forecast deployments' configuration (``SEQCAST_SCHEDULE_START``, ``..._TIMEZONE``,
``..._PAUSED``): it runs a fixed number of minutes before the first nightly forecast run.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqcast.storage.home import current_settings


@dataclass(frozen=True)
class ScheduledDeployment:
    """What the deployment is, independent of how it is served (``serve`` or a work pool)."""

    flow_name: str
    name: str
    cron: str
    timezone: str
    paused: bool
    parameters: dict
    tags: tuple[str, ...]
    description: str
    entrypoint: str

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    def runner_deployment(self, flow, schedules: bool = True, switched_off: set[tuple[str, str, str]] = frozenset()):
        """The runner deployment of ``flow`` that ``seqcast serve`` serves; ``switched_off`` as in
        :func:`seqcast.deployments.forecast.forecast_deployments`."""
        from prefect.schedules import Cron
        from prefect.types.entrypoint import EntrypointType

        active = not (self.paused or (self.full_name, self.cron, self.timezone) in switched_off)
        return flow.to_deployment(
            name=self.name, parameters=self.parameters, tags=list(self.tags), description=self.description,
            schedules=[Cron(self.cron, timezone=self.timezone, active=active)] if schedules else [],
            entrypoint_type=EntrypointType.MODULE_PATH)


def before_first_run(lead_min: int, weekday: int | None = None, **deployment) -> ScheduledDeployment:
    """The deployment scheduled ``lead_min`` minutes before the first nightly forecast run, every day or (``weekday``,
    0 = Sunday) on the day of that week's run; the rest of its fields are ``deployment``'s (SettingsError naming a bad
    schedule setting)."""
    settings = current_settings()
    hour, minute = settings.schedule_time
    start = hour * 60 + minute
    total = (start - lead_min) % (24 * 60)
    # a lead that crosses midnight moves the run to the day before
    day = "*" if weekday is None else str(weekday if start >= lead_min else (weekday - 1) % 7)
    return ScheduledDeployment(cron=f"{total % 60} {total // 60} * * {day}", timezone=settings.schedule_timezone,
                               paused=settings.schedule_paused, **deployment)
