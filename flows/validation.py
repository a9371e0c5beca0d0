"""Parameter validation that fails a flow run at once: bad parameters are not worth a retry."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


def validated(model: type[BaseModel], values: dict) -> BaseModel:
    """Return ``model(**values)``; if invalid, drop the current flow run's remaining retries, then raise.

    Flow retries are granted by the Prefect server to any run that fails while Running, whatever the cause;
    setting the run's retry budget to 0 first makes the run end Failed now instead of failing again later.
    """
    try:
        return model(**values)
    except ValidationError:
        give_up_retries()
        raise


def give_up_retries() -> None:
    """Set the current flow run's retries to 0 (no-op outside a flow run)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    policy = context.flow_run.empirical_policy.model_copy(update={"retries": 0})
    with get_client(sync_client=True) as client:
        client.update_flow_run(context.flow_run.id, empirical_policy=policy)
