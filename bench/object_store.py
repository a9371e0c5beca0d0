"""The object store's cost: a ``linear`` run with SEQCAST_HOME on a local S3 server against the same run on a local
folder, and ``seqcast results sync`` of records that other workers wrote.

The S3 server is moto's (``moto_server``), in its own process as a store would be on its own machine, on loopback.
Runs alternate local / S3 so both see the same load on a shared machine; each is a ``seqcast run`` process against
one real Prefect server, timed by its flow run's duration in Prefect (the run itself, not the process start-up).
Then ``--records`` copies of that run's record are written to the bucket by ``--writers`` worker hosts (threads,
each with its own cache, so each packs what it writes), and a machine with an empty cache and database times
``seqcast results sync`` (a process, start-up included), then a second sync with nothing new; then a second new
machine syncs, after the first one packed what it fetched one by one.

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

import duckdb
import pyarrow.parquet as pq
from tabulate import tabulate

from seqcast.storage import Store
from seqcast.storage.objects import ObjectStore
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


def run_linear(env: dict[str, str], db: Path, args: list[str]) -> tuple[str, float, float]:
    """One ``seqcast run --variant linear``: its run id, the flow run's duration in Prefect, the process's wall."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "seqcast.app.cli", "run", "--variant", "linear", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"seqcast run failed:\n{done.stderr[-3000:]}")
    with duckdb.connect(str(db), read_only=True) as con:
        run_id = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    return run_id, flow_seconds(env, run_id), wall


def flow_seconds(env: dict[str, str], run_id: str) -> float:
    code = ("import sys; from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c: print(c.read_flow_run(sys.argv[1]).total_run_time"
            ".total_seconds())")
    out = subprocess.run([sys.executable, "-c", code, run_id], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def write_copies(store: Store, run_id: str, n: int, writers: int) -> float:
    """Write ``n`` records with the tables of ``run_id``'s record under new run ids, from ``writers`` hosts side by
    side (each thread a host with its own cache)."""
    tables = {name: pq.read_table(path) for name, path in store.records.files(run_id).items()}

    def write(i):
        new = str(uuid.uuid4())
        rows = {}
        for name, table in tables.items():
            if "run_id" in table.column_names:
                table = table.set_column(table.column_names.index("run_id"), "run_id",
                                         [[new] * table.num_rows])
            rows[name] = table
        Store(store.root.with_name(f"writer-{i % writers}"), remote=store.remote).records.write(new, rows)

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(n)))
    return time.perf_counter() - started


def timed_sync(env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "seqcast.app.cli", "results", "sync"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"seqcast results sync failed:\n{done.stderr[-3000:]}")
    brought = [line for line in done.stderr.splitlines() if " brought " in line]
    return time.perf_counter() - started, "; ".join([*brought[-1:], done.stdout.strip().splitlines()[-1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="linear runs on each store; default: 3")
    parser.add_argument("--records", type=int, default=1000, help="records other workers write; default: 1000")
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
        remote = {**base, "SEQCAST_HOME": f"s3://{BUCKET}/bench", "SEQCAST_CACHE": str(work / "cache"),
                  "SEQCAST_DB": str(work / "s3-results.duckdb")}
        run_args = [f"--epochs={args.epochs}"]
        times = {"local folder": [], "S3 (moto, loopback)": []}
        run_id = None
        for i in range(args.runs):
            for name, env, db in (("local folder", local, work / "local" / "results.duckdb"),
                                  ("S3 (moto, loopback)", remote, work / "s3-results.duckdb")):
                rid, flow_s, wall_s = run_linear(env, db, run_args)
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
        writer = Store(work / "cache", remote=ObjectStore(remote["SEQCAST_HOME"]))
        write_s = write_copies(writer, run_id, args.records, args.writers)
        per_record = len(writer.records.files(run_id))
        reader = {**remote, "SEQCAST_CACHE": str(work / "reader-cache"), "SEQCAST_DB": str(work / "reader.duckdb")}
        first_s, first_out = timed_sync(reader)
        again_s, again_out = timed_sync(reader)
        second = {**remote, "SEQCAST_CACHE": str(work / "second-cache"), "SEQCAST_DB": str(work / "second.duckdb")}
        second_s, second_out = timed_sync(second)
        sync_table = tabulate([
            [f"write {args.records} records ({per_record} files each) from {args.writers} hosts", f"{write_s:.1f}",
             ""],
            ["`seqcast results sync` on an empty machine", f"{first_s:.1f}", first_out],
            ["`seqcast results sync` again, nothing new", f"{again_s:.1f}", again_out],
            ["`seqcast results sync` on a second empty machine", f"{second_s:.1f}", second_out],
        ], headers=["step", "s", "output"], tablefmt="github")
        load = os.getloadavg()
        text = (f"linear runs ({args.epochs} epochs, the default synthetic dataset), alternating:\n\n{run_table}\n\n"
                f"records of other workers:\n\n{sync_table}\n\nload average at the end: "
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
