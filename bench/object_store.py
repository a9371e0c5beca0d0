"""The object store's cost: a ``linear`` run with SEQCAST_HOME on a local S3 server against the same run on a local
folder, and reading on a new machine the runs that other workers recorded in the bucket's results tables.

The S3 server is moto's (``moto_server``), in its own process as a store would be on its own machine, on loopback.
Runs alternate local / S3 so both see the same load on a shared machine; each is a ``seqcast run`` process against
one real Prefect server, timed by its flow run's duration in Prefect (the run itself, not the process start-up).
Then ``--records`` copies of that run's rows are recorded in the bucket's tables by ``--writers`` worker hosts
(threads, each with its own cache, each committing through ``Results.record`` as a flow run does), and a machine
with an empty cache times ``seqcast sql`` counting every table's runs (a process, start-up included), then the same
again.

    .venv/bin/python -m bench.object_store                    # 3 runs each way, 1,000 records; from the repo root
    .venv/bin/python -m bench.object_store --runs 5 --records 1000 --out bench/results/object-store.md
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.compute as pc
from tabulate import tabulate

from seqcast.storage.objects import ObjectStore
from seqcast.storage.results import Results
from seqcast.storage.schemas import SCHEMAS, record_key
from tests.prefect_server import start_server, stop_server

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "seqcast-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                          region_name="us-east-1")
    for _ in range(100):
        try:
            client.create_bucket(Bucket=BUCKET)
            return process, endpoint
        except Exception:  # not listening yet
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not start")


def sql(env: dict[str, str], query: str) -> list[str]:
    """``seqcast sql QUERY --format csv`` in a process of its own: its data lines."""
    done = subprocess.run([sys.executable, "-m", "seqcast.app.cli", "sql", query, "--format", "csv"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"seqcast sql failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[1:]


def run_linear(env: dict[str, str], args: list[str]) -> tuple[str, float, float]:
    """One ``seqcast run --variant linear``: its run id, the flow run's duration in Prefect, the process's wall."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "seqcast.app.cli", "run", "--variant", "linear", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"seqcast run failed:\n{done.stderr[-3000:]}")
    (run_id,) = sql(env, "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")
    return run_id, flow_seconds(env, run_id), wall


def flow_seconds(env: dict[str, str], run_id: str) -> float:
    code = ("import sys; from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c: print(c.read_flow_run(sys.argv[1]).total_run_time"
            ".total_seconds())")
    out = subprocess.run([sys.executable, "-c", code, run_id], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def run_tables(results: Results, run_id: str) -> dict:
    """The rows ``run_id`` committed, table by table (its dataset's row included)."""
    found = {}
    for name, table in results.tables.open_all().items():
        if table is None or record_key(name) != "run_id" or "run_id" not in SCHEMAS[name].names:
            continue
        rows = table.to_pyarrow_dataset().to_table(filter=pc.field("run_id") == run_id)
        if rows.num_rows:
            found[name] = rows
    dataset_id = found["runs"].column("dataset_id")[0].as_py()
    found["datasets"] = results.tables.open("datasets").to_pyarrow_dataset().to_table(
        filter=pc.field("dataset_id") == dataset_id)
    return found


def write_copies(root: Path, remote: ObjectStore, run_id: str, n: int, writers: int) -> tuple[float, int]:
    """Record ``n`` runs with the rows of ``run_id`` under new run ids, from ``writers`` hosts side by side (each
    thread a host with its own cache and its own ``Results``); return the seconds and the tables a run writes."""
    tables = run_tables(Results(root, remote), run_id)
    hosts = [Results(root.with_name(f"writer-{i}"), remote) for i in range(writers)]

    def write(i):
        new = str(uuid.uuid4())
        rows = {name: table if name == "datasets" else
                table.set_column(table.column_names.index("run_id"), "run_id", [[new] * table.num_rows])
                for name, table in tables.items()}
        hosts[i % writers].record(new, rows)

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(n)))
    return time.perf_counter() - started, len(tables)


def timed_count(env: dict[str, str]) -> tuple[float, str]:
    """``seqcast sql`` of every run on a machine (a process, start-up included): seconds, and what it counted."""
    started = time.perf_counter()
    (counted,) = sql(env, "SELECT (SELECT count(*) FROM runs) || ' runs, ' || (SELECT count(*) FROM predictions) "
                          "|| ' predictions'")
    return time.perf_counter() - started, counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="linear runs on each store; default: 3")
    parser.add_argument("--records", type=int, default=1000, help="runs other workers record; default: 1000")
    parser.add_argument("--writers", type=int, default=8, help="worker hosts writing them; default: 8")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the linear runs; default: 20")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="seqcast-bench-s3-"))
    s3, endpoint = start_s3()
    server = start_server(work / "prefect")
    try:
        base = server.client_env(**CREDENTIALS, AWS_ENDPOINT_URL=endpoint, TF_NUM_INTRAOP_THREADS="2")
        local = {**base, "SEQCAST_HOME": str(work / "local")}
        remote = {**base, "SEQCAST_HOME": f"s3://{BUCKET}/bench", "SEQCAST_CACHE": str(work / "cache")}
        run_args = [f"--epochs={args.epochs}"]
        times = {"local folder": [], "S3 (moto, loopback)": []}
        run_id = None
        for i in range(args.runs):
            for name, env in (("local folder", local), ("S3 (moto, loopback)", remote)):
                rid, flow_s, wall_s = run_linear(env, run_args)
                times[name].append((flow_s, wall_s))
                print(f"run {i + 1}/{args.runs} on {name}: flow run {flow_s:.1f} s, process {wall_s:.1f} s",
                      file=sys.stderr, flush=True)
                if env is remote:
                    run_id = rid
        local_flow = statistics.median(t[0] for t in times["local folder"])
        rows = [[name, len(t), f"{statistics.median(x[0] for x in t):.1f}", f"{statistics.median(x[1] for x in t):.1f}",
                 f"{statistics.median(x[0] for x in t) / local_flow:.2f}x"] for name, t in times.items()]
        run_table = tabulate(rows, headers=["SEQCAST_HOME", "runs", "median flow run s", "median process s",
                                            "flow run vs local"], tablefmt="github")

        os.environ.update({k: v for k, v in remote.items() if k.startswith("AWS_")})
        write_s, per_run = write_copies(work / "cache", ObjectStore(remote["SEQCAST_HOME"]), run_id, args.records,
                                        args.writers)
        reader = {**remote, "SEQCAST_CACHE": str(work / "reader-cache")}
        first_s, first_out = timed_count(reader)
        again_s, again_out = timed_count(reader)
        sync_table = tabulate([
            [f"record {args.records} runs ({per_run} tables each) from {args.writers} hosts", f"{write_s:.1f}", ""],
            ["`seqcast sql` of every run on an empty machine", f"{first_s:.1f}", first_out],
            ["`seqcast sql` again", f"{again_s:.1f}", again_out],
        ], headers=["step", "s", "output"], tablefmt="github")
        load = os.getloadavg()
        text = (f"linear runs ({args.epochs} epochs, the default synthetic dataset), alternating:\n\n{run_table}\n\n"
                f"runs other workers recorded:\n\n{sync_table}\n\nload average at the end: "
                f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
        print(text)
        if args.out:
            args.out.write_text(text)
    finally:
        stop_server(server)
        s3.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
