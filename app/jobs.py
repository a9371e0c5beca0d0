"""``seqcast run --jobs N``: independent variants as parallel processes, the cores shared between them.

The variants of one ``seqcast run`` do not depend on each other (an iterative variant waits for its base variant, an
ensemble for its members' variants, when they are planned), and these small models keep about one core busy each, so
runs side by side with one TensorFlow thread each finish sooner than one after another (bench/speed.py). Each
variant runs the ``forecast`` flow in a child process (``python -m app.jobs``) against the same Prefect API as this
process: the configured ``PREFECT_API_URL``, or else the ephemeral server Prefect starts for this process. A child's
output goes to ``$SEQCAST_HOME/logs/run-<time>-<pid>/<n>-<variant>.log``, its result beside it; this process prints
when each starts and ends, and every minute which are still running. The newest ``SEQCAST_KEEP_RUN_LOGS`` of these
folders are kept; older ones are removed when a run starts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from seqcast.models import get_variant
from seqcast.params import ForecastParams
from storage.atomic import atomic_file
from tasks.runtime import in_process_runs, share_cores

STATUS_EVERY_S = 60.0
RUN_FOLDER = re.compile(r"run-\d{8}T\d{6}Z-\d+")


@dataclass
class Job:
    params: ForecastParams
    log: Path
    summary: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    waits_for: set[str] = field(default_factory=set)


def prefect_api_url() -> str:
    """The Prefect API this process uses: the configured one, or the ephemeral server Prefect runs for it."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return url
    from prefect.server.api.server import SubprocessASGIServer  # what get_client() starts without an API URL

    server = SubprocessASGIServer()
    server.start()
    return server.api_url


def prune_run_logs(log_root: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` run log folders under ``log_root`` (by the time in their name).

    Only folders named as ``run_parallel`` names them are touched; return the removed ones.
    """
    if not log_root.is_dir():
        return []
    folders = sorted((p for p in log_root.iterdir() if p.is_dir() and RUN_FOLDER.fullmatch(p.name)),
                     key=lambda p: p.name.split("-")[1])
    old = folders[:max(0, len(folders) - keep)]
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)
    return old


def run_parallel(planned: list[ForecastParams], jobs: int, log_root: Path, keep_logs: int,
                 out=None) -> tuple[list, list]:
    """Run every planned variant's forecast flow, at most ``jobs`` at once; return (summaries, failed variants).

    Only the newest ``keep_logs`` run log folders under ``log_root`` are kept, this run's included.

    A failed variant does not stop the others; its log's last lines are printed (to ``out``, default stderr).
    """
    out = out or sys.stderr
    folder = log_root / f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    prune_run_logs(log_root, keep_logs - 1)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url()}
    threads = share_cores(jobs, env)  # the children's TF_NUM_*_THREADS, unless set already
    pending = []
    for i, params in enumerate(planned, 1):
        kind = get_variant(params.variant)
        # an iterative variant reuses its base variant's run, an ensemble its members': wait for those planned
        reused = {kind.base_variant} | {member.variant for member in kind.members}
        waits_for = {p.variant for p in planned} & reused
        name = f"{i:02d}-{params.variant}"
        pending.append(Job(params, folder / f"{name}.log", folder / f"{name}.json", waits_for=waits_for))
    print(f"seqcast: {len(planned)} variant(s), {jobs} at once with {threads} TensorFlow thread(s) each; "
          f"logs in {folder}", file=out)
    running: list[Job] = []
    try:
        return _schedule(pending, running, jobs, env, out)
    finally:  # interrupted (Ctrl-C): stop the children too, so that none trains on unseen
        for job in running:
            if job.process.poll() is None:
                os.killpg(job.process.pid, signal.SIGTERM)
        for job in running:
            try:
                job.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(job.process.pid, signal.SIGKILL)


def _schedule(pending: list[Job], running: list[Job], jobs: int, env: dict, out) -> tuple[list, list]:
    summaries, failed = [], []
    done: set[str] = set()
    last_status = time.monotonic()
    while pending or running:
        for job in [j for j in pending if not (j.waits_for - done)][:max(0, jobs - len(running))]:
            pending.remove(job)
            job.started = time.monotonic()
            with open(job.log, "wb") as log:
                job.process = subprocess.Popen(
                    [sys.executable, "-m", "app.jobs", job.params.model_dump_json(), str(job.summary)],
                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            running.append(job)
            print(f"seqcast: started {job.params.variant} (log {job.log.name})", file=out)
        time.sleep(0.2)
        for job in [j for j in running if j.process.poll() is not None]:
            running.remove(job)
            done.add(job.params.variant)
            seconds = time.monotonic() - job.started
            if job.process.returncode == 0 and job.summary.is_file():
                summary = json.loads(job.summary.read_text())
                summaries.append(summary)
                print(f"seqcast: {job.params.variant} done in {seconds:.0f} s: valid MSE "
                      f"{summary['valid_mse']:.5f}", file=out)
            else:
                failed.append(job.params.variant)
                tail = job.log.read_text(errors="replace").splitlines()[-15:]
                print(f"seqcast: {job.params.variant} FAILED (exit code {job.process.returncode}) after "
                      f"{seconds:.0f} s; end of {job.log}:\n    " + "\n    ".join(tail), file=out)
        if running and time.monotonic() - last_status >= STATUS_EVERY_S:
            last_status = time.monotonic()
            print("seqcast: running " + ", ".join(f"{j.params.variant} ({time.monotonic() - j.started:.0f} s)"
                                                  for j in running), file=out)
    return summaries, failed


def _child(params_json: str, summary_path: str) -> int:
    from flows.forecast import forecast

    with in_process_runs():
        summary = forecast(**json.loads(params_json))
    with atomic_file(Path(summary_path)) as tmp:
        tmp.write_text(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:]))
