"""The sweep flow: run a chosen set of variants through their deployments, wait, and publish a leaderboard."""

from __future__ import annotations

import asyncio
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from seqcast.config.names import FLOW_NAME
from seqcast.config.params import ForecastParams
from seqcast.models.registry import REGISTRY
from seqcast.storage.home import current_store
from seqcast.tasks.data import fit_to_dataset

LEADERBOARD_KEY = "seqcast-leaderboard"


def sweep_name() -> str:
    from prefect.runtime import flow_run

    variants = (flow_run.parameters or {}).get("variants") or []
    return f"sweep · {len(variants)} variant(s): {', '.join(variants[:4])}{' …' if len(variants) > 4 else ''}"


def plan(variants: list[str], parameters: dict) -> list[ForecastParams]:
    """Validate every variant's parameters before triggering anything: one bad variant fails the whole sweep."""
    if not variants:
        raise ValueError(f"name at least one variant to sweep; valid variants: {', '.join(REGISTRY)}")
    if "variant" in parameters:
        raise ValueError("parameters must not set 'variant': list the variants in `variants`")
    planned = [ForecastParams(variant=v, **parameters) for v in dict.fromkeys(variants)]
    for params in planned:
        if params.dataset_id is not None:  # a variant that cannot fit the dataset fails the sweep before any trigger
            fit_to_dataset(params)
    return planned


@task(name="wait-for-runs", cache_policy=NO_CACHE)
def wait_for_runs(flow_run_ids: list[str], timeout_s: float) -> dict[str, str]:
    """Wait until every triggered run is final; return flow run id -> final state name."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import FlowRunWaitTimeout, wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def wait_all():
        async with get_client() as client:
            return await asyncio.gather(*(wait_for_flow_run(UUID(run_id), timeout=int(timeout_s), client=client)
                                          for run_id in flow_run_ids))

    try:
        runs = run_coro_as_sync(wait_all())
    except FlowRunWaitTimeout as exc:
        raise TimeoutError(f"forecast runs still not finished after {timeout_s:.0f} s: {exc}") from None
    return {str(run.id): run.state.name for run in runs}


@task(name="publish-leaderboard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def publish_leaderboard(runs: dict[str, str], states: dict[str, str]) -> list[dict]:
    """Read the runs' scores by flow run id; publish them, best first, under a stable artifact key."""
    store = current_store()
    scored = {r["flow_run_id"]: r for r in store.results.sweep_scores(list(runs))}
    table = sorted(({"state": states[fr], **{k: v for k, v in scored[fr].items() if k != "flow_run_id"},
                     "book_valid_mse": REGISTRY[variant].book_valid_mse, "flow_run_id": fr}
                    for fr, variant in runs.items() if fr in scored),
                   key=lambda r: (r["horizon"], r["valid_mse"]))
    # runs that failed (or whose rows wait in the record) still get a line, so the sweep hides nothing
    table += [{"state": states[fr], "variant": variant, "flow_run_id": fr} for fr, variant in runs.items()
              if fr not in scored]
    create_table_artifact(table, key=LEADERBOARD_KEY, description="the last sweep's runs, best valid MSE first")
    return table


@flow(name="sweep", flow_run_name=sweep_name, log_prints=True)
def sweep(variants: list[str], parameters: dict | None = None, timeout_s: float = 24 * 3600) -> list[dict]:
    """Trigger ``forecast/<variant>`` for every variant with the shared ``parameters``; wait; publish a leaderboard."""
    logger = get_run_logger()
    parameters = parameters or {}
    planned = plan(variants, parameters)  # raises before any run is triggered
    runs = {}
    for params in planned:
        # timeout=0: trigger and return at once, so the runs proceed side by side (within the training limit)
        run = run_deployment(f"{FLOW_NAME}/{params.variant}", parameters=parameters, timeout=0, as_subflow=True,
                             tags=["sweep"])
        logger.info("triggered %s/%s: flow run %s", FLOW_NAME, params.variant, run.id)
        runs[str(run.id)] = params.variant
    states = wait_for_runs(list(runs), timeout_s)
    table = publish_leaderboard(runs, states)
    failed = [f"{runs[fr]} ({state})" for fr, state in states.items() if state != "Completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs)} forecast run(s) did not complete: {', '.join(failed)}")
    return table
