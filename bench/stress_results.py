"""Stress the results tables: N concurrent forecast flow runs, each its own OS process, on one SEQCAST_HOME.

One real Prefect server, the ``naive`` variant on tiny data (no TensorFlow), a different seed per run; every run
commits its rows to the Delta tables as a flow run does (one commit per table). Optionally another process keeps a
DuckDB connection open over the tables (like a user's shell) while the runs commit. Prints a markdown table of what
was expected and what the tables hold: rows, duplicates, each table's version.

    .venv/bin/python -m bench.stress_results                       # 20 runs, from the repository root
    .venv/bin/python -m bench.stress_results -n 8 --hold-reader 20
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from seqcast.storage.results import Results
from tests.prefect_server import start_server, stop_server

REPO_ROOT = Path(__file__).resolve().parent.parent

TINY = {"n_series": 240, "n_train": 160, "n_valid": 40, "n_test": 40}
# A naive (one-step) run: (model, naive) x (valid, test) x (mse, mae, rmse); one prediction per test series.
METRICS_PER_RUN, PREDICTIONS_PER_RUN = 12, TINY["n_test"]


def start_run(env: dict[str, str], seed: int) -> subprocess.Popen:
    args = ", ".join(f"{k}={v}" for k, v in TINY.items())
    code = f"from seqcast.flows.forecast import forecast; forecast(variant='naive', {args}, seed={seed})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def hold_reader(home: Path, seconds: float) -> subprocess.Popen:
    """A process that keeps a DuckDB connection open over the tables for ``seconds``, querying now and then."""
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from seqcast.storage.table_queries import connect
        from seqcast.storage.tables import Tables
        con = connect(Tables(Path({str(home)!r})))
        print("open", flush=True)
        end = time.monotonic() + {seconds}
        while time.monotonic() < end:
            con.execute("SELECT count(*) FROM leaderboard").fetchall()
            time.sleep(0.5)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "open":
        raise RuntimeError("the reading process could not open the tables")
    return process


def counts(home: Path) -> dict[str, int]:
    """Rows per table and duplicate keys, read from the tables as any process reads them."""
    results = Results(home)
    one = lambda sql: results.query(sql)[1][0][0]  # noqa: E731
    found = {t: one(f"SELECT count(*) FROM {t}") for t in ("runs", "metrics", "predictions")}
    found["duplicates"] = sum(one(sql) for sql in (
        "SELECT count(*) - count(DISTINCT run_id) FROM runs",
        "SELECT count(*) - count(DISTINCT (run_id, predictor, split, metric, horizon_step)) FROM metrics",
        "SELECT count(*) - count(DISTINCT (run_id, split, series_index, horizon_step)) FROM predictions"))
    return found


def versions(home: Path) -> dict[str, int]:
    """Each table's version: its commits so far, less one."""
    opened = Results(home).tables.open_all()
    return {name: table.version() for name, table in opened.items() if table is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=20, help="concurrent flow runs (default 20)")
    parser.add_argument("--hold-reader", type=float, default=0.0, metavar="S",
                        help="keep a DuckDB connection open over the tables for S seconds from the first commit "
                             "(default: no)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to keep state (default: a temp dir)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="seqcast-stress-"))
    home = workdir / "seqcast-home"
    home.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir / "prefect-server")
    reader = None
    try:
        env = server.client_env(SEQCAST_HOME=str(home))
        started = time.perf_counter()
        processes = [start_run(env, seed) for seed in range(args.runs)]
        if args.hold_reader:
            # open the connection once the first run committed, so that it stays open over the others' commits
            runs_log = home / "tables" / "runs" / "_delta_log"
            while not (runs_log.is_dir() and any(runs_log.glob("*.json"))) and \
                    any(p.poll() is None for p in processes):
                time.sleep(0.05)
            reader = hold_reader(home, args.hold_reader)
        outputs = [p.communicate()[0] for p in processes]
        wall_s = time.perf_counter() - started
        reader_ok = reader is None or reader.wait() == 0
        completed = sum(p.returncode == 0 for p in processes)
        found, committed = counts(home), versions(home)
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        stop_server(server)

    for process, output in zip(processes, outputs):
        if process.returncode != 0:
            print(f"run failed with {process.returncode}:\n{output[-2000:]}", file=sys.stderr)
    expected = {"runs": args.runs, "metrics": args.runs * METRICS_PER_RUN,
                "predictions": args.runs * PREDICTIONS_PER_RUN}

    reader_state = "-" if not args.hold_reader else "held and queried throughout" if reader_ok else "failed"

    def rows(c: dict[str, int]) -> str:
        return " / ".join(str(c[t]) for t in ("runs", "metrics", "predictions"))

    lines = [
        (f"Stress run: {args.runs} concurrent naive flow runs, one Prefect server, one SEQCAST_HOME (Delta tables); "
         + (f"another process kept a DuckDB connection open over the tables for {args.hold_reader:g} s from the "
            f"first commit" if args.hold_reader else "no other process read the tables meanwhile")),
        "",
        "| measure | value |",
        "|---|---|",
        f"| runs started | {args.runs} |",
        f"| runs completed | {completed} |",
        f"| rows expected (runs / metrics / predictions) | {rows(expected)} |",
        f"| rows found after the runs | {rows(found)} |",
        f"| duplicate rows | {found['duplicates']} |",
        f"| table versions (runs / metrics / predictions / datasets) | "
        f"{' / '.join(str(committed.get(t)) for t in ('runs', 'metrics', 'predictions', 'datasets'))} |",
        f"| the reader's connection | {reader_state} |",
        f"| wall time of the runs | {wall_s:.0f} s |",
    ]
    print("\n".join(lines))
    ok = completed == args.runs and found == {**expected, "duplicates": 0} and reader_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
