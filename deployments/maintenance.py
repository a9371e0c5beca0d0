"""The results maintenance deployment, ``results-maintenance/weekly``: compaction and vacuum of the results tables,
on Sundays two hours before the first nightly forecast run, when the fewest runs write. The writes merge a crowded
table's files themselves; the weekly run also orders them for one-run reads, vacuums and checkpoints."""

from __future__ import annotations

from seqcast.deployments.scheduled import ScheduledDeployment, before_first_run
from seqcast.storage.tables import DEFAULT_RETENTION_HOURS

LEAD_MIN = 120  # minutes before the first forecast run
SUNDAY = 0


def maintenance_spec() -> ScheduledDeployment:
    """The maintenance deployment under the current schedule settings (SettingsError naming a bad one)."""
    return before_first_run(
        LEAD_MIN, SUNDAY, flow_name="results-maintenance", name="weekly",
        parameters={"retention_hours": DEFAULT_RETENTION_HOURS}, tags=("seqcast", "maintenance"),
        entrypoint="flows/maintenance.py:results_maintenance",
        description=("merge the results tables' small files and delete those no version younger than "
                     "retention_hours reads"))


def maintenance_deployment(schedules: bool = True, switched_off: set[tuple[str, str, str]] = frozenset()):
    """The runner deployment that ``seqcast serve`` serves beside the forecast and monitor deployments."""
    from seqcast.flows.maintenance import results_maintenance

    return maintenance_spec().runner_deployment(results_maintenance, schedules, switched_off)
