"""The automations that keep runs going when a worker's host is lost: crash a run whose heartbeats stopped, then run
it again on a live worker.

A flow run started by a worker sends ``prefect.flow-run.heartbeat`` events (every ``HEARTBEAT_S`` for the work-pool
deployments: ``prefect.yaml`` sets ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in their environment). A host that dies
sends neither heartbeats nor a final state, so the run would stay Running for ever. The first automation (Prefect's
"Detect zombie flows" recipe) marks such a run Crashed; the second moves a crashed run back to Scheduled, a bounded
number of times, so that any live worker of the pool picks it up under the same flow run id, and training resumes
from the backup the lost try left in the store. Both act only on runs tagged ``seqcast``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

HEARTBEAT_S = 30  # Prefect's shortest heartbeat interval; prefect.yaml gives the work-pool runs the same
CRASH_AUTOMATION = "seqcast: crash runs whose heartbeats stopped"
RETRY_AUTOMATION = "seqcast: retry crashed runs"
TAG = "seqcast"  # every forecast deployment's runs carry it
FINAL_EVENTS = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}


@dataclass(frozen=True)
class CrashPolicy:
    """When a silent run counts as crashed, and how often a crashed run is run again."""

    crash_after_s: int = 3 * HEARTBEAT_S
    retries: int = 2

    def __post_init__(self):
        # a window shorter than two heartbeats would crash runs that are merely a little late
        if self.crash_after_s < 2 * HEARTBEAT_S:
            raise ValueError(f"--crash-after must be at least {2 * HEARTBEAT_S} s (two heartbeats of "
                             f"{HEARTBEAT_S} s), got {self.crash_after_s}")
        if self.retries < 0:
            raise ValueError(f"--retries must be at least 0, got {self.retries}")


def crash_automations(policy: CrashPolicy = CrashPolicy()) -> list:
    """The two automations (``prefect.automations.Automation``), not yet created on the server."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    flow_runs = {"prefect.resource.id": "prefect.flow-run.*"}
    tagged = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
    crash = Automation(
        name=CRASH_AUTOMATION,
        description=f"marks a {TAG} flow run Crashed when no heartbeat came for {policy.crash_after_s} s",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            match=flow_runs, match_related=tagged, for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=policy.crash_after_s)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {policy.crash_after_s} s: its worker is gone")])
    # The state change event labels the run's attempt (prefect.run-count): only the first ``retries`` crashes of a
    # run match, so a run that crashes every time ends Crashed.
    retry = Automation(
        name=RETRY_AUTOMATION,
        description=f"schedules a crashed {TAG} flow run again, at most {policy.retries} time(s)",
        enabled=policy.retries > 0,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match={**flow_runs, "prefect.run-count": [str(n) for n in range(1, policy.retries + 1)] or ["none"]},
            match_related=tagged, for_each={"prefect.resource.id"}, posture=Posture.Reactive, threshold=1),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry",
                                    message="crashed: scheduled again for a live worker")])
    return [crash, retry]


def deploy_automations(policy: CrashPolicy = CrashPolicy()) -> list:
    """Create the automations on the Prefect server, or update those of the same names; return them."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    deployed = []
    with get_client(sync_client=True) as client:
        for automation in crash_automations(policy):
            core = AutomationCore(**automation.model_dump(exclude={"id"}))
            existing = client.read_automations_by_name(automation.name)
            if existing:
                automation.id = existing[0].id
                client.update_automation(automation.id, core)
                for duplicate in existing[1:]:  # one of each name, so a run is never rescheduled twice
                    client.delete_automation(duplicate.id)
            else:
                automation.id = client.create_automation(core)
            deployed.append(automation)
    return deployed
