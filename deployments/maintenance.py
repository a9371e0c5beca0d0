"""The results maintenance deployment, ``results-maintenance/weekly``: compaction and vacuum of the results tables.

Every run adds small files to each table it writes; a weekly compaction keeps a query of one run reading few files.
It runs on Sundays two hours before the first nightly forecast run (``SEQCAST_SCHEDULE_START``, ``..._TIMEZONE``,
``..._PAUSED``), when the fewest runs write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seqcast.storage.home import current_settings
from seqcast.storage.tables import DEFAULT_RETENTION_HOURS

MAINTENANCE_FLOW = "results-maintenance"
LEAD_MIN = 120  # minutes before the first forecast run


@dataclass(frozen=True)
class MaintenanceDeployment:
    """What the maintenance deployment is, independent of how it is served (``serve`` or a work pool)."""

    cron: str
    timezone: str
    paused: bool
    name: str = "weekly"
    parameters: dict = field(default_factory=lambda: {"retention_hours": DEFAULT_RETENTION_HOURS})
    tags: tuple[str, ...] = ("seqcast", "maintenance")
    description: str = ("merge the results tables' small files and delete those no version younger than "
                        "retention_hours reads")
    entrypoint: str = "flows/maintenance.py:results_maintenance"

    @property
    def full_name(self) -> str:
        return f"{MAINTENANCE_FLOW}/{self.name}"


def maintenance_spec() -> MaintenanceDeployment:
    """The maintenance deployment under the current schedule settings (SettingsError naming a bad one)."""
    settings = current_settings()
    hour, minute = settings.schedule_time
    total = (hour * 60 + minute - LEAD_MIN) % (24 * 60)
    # before midnight, Sunday's run belongs to Saturday evening
    day = 0 if hour * 60 + minute >= LEAD_MIN else 6
    return MaintenanceDeployment(cron=f"{total % 60} {total // 60} * * {day}", timezone=settings.schedule_timezone,
                                 paused=settings.schedule_paused)


def maintenance_deployment(schedules: bool = True, switched_off: set[tuple[str, str, str]] = frozenset()):
    """The runner deployment that ``seqcast serve`` serves beside the forecast and monitor deployments;
    ``switched_off`` as in :func:`seqcast.deployments.forecast.forecast_deployments`."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from seqcast.flows.maintenance import results_maintenance

    spec = maintenance_spec()
    active = not (spec.paused or (spec.full_name, spec.cron, spec.timezone) in switched_off)
    return results_maintenance.to_deployment(
        name=spec.name, parameters=spec.parameters, tags=list(spec.tags), description=spec.description,
        schedules=[Cron(spec.cron, timezone=spec.timezone, active=active)] if schedules else [],
        entrypoint_type=EntrypointType.MODULE_PATH)
