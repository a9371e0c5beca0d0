"""One deployment of the forecast flow per model variant: name, default parameters, tags and nightly schedule.

The schedule is configuration, not code: ``SEQCAST_SCHEDULE_START`` (``HH:MM``, default ``01:00``),
``SEQCAST_SCHEDULE_STAGGER_MIN`` (default 10), ``SEQCAST_SCHEDULE_TIMEZONE`` (IANA name, default ``UTC``) and
``SEQCAST_SCHEDULE_PAUSED`` (``1`` creates the schedules inactive). Once deployed, a schedule is paused or
changed in the Prefect UI or CLI like any other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from seqcast.models import REGISTRY, get_variant
from seqcast.settings import positive_int_setting

FLOW_NAME = "forecast"
DEFAULT_START, DEFAULT_STAGGER_MIN, DEFAULT_TIMEZONE = "01:00", 10, "UTC"


@dataclass(frozen=True)
class ForecastDeployment:
    """What a variant's deployment is, independent of how it is served (``serve`` or a work pool)."""

    name: str
    parameters: dict
    tags: list[str]
    cron: str
    timezone: str
    paused: bool
    description: str
    entrypoint: str = "flows/forecast.py:forecast"

    @property
    def full_name(self) -> str:
        return f"{FLOW_NAME}/{self.name}"


def schedule_settings() -> tuple[int, int, int, str, bool]:
    """Read the schedule configuration: start hour and minute, stagger minutes, timezone, paused."""
    start = os.environ.get("SEQCAST_SCHEDULE_START") or DEFAULT_START
    try:
        hour, minute = (int(part) for part in start.split(":"))
        stagger = int(os.environ.get("SEQCAST_SCHEDULE_STAGGER_MIN") or DEFAULT_STAGGER_MIN)
    except ValueError:
        raise ValueError(f"SEQCAST_SCHEDULE_START must be HH:MM and SEQCAST_SCHEDULE_STAGGER_MIN a whole number "
                         f"of minutes, got {start!r}") from None
    if not (0 <= hour < 24 and 0 <= minute < 60 and stagger >= 0):
        raise ValueError(f"SEQCAST_SCHEDULE_START {start!r} is not a time of day (HH:MM)")
    timezone = os.environ.get("SEQCAST_SCHEDULE_TIMEZONE") or DEFAULT_TIMEZONE
    paused = (os.environ.get("SEQCAST_SCHEDULE_PAUSED") or "0").lower() in ("1", "true", "yes")
    return hour, minute, stagger, timezone, paused


def nightly_cron(index: int, hour: int, minute: int, stagger: int) -> str:
    """The cron line of the ``index``-th variant: staggered so that runs do not all start at once."""
    total = hour * 60 + minute + index * stagger
    return f"{total % 60} {total // 60 % 24} * * *"


def deployment_specs(variants: list[str] | None = None) -> list[ForecastDeployment]:
    """Describe the forecast deployment of every (or every named) registered variant, in registry order.

    Staggering follows registry order, so iterative_10 runs after the deep_rnn_dense run it reuses.
    """
    for name in variants or []:
        get_variant(name)  # ValueError listing the valid names
    hour, minute, stagger, timezone, paused = schedule_settings()
    specs = []
    for index, variant in enumerate(REGISTRY.values()):
        if variants and variant.name not in variants:
            continue
        specs.append(ForecastDeployment(
            name=variant.name, parameters={"variant": variant.name},
            tags=["seqcast", f"horizon-{variant.horizon}", f"family-{variant.family}"],
            cron=nightly_cron(index, hour, minute, stagger), timezone=timezone, paused=paused,
            description=f"{variant.description} (horizon {variant.horizon}; the book's valid MSE "
                        f"{variant.book_valid_mse})"))
    return specs


def forecast_deployments(variants: list[str] | None = None, schedules: bool = True,
                         switched_off: set[tuple[str, str, str]] = frozenset()):
    """Build the runner deployments that ``seqcast serve`` serves; ``schedules=False`` leaves them unscheduled.

    ``switched_off``: (deployment, cron, timezone) of schedules someone switched off (:func:`schedules_switched_off`);
    they stay off, where Prefect would switch them back on when they are served again (PrefectHQ/prefect#19302).
    A schedule whose cron or timezone changed is a new one.
    """
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.forecast import forecast

    return [forecast.to_deployment(
        name=spec.name, parameters=spec.parameters, tags=spec.tags, description=spec.description,
        schedules=[Cron(spec.cron, timezone=spec.timezone,
                        active=not (spec.paused or (spec.full_name, spec.cron, spec.timezone) in switched_off))]
        if schedules else [],
        # a module path, not a file path: the run imports the installed package from any working directory
        entrypoint_type=EntrypointType.MODULE_PATH,
    ) for spec in deployment_specs(variants)]


def schedules_switched_off(full_names: list[str]) -> set[tuple[str, str, str]]:
    """(deployment, cron, timezone) of each inactive cron schedule of these deployments on the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    inactive = set()
    with get_client(sync_client=True) as client:
        for full_name in full_names:
            try:
                deployment = client.read_deployment_by_name(full_name)
            except ObjectNotFound:
                continue
            inactive |= {(full_name, s.schedule.cron, s.schedule.timezone) for s in deployment.schedules
                         if not s.active and getattr(s.schedule, "cron", None)}
    return inactive


def training_slots(requested: int | None = None, name: str = "the training limit") -> int:
    """How many models may train at once: ``requested`` (at least 1, or ValueError naming ``name``), else
    ``SEQCAST_TRAINING_SLOTS``, default one per CPU core.

    These small models keep about one core busy each, so runs side by side with one TensorFlow thread each (see
    :func:`share_cores`) finish a sweep sooner: bench/speed.py measured the one-step sweep on 2 cores in 379 s with
    2 slots x 1 thread against 592 s with 1 slot x 2 threads (speed.md, invocation 11).
    """
    if requested is None:
        return positive_int_setting("SEQCAST_TRAINING_SLOTS", available_cores())
    if requested < 1:
        raise ValueError(f"{name} must be at least 1, got {requested}")
    return requested


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share_cores(slots: int, env=os.environ) -> int:
    """Give every flow run started with ``env`` an equal share of the cores for TensorFlow; return its threads.

    Sets ``TF_NUM_INTRAOP_THREADS`` and ``TF_NUM_INTEROP_THREADS`` (which TensorFlow reads when it starts in the
    run's subprocess) to ``cores // slots``, unless they are set already. Without them every run would size its
    thread pools for all cores, and runs training side by side would oversubscribe them.
    """
    threads = max(1, available_cores() // slots)
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env.setdefault(name, str(threads))
    return int(env["TF_NUM_INTRAOP_THREADS"])


def ensure_training_limit(slots: int | None = None, resize: bool = True) -> int:
    """Create (or, with ``resize``, resize) the global concurrency limit that train-model holds; return its size."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from tasks.train import TRAINING_LIMIT

    slots = training_slots(slots)
    with get_client(sync_client=True) as client:
        if not resize:
            try:  # a limit someone sized on a shared server is theirs to keep
                return client.read_global_concurrency_limit_by_name(TRAINING_LIMIT).limit
            except ObjectNotFound:
                pass
        client.upsert_global_concurrency_limit_by_name(TRAINING_LIMIT, slots)
    return slots
