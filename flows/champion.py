"""The champion flow: choose a dataset's champion among its backtests -> record the choice in DuckDB ``champions``."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from seqcast.flows.validation import validated
from seqcast.forecasting.champion import ChampionParams
from seqcast.tasks.champion import choose_champion, record_champion


def run_name() -> str:
    """Name flow runs after their dataset, e.g. ``champion · ds-1a2b3c4d5e6f``."""
    return f"champion · {(flow_run.parameters or {}).get('dataset_id', '?')}"


@flow(name="champion", flow_run_name=run_name, log_prints=True)
def champion(dataset_id: str, margin: float | None = None) -> dict:
    """Choose the dataset's champion (the best backtest MASE over the same cutoffs, ties by sMAPE; a challenger
    replaces the sitting champion only when better by ``margin`` percent) and record the choice."""
    params = validated(ChampionParams, {"dataset_id": dataset_id, "margin": margin})
    choice = choose_champion(params.dataset_id, params.margin)
    choice_id = record_champion(choice)
    c, up = choice.champion, choice.runner_up
    return {"choice_id": choice_id, "dataset_id": params.dataset_id, "variant": c.variant, "run_id": c.run_id,
            "mase": c.mase, "smape": c.smape, "runner_up": up.variant if up else None,
            "runner_up_mase": up.mase if up else None, "replaced": choice.replaced, "reason": choice.reason,
            "ranked": [{"variant": r.variant, "run_id": r.run_id, "backtest_run_id": r.backtest_run_id,
                        "mase": r.mase, "smape": r.smape} for r in choice.ranked]}
