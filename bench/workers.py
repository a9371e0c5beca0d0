"""Two process workers against one, finishing a sweep of the one-step variants through the prefect.yaml deployments.

Every pass starts from an empty SEQCAST_HOME, starts N workers of the ``seqcast-process`` pool (``prefect worker
start --limit 1``, each in a folder of its own, as on N hosts) and times ``seqcast sweep --one-step`` from its start
to its leaderboard: the dataset's generation, every run's start-up, training and scoring. The workers share this
machine's cores, so each gets ``cores // N`` TensorFlow threads, as ``seqcast serve`` shares them among its slots.

    python bench/workers.py --out bench/results/workers.md                 # the book's data, its training settings
    python bench/workers.py --passes 2 1 -- --epochs 2 --n-series 2000 --n-train 1400 --n-valid 400 --n-test 200

Options after ``--`` go to ``seqcast sweep``. The Prefect server requires credentials, as a shared one does.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script: import the checkout's packages

POOL = "seqcast-process"


def prefect(env: dict, *args: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def sweep_pass(server, workdir: Path, workers: int, sweep_args: list[str]) -> dict:
    """One pass with ``workers`` workers: the sweep's seconds, and which worker ran each variant."""
    from seqcast.flows.execution import available_cores, ensure_training_limit
    from seqcast.models.registry import ONE_STEP
    from seqcast.storage.results import Results
    from tests.prefect_server import prefect_api, start_worker, stop_process

    folder = workdir / f"pass-{workers}-{time.strftime('%H%M%S')}"
    home = folder / "store"
    threads = str(max(1, available_cores() // workers))
    env = server.client_env(SEQCAST_HOME=str(home), PYTHONPATH=str(REPO_ROOT))  # this checkout, from any folder
    with prefect_api(server.api_url, server.auth_string):
        ensure_training_limit(workers)  # one training per worker, as each host's own limit would allow
    names = [f"worker-{i + 1}" for i in range(workers)]
    started = [start_worker(server, POOL, folder / name, name, SEQCAST_HOME=str(home), PYTHONPATH=str(REPO_ROOT),
                            TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS=threads) for name in names]
    try:
        time.sleep(10)  # the workers have started and polled the pool once
        load_before, clock = load(), time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "seqcast.app.cli", "sweep", "--one-step", *sweep_args], cwd=folder,
                              env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - clock
        if done.returncode != 0:
            raise RuntimeError(f"seqcast sweep failed: {done.stdout[-3000:]}{done.stderr[-3000:]}")
    finally:
        for process in started:
            stop_process(process)
    runs = Results(home).query("SELECT variant, flow_run_id, duration_s, train_seconds FROM runs "
                               "WHERE status = 'completed'")[1]
    ran_by = {}
    for name in names:  # every polling worker logs that it submits a run; all but the one that gets it, an abort
        log = (folder / name / "worker.log").read_text(errors="replace")
        ran_by.update({flow_run_id: name for _, flow_run_id, _, _ in runs
                       if log.count(f"submitting flow run '{flow_run_id}'")
                       > log.count(f"Aborted submission of flow run '{flow_run_id}'")})
    if sorted(r[0] for r in runs) != sorted(ONE_STEP):
        raise RuntimeError(f"expected one completed run of each of {ONE_STEP}, found {[r[0] for r in runs]}")
    return {"workers": workers, "threads": threads, "seconds": seconds, "load_before": load_before,
            "load_after": load(), "runs": {v: (ran_by.get(fr, "?"), d, t) for v, fr, d, t in runs}}


def report(passes: list[dict], command: str, started: str) -> str:
    from seqcast.flows.execution import available_cores
    from seqcast.models.registry import ONE_STEP
    from seqcast.training.fit import library_versions

    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = ["# Workers: two against one, a sweep of the one-step variants (issue 20)\n",
             f"{available_cores()} cores, {versions}; commit {commit}; started {started} UTC.",
             f"Command: `{command}`\n",
             "| workers | TF threads each | sweep s | load average before (1/5/15 min) | after |",
             "|---|---|---|---|---|"]
    lines += [f"| {p['workers']} | {p['threads']} | {p['seconds']:.1f} | {p['load_before']} | {p['load_after']} |"
              for p in passes]
    by_workers = {p["workers"]: p["seconds"] for p in passes}
    if 1 in by_workers and 2 in by_workers:
        lines.append(f"\nTwo workers took **{by_workers[2] / by_workers[1]:.2f}x** one worker's time "
                     f"(target: at most 0.6x).")
    lines += ["\nEach run: the worker that ran it, its flow run's seconds and its training's seconds.\n",
              "| variant | " + " | ".join(f"{p['workers']} worker(s)" for p in passes) + " |",
              "|---|" + "---|" * len(passes)]
    for variant in ONE_STEP:
        cells = []
        for p in passes:
            worker, duration, train = p["runs"][variant]
            cells.append(f"{worker}: {duration:.1f} s" + (f" ({train:.1f} s training)" if train else ""))
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 2], metavar="N",
                        help="the workers of each pass, in order; default: 1 2")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("sweep_args", nargs="*", help="after --: options of seqcast sweep")
    args = parser.parse_args()
    if any(n < 1 for n in args.passes):
        parser.error("--passes: every pass needs at least one worker")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped with kill: still stop the workers and server
    workdir = Path(tempfile.mkdtemp(prefix="seqcast-workers-"))
    os.environ.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    from tests.prefect_server import start_server, stop_server

    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    server = start_server(workdir / "prefect", auth_string=f"seqcast:{secrets.token_urlsafe(16)}")
    try:
        env = server.client_env()
        prefect(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        from seqcast.models.registry import ONE_STEP

        prefect(env, "--no-prompt", "deploy", *[arg for name in ONE_STEP for arg in ("--name", name)])
        passes = []
        for workers in args.passes:
            passes.append(sweep_pass(server, workdir, workers, args.sweep_args))
            print(passes[-1], file=sys.stderr, flush=True)
    finally:
        stop_server(server)
    text = report(passes, " ".join(["python", "bench/workers.py", *sys.argv[1:]]), started)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
