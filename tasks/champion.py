"""Champion stages: choose a dataset's champion among its backtests, record the choice durably."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.forecasting.champion import Candidate, Choice, Sitting, check_margin, choose
from seqcast.storage.home import current_settings, current_store


def no_backtest_message(dataset_id: str, spec: dict | None) -> str:
    """Why a dataset has no champion, and the command that gives it one."""
    if spec is not None and spec.get("split") != "last-horizon":
        return (f"dataset {dataset_id} has no champion: a champion is chosen by backtest, which needs a dataset "
                f"ingested with --split last-horizon (this one was split by {spec.get('split', 'fractions')}); "
                f"name a model with --run-id, --family or --variant instead")
    return (f"dataset {dataset_id} has no completed backtest to choose a champion from; backtest the candidates "
            f"first, e.g. `seqcast backtest --dataset-id {dataset_id} --variant stats_naive2 --variant stats_theta "
            f"--variant linear`, or name a model with --run-id, --family or --variant")


@task(name="choose-champion", cache_policy=NO_CACHE)
def choose_champion(dataset_id: str, margin: float | None = None) -> Choice:
    """Choose the dataset's champion among its completed backtests (``seqcast.forecasting.champion``); ``margin``
    in percent, default ``SEQCAST_CHAMPION_MARGIN``. ValueError naming the backtest to run when there is none."""
    store = current_store()
    dataset = store.datasets.require(dataset_id)
    margin = check_margin(current_settings().champion_margin if margin is None else margin)
    rows = store.results.champion_candidates(dataset_id)
    if not rows:
        raise ValueError(no_backtest_message(dataset_id, dataset.manifest.get("spec")))
    sitting = store.results.sitting_champion(dataset_id)
    choice = choose(dataset_id, [Candidate(**row) for row in rows],
                    Sitting(sitting["choice_id"], sitting["run_id"], sitting["variant"], sitting["backtest_run_id"])
                    if sitting else None, margin)
    logger = get_run_logger()
    for rank, c in enumerate(choice.ranked, 1):
        logger.info("%d. %s run %s: backtest MASE %.4f, sMAPE %.3f", rank, c.variant, c.run_id, c.mase, c.smape)
    logger.info("champion of %s: %s run %s (%s)", dataset_id, choice.champion.variant, choice.champion.run_id,
                choice.reason)
    return choice


def champion_row(choice: Choice, choice_id: str, chosen_at: datetime) -> dict:
    """The choice's ``champions`` row."""
    c, up, previous = choice.champion, choice.runner_up, choice.previous
    return {
        "choice_id": choice_id, "dataset_id": choice.dataset_id, "run_id": c.run_id, "variant": c.variant,
        "backtest_run_id": c.backtest_run_id, "chosen_at": chosen_at, "score": c.mase, "smape": c.smape,
        "horizon": c.horizon, "windows": c.windows, "cutoff_step": c.cutoff_step,
        "runner_up_run_id": up.run_id if up else None, "runner_up_variant": up.variant if up else None,
        "runner_up_backtest_run_id": up.backtest_run_id if up else None, "runner_up_score": up.mase if up else None,
        "previous_run_id": previous.run_id if previous else None,
        "previous_variant": previous.variant if previous else None, "previous_score": choice.held_score,
        "margin": choice.margin, "replaced": choice.replaced, "reason": choice.reason,
        "n_candidates": len(choice.ranked),
    }


# what a choice is about: the same champion on the same evidence against the same runner-up is the same choice
_SAME = ("run_id", "backtest_run_id", "score", "smape", "windows", "cutoff_step", "runner_up_run_id",
         "runner_up_score", "margin")


def _same(a, b) -> bool:
    # scores are means DuckDB may sum in another order from one query to the next
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


@task(name="record-champion", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def record_champion(choice: Choice) -> str:
    """Commit the choice as its own rows of ``champions``; return its choice id.

    A choice that repeats the dataset's latest one (the same champion, backtest, scores, runner-up and margin) is
    not recorded again: the latest one stands, and its id is returned.
    """
    store, logger = current_store(), get_run_logger()
    sitting = store.results.sitting_champion(choice.dataset_id)
    choice_id = str(uuid.uuid4())
    row = champion_row(choice, choice_id, datetime.now(UTC))
    if sitting is not None and all(_same(sitting[k], row[k]) for k in _SAME):
        logger.info("the choice is the latest one recorded, %s: nothing new to record", sitting["choice_id"])
        return sitting["choice_id"]
    store.results.record(choice_id, {"champions": [row]})
    return choice_id
