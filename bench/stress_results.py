"""Stress the results store: N concurrent forecast flow runs, each its own OS process, on one SEQCAST_HOME.

One real Prefect server, the ``naive`` variant on tiny data (no TensorFlow), a different seed per run.
Optionally a process holds the database read-write (like a user's DuckDB shell) for part of the time.
Prints a markdown table of what was expected and what the database holds, before and after a sync.

    .venv/bin/python -m bench.stress_results                       # 20 runs, from the repository root
    .venv/bin/python -m bench.stress_results -n 8 --hold-lock 20 --lock-timeout 5
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import duckdb

from seqcast.storage.results import pending_records, sync
from tests.prefect_server import start_server, stop_server

REPO_ROOT = Path(__file__).resolve().parent.parent

TINY = {"n_series": 240, "n_train": 160, "n_valid": 40, "n_test": 40}
# A naive (one-step) run: (model, naive) x (valid, test) x (mse, mae, rmse); one prediction per test series.
METRICS_PER_RUN, PREDICTIONS_PER_RUN = 12, TINY["n_test"]
LOCK_RETRIES = re.compile(r"(\d+) lock retries")


def start_run(env: dict[str, str], seed: int) -> subprocess.Popen:
    args = ", ".join(f"{k}={v}" for k, v in TINY.items())
    code = f"from seqcast.flows.forecast import forecast; forecast(variant='naive', {args}, seed={seed})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def hold_lock(db: Path, seconds: float) -> subprocess.Popen:
    """A process that keeps the database open read-write for ``seconds``."""
    code = textwrap.dedent(f"""
        import duckdb, time
        while True:  # a run may be loading right now: take the lock as soon as it is free
            try:
                con = duckdb.connect({str(db)!r})
                break
            except duckdb.IOException:
                time.sleep(0.01)
        print("held", flush=True)
        time.sleep({seconds})
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "held":
        raise RuntimeError("the lock-holding process could not open the database")
    return process


def counts(db: Path) -> dict[str, int]:
    """Rows per table and duplicate keys; readers open read-only and close at once."""
    empty = {"runs": 0, "metrics": 0, "predictions": 0, "duplicates": 0}
    if not db.exists():
        return empty
    with duckdb.connect(str(db), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'").fetchone()[0]:
            return empty  # a file that nothing has loaded into yet
        found = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics", "predictions")}
        found["duplicates"] = sum(con.execute(sql).fetchone()[0] for sql in (
            "SELECT count(*) - count(DISTINCT run_id) FROM runs",
            "SELECT count(*) - count(DISTINCT (run_id, predictor, split, metric, horizon_step)) FROM metrics",
            "SELECT count(*) - count(DISTINCT (run_id, split, series_index, horizon_step)) FROM predictions"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=20, help="concurrent flow runs (default 20)")
    parser.add_argument("--hold-lock", type=float, default=0.0, metavar="S",
                        help="hold the database read-write for S seconds from the first committed record (default: no)")
    parser.add_argument("--lock-timeout", type=float, default=None, metavar="S",
                        help="SEQCAST_DB_LOCK_TIMEOUT for the runs (default: the library's 30 s)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to keep state (default: a temp dir)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="seqcast-stress-"))
    home = workdir / "seqcast-home"
    db, records = home / "results.duckdb", home / "records"
    home.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir / "prefect-server")
    holder = None
    try:
        extra = {"SEQCAST_HOME": str(home)}
        if args.lock_timeout is not None:
            extra["SEQCAST_DB_LOCK_TIMEOUT"] = str(args.lock_timeout)
        env = server.client_env(**extra)
        started = time.perf_counter()
        processes = [start_run(env, seed) for seed in range(args.runs)]
        if args.hold_lock:
            # Take the lock as the first run finishes, so that the hold overlaps the runs' loads.
            while not (records.is_dir() and any(records.iterdir())) and any(p.poll() is None for p in processes):
                time.sleep(0.05)
            holder = hold_lock(db, args.hold_lock)
        outputs = [p.communicate()[0] for p in processes]
        wall_s = time.perf_counter() - started
        if holder is not None:
            holder.wait()
        completed = sum(p.returncode == 0 for p in processes)
        retries = [sum(int(n) for n in LOCK_RETRIES.findall(out)) for out in outputs]
        left_waiting = sum("not yet in DuckDB" in out for out in outputs)
        after_runs, pending_after_runs = counts(db), len(pending_records(records, db))
        sync_report = sync(records, db)
        after_sync, pending_after_sync = counts(db), len(pending_records(records, db))
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        stop_server(server)

    for process, output in zip(processes, outputs):
        if process.returncode != 0:
            print(f"run failed with {process.returncode}:\n{output[-2000:]}", file=sys.stderr)
    expected = {"runs": args.runs, "metrics": args.runs * METRICS_PER_RUN,
                "predictions": args.runs * PREDICTIONS_PER_RUN}

    def found(c: dict[str, int]) -> str:
        return " / ".join(str(c[t]) for t in ("runs", "metrics", "predictions"))

    lines = [
        (f"Stress run: {args.runs} concurrent naive flow runs, one Prefect server, one SEQCAST_HOME; "
         + (f"another process held the database read-write for {args.hold_lock:g} s from the first committed "
            f"record; " if args.hold_lock else "no other process held the database; ")
         + f"SEQCAST_DB_LOCK_TIMEOUT={args.lock_timeout if args.lock_timeout is not None else '30 (default)'}"),
        "",
        "| measure | value |",
        "|---|---|",
        f"| runs started | {args.runs} |",
        f"| runs completed | {completed} |",
        f"| rows expected (runs / metrics / predictions) | {found(expected)} |",
        f"| rows found after runs | {found(after_runs)} |",
        f"| rows found after sync | {found(after_sync)} |",
        f"| duplicate rows (after runs / after sync) | {after_runs['duplicates']} / {after_sync['duplicates']} |",
        f"| lock retries seen (total, in how many runs) | {sum(retries)} in {sum(r > 0 for r in retries)} runs |",
        f"| runs whose own load gave up (results left waiting in the record) | {left_waiting} |",
        f"| records pending after runs | {pending_after_runs} |",
        f"| records pending after sync | {pending_after_sync} (sync loaded {len(sync_report.loaded)}) |",
        f"| wall time of the runs | {wall_s:.0f} s |",
    ]
    print("\n".join(lines))
    ok = completed == args.runs and after_sync == {**expected, "duplicates": 0} and pending_after_sync == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
