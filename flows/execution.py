"""How runs execute: in this process or in worker processes sharing one Prefect API, and how training runs share the
machine (the global concurrency limit and the cores)."""

from __future__ import annotations

import contextlib
import os

from seqcast.config.names import TRAINING_LIMIT
from seqcast.config.settings import load_settings


def in_process_runs():
    """Settings for flow runs executed in this process rather than by a runner or worker.

    The flow heartbeat lets a server mark runs whose runner died as crashed; here the runner is this very process,
    and the heartbeat thread's shutdown adds to every flow run, so it is turned off.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


@contextlib.contextmanager
def shared_api():
    """While inside, every process this one starts uses its Prefect API: the configured ``PREFECT_API_URL``, or else
    the ephemeral server Prefect starts for this process, named in the settings that task runners hand on.

    Without it each worker process of a parallel run would start an ephemeral server of its own.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if not url:
        from prefect.server.api.server import SubprocessASGIServer  # what get_client() starts without an API URL

        server = SubprocessASGIServer()
        server.start()
        url = server.api_url
    with temporary_settings({PREFECT_API_URL: url}):
        yield url


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def training_slots(requested: int | None = None, name: str = "the training limit") -> int:
    """How many models may train at once: ``requested`` (at least 1, or ValueError naming ``name``), else
    ``SEQCAST_TRAINING_SLOTS``, default one per CPU core.

    These small models keep about one core busy each, so runs side by side with one TensorFlow thread each (see
    :func:`share_cores`) finish a sweep sooner than one run at a time with every thread (bench/speed.py).
    """
    if requested is None:
        return load_settings().training_slots or available_cores()
    if requested < 1:
        raise ValueError(f"{name} must be at least 1, got {requested}")
    return requested


def share_cores(slots: int, env=os.environ) -> int:
    """Give every flow run started with ``env`` an equal share of the cores for TensorFlow; return its threads.

    Sets ``TF_NUM_INTRAOP_THREADS`` and ``TF_NUM_INTEROP_THREADS`` (which TensorFlow reads when it starts in the
    run's subprocess) to ``cores // slots``, unless they are set already. Without them every run would size its
    thread pools for all cores, and runs training side by side would oversubscribe them.
    """
    threads = max(1, available_cores() // slots)
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env.setdefault(variable, str(threads))
    return int(env["TF_NUM_INTRAOP_THREADS"])


def ensure_training_limit(slots: int | None = None, resize: bool = True) -> int:
    """Create (or, with ``resize``, resize) the global concurrency limit that train-model holds; return its size."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    slots = training_slots(slots)
    with get_client(sync_client=True) as client:
        if not resize:
            try:  # a limit someone sized on a shared server is theirs to keep
                return client.read_global_concurrency_limit_by_name(TRAINING_LIMIT).limit
            except ObjectNotFound:
                pass
        client.upsert_global_concurrency_limit_by_name(TRAINING_LIMIT, slots)
    return slots
