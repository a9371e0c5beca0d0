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
from collections.abc import Iterator, Sequence

from prefect import Task
from prefect.futures import PrefectFuture, as_completed

from seqcast.storage.home import current_settings
from seqcast.tasks.progress import Progress

SHARD_RETRIES = 2  # a lost worker or a transient I/O error costs that shard's work again, no more
SHARD_RETRY_DELAY_S = [2, 10]


@contextlib.contextmanager
def shard_runner() -> Iterator[object]:
    """The task runner shard tasks go to, entered: Dask at ``SEQCAST_DASK_ADDRESS``, else this process."""
    address = current_settings().dask_address
    if address:
        from seqcast.flows.run import dask_cluster

        runner, _ = dask_cluster(address)  # ValueError before any work when nothing answers there
    else:
        from prefect.task_runners import ThreadPoolTaskRunner

        runner = ThreadPoolTaskRunner(max_workers=1)
    with runner:
        yield runner


def map_shards(task: Task, shards: Sequence[int], what: str, key: str | None = None, **parameters) -> list:
    """Run ``task(shard=n, **parameters)`` for every shard number on the shard task runner; return their results in
    the order of ``shards``, reporting shards done of all, their rate and the time left as they finish.

    The first shard that fails for good (its retries spent) raises once every other shard has ended, so the shards
    that could finish have staged their work for the flow run's retry.
    """
    progress = Progress(what, len(shards), unit="shards", key=key)
    results: dict[int, object] = {}
    failed: BaseException | None = None
    with shard_runner() as runner:
        futures: dict[PrefectFuture, int] = {
            runner.submit(task, parameters={"shard": n, **parameters}): n for n in shards}
        for future in as_completed(list(futures)):
            try:
                results[futures[future]] = future.result()
            except BaseException as exc:  # noqa: BLE001 - raised below, once the other shards have ended
                failed = failed or exc
            progress(len(results))
    if failed is not None:
        raise failed
    return [results[n] for n in shards]
