"""One deployment of the forecast flow per model variant: name, default parameters, tags and nightly schedule.

The schedule is configuration, not code: ``SEQCAST_SCHEDULE_START`` (``HH:MM``), ``SEQCAST_SCHEDULE_STAGGER_MIN``,
``SEQCAST_SCHEDULE_TIMEZONE`` and ``SEQCAST_SCHEDULE_PAUSED`` (see ``seqcast/config/settings.py``). Once deployed, a
schedule is paused or changed in the Prefect UI or CLI like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqcast.config.names import FLOW_NAME
from seqcast.models.registry import REGISTRY, Variant, get_variant
from seqcast.storage.home import current_settings


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


def nightly_cron(index: int, hour: int, minute: int, stagger: int) -> str:
    """The cron line of the ``index``-th variant: staggered so that runs do not all start at once."""
    total = hour * 60 + minute + index * stagger
    return f"{total % 60} {total // 60 % 24} * * *"


def horizon_tag(variant: Variant) -> str:
    """``horizon-<n>``; ``horizon-dataset`` for a variant that forecasts its dataset's horizon."""
    return f"horizon-{variant.horizon}" if variant.horizon else "horizon-dataset"


def describe(variant: Variant) -> str:
    """A deployment's description: the architecture, the horizon and the book's valid MSE where it has one."""
    horizon = f"horizon {variant.horizon}" if variant.horizon else "the dataset's horizon; needs dataset_id"
    book = "no book figure" if variant.book_valid_mse is None else f"the book's valid MSE {variant.book_valid_mse}"
    return f"{variant.description} ({horizon}; {book})"


def deployment_specs(variants: list[str] | None = None) -> list[ForecastDeployment]:
    """Describe the forecast deployment of every (or every named) registered variant, in registry order.

    Staggering follows registry order, so iterative_10 runs after the deep_rnn_dense run it reuses.
    """
    for name in variants or []:
        get_variant(name)  # ValueError listing the valid names
    settings = current_settings()
    (hour, minute), stagger = settings.schedule_time, settings.schedule_stagger_min
    timezone, paused = settings.schedule_timezone, settings.schedule_paused
    specs = []
    for index, variant in enumerate(REGISTRY.values()):
        if variants and variant.name not in variants:
            continue
        specs.append(ForecastDeployment(
            name=variant.name, parameters={"variant": variant.name},
            tags=["seqcast", horizon_tag(variant), f"family-{variant.family}"],
            cron=nightly_cron(index, hour, minute, stagger), timezone=timezone,
            # a scheduled run names no dataset, which a statistical baseline needs: its schedule starts paused
            paused=paused or variant.needs_dataset, description=describe(variant)))
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

    from seqcast.flows.forecast import forecast

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
