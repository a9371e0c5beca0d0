"""The run flow: ``seqcast run``'s variants side by side, each variant's forecast flow inside a task on a task runner:
Prefect's process pool on this machine, or prefect-dask's runner on an existing Dask cluster. ``seqcast backtest`` and
the M3 benchmark run their backtest flows the same way.

These small models keep about one core busy each, so runs side by side with one TensorFlow thread each finish sooner
than one after another (bench/speed.py). An iterative variant's task waits for its base variant's, an ensemble's for
its members' (when they are planned too), so that it reuses their trained runs; one whose wait ended in a failure is
not run. A failed variant does not stop the others, and ends the run flow Failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.task_runners import ProcessPoolTaskRunner

from seqcast.config.params import ForecastParams
from seqcast.evaluation.backtest import BacktestParams
from seqcast.flows.execution import share_cores
from seqcast.models.registry import get_variant

POLL_S = 2.0  # how often the tasks not yet started are looked up, to report their start
STATUS_EVERY_S = 60.0  # how often the variants still running are listed
STOP_GRACE_S = 30.0  # how long an interrupted worker process may take to record its runs as crashed


PlannedParams = ForecastParams | BacktestParams  # a forecast flow's parameters, or a backtest flow's


@task(name="run-variant", task_run_name="{params.variant}", cache_policy=NO_CACHE)
def run_variant(params: PlannedParams) -> dict:
    """Run one variant's forecast (or backtest) flow, as a subflow of this task in the worker that runs it; return its
    summary."""
    return run_flow(params)


def run_flow(params: PlannedParams) -> dict:
    """Run the flow ``params`` are for, here: a backtest's, else a variant's forecast flow; return its summary."""
    # imported here: the task runner pickles run_variant by value, and a flow must come whole from its module
    if isinstance(params, BacktestParams):
        from seqcast.flows.backtest import backtest

        return backtest(**params.model_dump())
    from seqcast.flows.forecast import forecast

    return forecast(**params.model_dump())


def process_pool(jobs: int) -> tuple[ProcessPoolTaskRunner, int]:
    """A task runner of ``jobs`` worker processes on this machine, and the TensorFlow threads each gets.

    Each worker shares out the cores (:func:`seqcast.flows.execution.share_cores`) as it starts, before any task imports
    TensorFlow, which sizes its thread pools once, when it starts.
    """
    threads = share_cores(jobs, dict(os.environ))  # what the workers get: they inherit this environment
    return ProcessPoolTaskRunner(max_workers=jobs, initializer=share_cores, initargs=(jobs,)), threads


def dask_cluster(address: str, timeout_s: float = 20.0):
    """A task runner on the running Dask cluster whose scheduler is at ``address``, and its worker threads in all.

    ValueError, before any work, when no scheduler answers there or it has no workers.
    """
    import distributed
    from prefect_dask import DaskTaskRunner

    try:
        with distributed.Client(address, timeout=timeout_s, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
    except (OSError, ValueError, TimeoutError) as exc:  # refused, unreachable, or no address at all
        raise ValueError(f"no Dask scheduler answers at {address!r}: {exc}") from None
    if not workers:
        raise ValueError(f"the Dask cluster at {address} has no workers: start some with `dask worker {address}`")
    return DaskTaskRunner(address=address), sum(worker["nthreads"] for worker in workers.values())


@dataclass(eq=False)
class Planned:
    """One planned run: its parameters, the planned runs it reuses, and its task once submitted."""

    params: PlannedParams
    waits_for: list[Planned] = field(default_factory=list)
    future: PrefectFuture | None = None
    started: float | None = None

    @property
    def variant(self) -> str:
        return self.params.variant


def plan(planned: list[PlannedParams]) -> list[Planned]:
    """The planned runs, each with the planned forecast runs it reuses (an iterative variant its base variant's, an
    ensemble its members'), in the given order. A backtest finds or trains the runs it reuses itself."""
    runs = [Planned(params) for params in planned]
    for run in runs:
        if isinstance(run.params, BacktestParams):
            continue
        kind = get_variant(run.variant)
        reused = {kind.base_variant} | {member.variant for member in kind.members}
        run.waits_for = [other for other in runs if other.variant in reused and isinstance(other.params,
                                                                                            ForecastParams)]
    return runs


def submission_order(runs: list[Planned]) -> list[Planned]:
    """``runs`` reordered so that each comes after the runs it waits for (reuse never loops back)."""
    ordered: list[Planned] = []
    while len(ordered) < len(runs):
        ordered += [run for run in runs if run not in ordered and all(w in ordered for w in run.waits_for)]
    return ordered


def run_name() -> str:
    variants = [p["variant"] if isinstance(p, dict) else p.variant
                for p in (flow_run.parameters or {}).get("planned", [])]
    return f"run · {len(variants)} variant(s): {', '.join(variants[:4])}{' …' if len(variants) > 4 else ''}"


@flow(name="run", flow_run_name=run_name)
def run_variants(planned: list[PlannedParams], report: Callable[[str], None] | None = None) -> list[dict] | State:
    """Run every planned variant's forecast (or backtest) flow on this flow's task runner; say when each starts and
    ends.

    The result: one outcome per planned variant, in plan order: ``{"variant", "summary", "seconds"}`` (the flow's
    summary) when it completed, else ``{"variant", "error", "seconds"}``. When a variant failed, this flow run ends
    Failed, with the outcomes as its result all the same (call it with ``return_state=True`` to get them).
    ``report`` (default: this flow's log) gets the progress lines.
    """
    say = report or get_run_logger().info
    runs = plan(planned)
    for run in submission_order(runs):
        run.future = run_variant.submit(run.params, wait_for=[other.future for other in run.waits_for])
    try:
        outcomes = watch(runs, say)
    except BaseException:  # interrupted (Ctrl-C, kill): the worker processes stop too, so that none trains on unseen
        stop_worker_processes()
        raise
    failed = [o["variant"] for o in outcomes if "error" in o]
    if failed:  # Failed, not Completed, in the UI and to automations; the variants that completed keep their runs
        return Failed(message=f"{len(failed)} of {len(runs)} variant(s) failed: {', '.join(failed)}", data=outcomes)
    return outcomes


def watch(runs: list[Planned], say: Callable[[str], None]) -> list[dict]:
    """Wait for every run's task; say when each starts (seen within POLL_S) and ends, and every STATUS_EVERY_S which
    are still running. Return their outcomes in the order of ``runs``."""
    finished: queue.SimpleQueue[Planned] = queue.SimpleQueue()
    for run in runs:
        run.future.add_done_callback(lambda _, run=run: finished.put(run))
    outcomes: dict[int, dict] = {}
    began = last_status = time.monotonic()
    while len(outcomes) < len(runs):
        try:
            done = finished.get(timeout=POLL_S)
        except queue.Empty:
            done = None
        for run in runs:
            if run.started is None and not run.future.state.is_pending():  # running, or already final
                run.started = time.monotonic()
                say(f"started {run.variant}")
        if done is not None:
            outcomes[id(done)] = outcome(done, time.monotonic() - (done.started or began), say)
        if time.monotonic() - last_status >= STATUS_EVERY_S and len(outcomes) < len(runs):
            last_status = time.monotonic()
            running = [f"{run.variant} ({last_status - run.started:.0f} s)" for run in runs
                       if run.started is not None and id(run) not in outcomes]
            waiting = [run.variant for run in runs if run.started is None]
            say(f"running {', '.join(running) or 'none'}; waiting: {', '.join(waiting) or 'none'}")
    return [outcomes[id(run)] for run in runs]


def outcome(run: Planned, seconds: float, say: Callable[[str], None]) -> dict:
    """A finished run's outcome, said as one line."""
    try:
        summary = run.future.result()
    except BaseException as exc:  # the variant's own exception, or its worker's (e.g. a broken process pool)
        failed = sorted({other.variant for other in run.waits_for if not other.future.state.is_completed()})
        if failed and run.future.state.is_pending():  # never ran: a run it waits for did not complete
            error = f"not run: it reuses the run of {', '.join(failed)}, which failed"
            say(f"{run.variant} {error}")
        else:
            error = f"{type(exc).__name__}: {exc}"
            say(f"{run.variant} FAILED after {seconds:.0f} s: {error}")
        return {"variant": run.variant, "error": error, "seconds": seconds}
    say(f"{run.variant} done in {seconds:.0f} s: {score_line(summary)}")
    return {"variant": run.variant, "summary": summary, "seconds": seconds}


def score_line(summary: dict) -> str:
    """A finished run's headline score: a forecast run's valid MSE, a backtest's sMAPE over its cutoffs."""
    if "valid_mse" in summary:
        return f"valid MSE {summary['valid_mse']:.5f}"
    return f"backtest sMAPE {summary['smape']:.3f}" if summary.get("smape") is not None else "backtest done"


def stop_worker_processes() -> None:
    """Stop a process pool's workers: SIGTERM, with which Prefect records their runs as crashed, then SIGKILL for any
    still alive after STOP_GRACE_S. A Dask cluster's workers are not this process's to stop."""
    context = FlowRunContext.get()
    if context is None or not isinstance(context.task_runner, ProcessPoolTaskRunner):
        return
    workers = multiprocessing.active_children()  # the pool's: this process starts no others with multiprocessing
    for worker in workers:
        worker.terminate()

    def kill_survivors():
        for worker in workers:
            if worker.is_alive():
                worker.kill()

    # the pool's shutdown waits for its workers: an interrupted worker leaves once Prefect has recorded its runs
    timer = threading.Timer(STOP_GRACE_S, kill_survivors)
    timer.daemon = True
    timer.start()


@dataclass
class Outcome:
    """What a set of planned runs came to: the completed runs' summaries, the variants that failed, and every run's
    outcome in plan order (as :func:`run_variants` gives them; run one after another, only the completed ones)."""

    summaries: list[dict]
    failed: list[str]
    outcomes: list[dict] = field(default_factory=list)


def all_sharded(planned: list[PlannedParams]) -> bool:
    """Whether every planned run is on a dataset stored in shards (an ingested one), whose shard tasks a cluster can
    share out; the book's synthetic datasets have none, so their runs are what a cluster shares out."""
    from seqcast.storage.datasets import is_sharded
    from seqcast.storage.home import current_store

    datasets = current_store().datasets
    refs = [datasets.find(params.dataset_id) if params.dataset_id else None for params in planned]
    return bool(planned) and all(ref is not None and is_sharded(ref) for ref in refs)


@contextlib.contextmanager
def shards_on(address: str | None):
    """While inside, flow runs in this process send their shard tasks to the Dask cluster at ``address`` (None: no
    change), through the setting ``SEQCAST_DASK_ADDRESS`` that :mod:`seqcast.flows.shards` reads."""
    if address is None:
        yield
        return
    before = os.environ.get("SEQCAST_DASK_ADDRESS")
    os.environ["SEQCAST_DASK_ADDRESS"] = address
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SEQCAST_DASK_ADDRESS", None)
        else:
            os.environ["SEQCAST_DASK_ADDRESS"] = before


def execute(planned: list[PlannedParams], jobs: int, runner_threads: tuple | None = None,
            say: Callable[[str], None] = lambda line: None) -> Outcome:
    """Run the planned variants' forecast (or backtest) flows: one after another in this process (``jobs`` 1 and no
    cluster),
    else side by side on a task runner: ``runner_threads`` (a Dask cluster's runner and its threads, from
    :func:`dask_cluster`) or a process pool of ``jobs`` workers. Every run shares this process's Prefect API and the
    training slots. ``say`` gets the progress lines."""
    from seqcast.flows.execution import ensure_training_limit, in_process_runs, shared_api

    summaries, failed, outcomes = [], [], []
    with in_process_runs(), shared_api():
        ensure_training_limit(resize=False)  # runs in this process share the training slots with any others
        spread = runner_threads is not None and all_sharded(planned)
        if spread:  # the shards of each run spread over the cluster, so the runs go one after another
            runner, threads = runner_threads
            say(f"{len(planned)} variant(s) one after another, each run's shards on the Dask cluster at "
                f"{runner.address} ({threads} worker thread(s))")
        if (runner_threads is None and jobs == 1) or spread:
            with shards_on(runner_threads[0].address if spread else None):
                for i, params in enumerate(planned, 1):
                    say(f"[{i}/{len(planned)}] {params.variant}")
                    clock = time.monotonic()
                    try:
                        summaries.append(run_flow(params))
                    except Exception as exc:  # on a cluster, as when it runs the variants: the others go on
                        if not spread:
                            raise
                        seconds = time.monotonic() - clock
                        say(f"{params.variant} FAILED after {seconds:.0f} s: {type(exc).__name__}: {exc}")
                        failed.append(params.variant)
                        outcomes.append({"variant": params.variant, "error": f"{type(exc).__name__}: {exc}",
                                         "seconds": seconds})
                        continue
                    outcomes.append({"variant": params.variant, "summary": summaries[-1],
                                     "seconds": time.monotonic() - clock})
                    if spread:
                        say(f"{params.variant} done in {outcomes[-1]['seconds']:.0f} s: "
                            f"{score_line(summaries[-1])}")
            return Outcome(summaries, failed, outcomes)
        if runner_threads is None:
            runner, threads = process_pool(jobs)
            say(f"{len(planned)} variant(s), {jobs} at once in worker processes with {threads} TensorFlow "
                f"thread(s) each")
        else:
            runner, threads = runner_threads
            say(f"{len(planned)} variant(s) on the Dask cluster at {runner.address} ({threads} worker thread(s))")
        state = run_variants.with_options(task_runner=runner)(planned, report=say, return_state=True)
        outcomes = state.result(raise_on_failure=False)  # Failed when a variant failed, with every outcome
        if isinstance(outcomes, BaseException):  # the run flow itself broke, not one of its variants
            raise outcomes
    return Outcome([o["summary"] for o in outcomes if "summary" in o],
                   [o["variant"] for o in outcomes if "error" in o], outcomes)
