"""Shard tasks: a stage that touches series runs as one Prefect task per shard of its dataset, on the shard task
runner, and its reduction combines what the tasks return.

The runner is chosen where the flow runs, not by its parameters (which name what a run computes, not where):

- ``SEQCAST_DASK_ADDRESS`` set (``seqcast run|backtest --address`` sets it): prefect-dask's runner on that Dask
  cluster, so the shards of one run spread over its workers;
- else this process, one shard after another: a shard's own work spreads over the cores (``StatsForecast`` with
  ``n_jobs``, TensorFlow's threads), so a machine holds one shard in memory at a time.

Shard tasks retry alone (``SHARD_RETRIES``): the shards that finished are not run again, and a retried one replaces
what it staged before (``seqcast.storage.staged``). A run maps over shards, never series: a shard holds thousands of
series, so even a million series make a few dozen task runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

from prefect import Task
from prefect.futures import PrefectFuture, wait

from seqcast.storage.home import current_settings
from seqcast.tasks.progress import Progress

SHARD_RETRIES = 2  # a lost worker or a transient I/O error costs that shard's work again, no more
SHARD_RETRY_DELAY_S = [2, 10]
WORKER_CHECK_S = 5.0  # how often a wait on a Dask cluster's shards checks that it still has workers


def shard_task(task: Task, final: tuple[type[BaseException], ...] = ()) -> Task:
    """``task`` as a stage maps it over shards: a failed shard runs again alone (the finished ones are kept), unless
    it raised one of the ``final`` exceptions, which the same inputs would raise again."""
    def worth_retrying(_task, _run, state) -> bool:
        try:
            state.result()
        except final:
            return False
        except BaseException:  # noqa: BLE001 - any other failure (a lost worker, I/O) is worth another try
            return True
        return True

    return task.with_options(retries=SHARD_RETRIES, retry_delay_seconds=SHARD_RETRY_DELAY_S,
                             retry_condition_fn=worth_retrying)


class NoWorkers(RuntimeError):
    """The Dask cluster lost every worker and got none back in time: nothing can run the shards left."""


@contextlib.contextmanager
def shard_runner() -> Iterator[tuple[object, Callable[[], int] | None]]:
    """The task runner shard tasks go to, entered (Dask at ``SEQCAST_DASK_ADDRESS``, else this process), and a
    function that counts the cluster's workers (None in this process)."""
    address = current_settings().dask_address
    if not address:
        from prefect.task_runners import ThreadPoolTaskRunner

        with ThreadPoolTaskRunner(max_workers=1) as runner:
            yield runner, None
        return
    import distributed

    from seqcast.flows.run import dask_cluster

    runner, _ = dask_cluster(address)  # ValueError before any work when nothing answers there
    with runner, distributed.Client(address, timeout=WORKER_CHECK_S, set_as_default=False) as client:
        yield runner, lambda: len(client.scheduler_info(n_workers=-1)["workers"])


def map_shards(task: Task, shards: Sequence[int], what: str, key: str | None = None, **parameters) -> list:
    """Run ``task(shard=n, **parameters)`` for every shard number on the shard task runner; return their results in
    the order of ``shards``, reporting shards done of all, their rate and the time left as they finish.

    The first shard that fails for good (its retries spent) raises once every other shard has ended, so the shards
    that could finish have staged their work for the flow run's retry. On a Dask cluster that has had no worker for
    ``SEQCAST_DASK_WORKER_WAIT`` seconds, :class:`NoWorkers` ends the wait.
    """
    progress = Progress(what, len(shards), unit="shards", key=key)
    results: dict[int, object] = {}
    failed: BaseException | None = None
    patience = current_settings().dask_worker_wait
    with shard_runner() as (runner, workers):
        pending: dict[PrefectFuture, int] = {
            runner.submit(task, parameters={"shard": n, **parameters}): n for n in shards}
        alone_since = None  # when the cluster was last seen without a worker
        while pending:
            done, _ = wait(list(pending), timeout=WORKER_CHECK_S if workers else None)
            for future in done:
                number = pending.pop(future)
                try:
                    results[number] = future.result()
                except BaseException as exc:  # noqa: BLE001 - raised below, once the other shards have ended
                    failed = failed or exc
                progress(len(results))
            if workers is None or not pending:
                continue
            if workers():
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > patience:
                raise NoWorkers(f"the Dask cluster at {current_settings().dask_address} has had no workers for "
                                f"{patience:.0f} s, with {len(pending)} of {len(shards)} shards of {what} left: "
                                f"its workers died or cannot start (their logs say why); start workers with "
                                f"`dask worker ADDRESS`, then retry the flow run, which keeps the shards done")
    if failed is not None:
        raise failed
    return [results[n] for n in shards]
