"""The M3 benchmark flow: ingest each subset -> run each variant through the forecast flow (and, if asked, its
backtest, whose intervals are scored on the test values) -> publish the table."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed

from seqcast.config.params import ForecastParams
from seqcast.evaluation.m3_benchmark import Anchor, BenchmarkParams, Subset
from seqcast.flows.backtest import backtest
from seqcast.flows.forecast import forecast
from seqcast.flows.ingest import ingest
from seqcast.flows.validation import give_up_retries, validated
from seqcast.tasks.data import fit_to_dataset
from seqcast.tasks.leaderboard import publish_benchmark


def benchmark_name() -> str:
    """Name flow runs after what they run, e.g. ``m3 · other · 2 variant(s)``."""
    parameters = flow_run.parameters or {}
    subsets = parameters.get("subsets") or ["all subsets"]
    variants = parameters.get("variants")
    return f"m3 · {', '.join(map(str, subsets))} · {len(variants) if variants else 'default'} variant(s)"


@flow(name="m3-benchmark", flow_run_name=benchmark_name, log_prints=True)
def m3_benchmark(subsets: list[Subset] | None = None, variants: list[str] | None = None,
                 anchors: list[Anchor] | None = None, backtest_windows: int | None = None,
                 refit: bool = False, jobs: int = 1, address: str | None = None) -> dict:
    """Run every chosen variant on every chosen M3 subset, one forecast flow run each; publish the leaderboard.

    With ``backtest_windows``, every completed run is also backtested from that many cutoffs (``refit``: a model per
    cutoff for the trained variants), so that the table has its conformal intervals' coverage and MSIS on the test
    values.

    Returns ``{"table": leaderboard rows, "runs": one dict per forecast run (with its backtest's run id, state and
    wall time where it has one), "parameters": the benchmark's}``. The flow ends Failed, with the same result, when
    any forecast or backtest run failed; the others still count.

    The runs go one after another in this flow run (``jobs`` 1, no ``address``), else ``jobs`` at once in worker
    processes, or on the Dask cluster whose scheduler is at ``address``: first every forecast run, then the
    backtests of those that completed. Worker processes need the API this flow's runs use (``PREFECT_API_URL``).
    """
    given = {k: v for k, v in dict(subsets=subsets, variants=variants, anchors=anchors,
                                   backtest_windows=backtest_windows, refit=refit or None).items() if v is not None}
    params = validated(BenchmarkParams, given)  # before any work
    if jobs < 1 or (address is not None and jobs != 1):
        give_up_retries()
        raise ValueError(f"jobs must be at least 1, and 1 with an address (the Dask cluster's worker threads set how "
                         f"many runs go at once); got jobs={jobs}, address={address!r}")
    datasets = {subset: ingest(benchmark=f"m3-{subset}")["dataset_id"] for subset in params.subsets}
    try:  # every run must fit its dataset before the first one trains
        planned = [(subset, params.forecast_params(variant, datasets[subset]))
                   for subset in params.subsets for variant in params.variants]
        for _, forecast_params in planned:
            fit_to_dataset(forecast_params)
    except ValueError:
        give_up_retries()
        raise
    if jobs == 1 and address is None:
        runs = one_after_another(planned, params, datasets)
    else:
        runs = side_by_side(planned, params, datasets, jobs, address)
    table = publish_benchmark(runs, params.anchors)
    result = {"table": table, "runs": runs, "parameters": params.model_dump(mode="json", exclude={"anchors"})}
    failed = [f"{run['subset']} {run['variant']} ({run['state']})" for run in runs if run["state"] != "Completed"]
    failed += [f"{run['subset']} {run['variant']} backtest ({run['backtest_state']})" for run in runs
               if run.get("backtest_state", "Completed") != "Completed"]
    if failed:
        get_run_logger().error("%d forecast or backtest run(s) did not complete: %s", len(failed), ", ".join(failed))
        return Failed(message=f"{len(failed)} forecast or backtest run(s) did not complete", data=result)
    return result


def one_after_another(planned: list[tuple[str, ForecastParams]], params: BenchmarkParams,
                      datasets: dict[str, str]) -> list[dict]:
    """Run every planned forecast flow in this flow run, each followed by its backtest if asked; one dict per run."""
    runs = []
    for i, (subset, forecast_params) in enumerate(planned, 1):
        print(f"[{i}/{len(planned)}] {subset} {forecast_params.variant}: starting")
        clock = time.perf_counter()
        state = forecast(**forecast_params.model_dump(), return_state=True)
        wall_s = time.perf_counter() - clock
        summary = state.result(raise_on_failure=False) if state.is_completed() else {}
        runs.append({"subset": subset, "variant": forecast_params.variant, "dataset_id": datasets[subset],
                     "run_id": summary.get("run_id"), "state": state.name, "wall_s": round(wall_s, 1),
                     "epochs": summary.get("epochs")})
        print(f"[{i}/{len(planned)}] {subset} {forecast_params.variant}: {state.name} in {wall_s:.0f} s")
        asked = params.backtest_params(forecast_params.variant, datasets[subset])
        if asked is not None and state.is_completed():
            runs[-1].update(backtest_run(asked))
            print(f"[{i}/{len(planned)}] {subset} {forecast_params.variant}: backtest {runs[-1]['backtest_state']} "
                  f"in {runs[-1]['backtest_wall_s']:.0f} s")
    return runs


def side_by_side(planned: list[tuple[str, ForecastParams]], params: BenchmarkParams, datasets: dict[str, str],
                 jobs: int, address: str | None) -> list[dict]:
    """Run every planned forecast flow on a task runner (``jobs`` worker processes, or the Dask cluster at
    ``address``), then the backtests of the completed ones the same way; one dict per run."""
    from seqcast.evaluation.backtest import BacktestParams
    from seqcast.flows.run import dask_cluster, execute

    cluster = dask_cluster(address) if address is not None else None
    done = execute([p for _, p in planned], min(jobs, len(planned)), cluster, print).outcomes
    runs = [{"subset": subset, "variant": p.variant, "dataset_id": datasets[subset],
             "run_id": o.get("summary", {}).get("run_id"), "state": "Completed" if "summary" in o else "Failed",
             "wall_s": round(o["seconds"], 1), "epochs": o.get("summary", {}).get("epochs")}
            for (subset, p), o in zip(planned, done)]
    asked = [(run, params.backtest_params(run["variant"], run["dataset_id"])) for run in runs
             if run["state"] == "Completed"]
    asked = [(run, BacktestParams(**parameters)) for run, parameters in asked if parameters is not None]
    if asked:
        backtested = execute([b for _, b in asked], min(jobs, len(asked)), cluster, print).outcomes
        for (run, _), o in zip(asked, backtested):
            run.update({"backtest_run_id": o.get("summary", {}).get("run_id"),
                        "backtest_state": "Completed" if "summary" in o else "Failed",
                        "backtest_wall_s": round(o["seconds"], 1)})
    return runs


def backtest_run(parameters: dict) -> dict:
    """Backtest one run of the benchmark (its cutoff 0 reuses the run); return its run id, state and wall time."""
    clock = time.perf_counter()
    state = backtest(**parameters, return_state=True)
    summary = state.result(raise_on_failure=False) if state.is_completed() else {}
    return {"backtest_run_id": summary.get("run_id"), "backtest_state": state.name,
            "backtest_wall_s": round(time.perf_counter() - clock, 1)}
