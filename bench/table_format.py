"""The results on Delta tables (``storage/tables.py`` behind ``storage/results.py``) side by side with the record
format and its DuckDB file, measured in one invocation.

The record format's code is no longer in the tree: it is taken from git, ``storage/`` as of ``LEGACY_COMMIT`` (the
last commit that had it: ``storage/results.py``, ``storage/packs.py`` and the modules they import), written into a
temporary package ``legacy_storage`` with its ``seqcast.storage`` imports pointed there, and put on the cases'
``PYTHONPATH``. So this needs a git checkout that holds that commit.

Each case runs in a process of its own, so its peak RSS is its own (``ru_maxrss`` of the child); the record format
and the tables alternate case by case, so both see the same load on a shared machine:

- ``record N runs``: a writer records ``--runs`` runs of a forecast run's shape (5 tables: a dataset row, the run,
  12 metrics, 20 epochs of history, 40 predictions), one run after another, then they are made queryable: the
  record format writes each record, then loads them all into ``results.duckdb`` (a sync), the tables take each run
  through ``Results.record`` (what a flow run's record step calls) and need only a connection over them; timed to
  the first answer of ``SELECT count(*) FROM leaderboard``.
- the same locally for the tables alone, with ``seqcast results compact`` every ``--compact-every`` runs (its time
  included): a table's per-run cost grows with the small files it holds, which compaction merges.
- the same on moto's S3 server (its own process, on loopback): the record format uploads each record and a second
  machine syncs them (``Results.sync``: packs, fetches, load); ``Results.record`` commits to the bucket and a second
  ``Results`` (nothing cached) queries it.
- ``append 18M rows``: one run's per-step outputs of a 1M-series, 18-step run (``predictions``), written and made
  queryable (the record format: record, then load into DuckDB; the tables: one commit).
- ``one run of 100k``: a process opens the results of ``--many`` runs (18 predictions each, made beforehand and not
  timed; the tables compacted as ``seqcast results compact`` does) and reads one run's predictions.
- the size on disk of each home.

    .venv/bin/python bench/table_format.py                  # writes bench/results/table-format.md
    .venv/bin/python bench/table_format.py --runs 20 --many 2000 --big-rows 100000 --out /tmp/t.md   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "seqcast-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
PER_STEP = 18  # the horizon of the per-step outputs: 1M series -> 18M rows
LEGACY_COMMIT = "257274a"  # the last commit with the record format's code
LEGACY_PACKAGE = "legacy_storage"
PROGRESS_EVERY = 100  # runs between two progress lines of the recording cases (stderr)


def run_rows(run_id: str, dataset_id: str = "ds-bench") -> dict[str, list[dict] | pa.Table]:
    """One forecast run's rows: a dataset row, the run, 12 metrics, 20 epochs, 40 predictions."""
    now = datetime.now(UTC)
    n = 40
    return {
        "datasets": [{"dataset_id": dataset_id, "kind": "synthetic", "spec": "{}", "n_series": 240, "n_steps": 50,
                      "horizon": 1, "path": f"datasets/{dataset_id}", "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                      "content_hash": "xxh3_128:00"}],
        "runs": [{"run_id": run_id, "flow_run_id": run_id, "variant": "linear", "family": "dense",
                  "dataset_id": dataset_id, "horizon": 1, "params": "{}", "status": "completed", "started_at": now,
                  "finished_at": now, "epochs": 20, "code_version": "bench"}],
        "metrics": [{"run_id": run_id, "predictor": p, "split": s, "metric": m, "horizon_step": None, "value": 0.1}
                    for p in ("model", "naive") for s in ("valid", "test") for m in ("mse", "mae", "rmse")],
        "history": [{"run_id": run_id, "epoch": e, "loss": 1 / e, "val_loss": 1 / e} for e in range(1, 21)],
        "predictions": pa.table({"run_id": pa.repeat(run_id, n), "split": pa.repeat("test", n),
                                 "series_index": np.arange(n), "horizon_step": np.ones(n, np.int32),
                                 "y_true": np.zeros(n), "y_pred": np.full(n, 0.5)}),
    }


def big_predictions(run_id: str, rows: int) -> pa.Table:
    series = np.arange(rows) // PER_STEP
    return pa.table({"run_id": pa.repeat(run_id, rows), "split": pa.repeat("test", rows), "series_index": series,
                     "horizon_step": (np.arange(rows) % PER_STEP + 1).astype(np.int32),
                     "y_true": np.random.default_rng(0).normal(size=rows), "y_pred": np.zeros(rows)})


def few_predictions(run_id: str) -> pa.Table:
    return pa.table({"run_id": pa.repeat(run_id, PER_STEP), "split": pa.repeat("test", PER_STEP),
                     "series_index": np.zeros(PER_STEP, np.int64),
                     "horizon_step": np.arange(1, PER_STEP + 1, dtype=np.int32),
                     "y_true": np.zeros(PER_STEP), "y_pred": np.zeros(PER_STEP)})


# ---- the cases, each run in a process of its own ------------------------------------------------------------------

def build_legacy_package(where: Path, commit: str = LEGACY_COMMIT) -> Path:
    """Write ``storage/`` as of ``commit`` into ``where/legacy_storage``, its imports of ``seqcast.storage`` pointed
    at ``legacy_storage``; return ``where``, the folder to put on ``PYTHONPATH``."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout

    package = where / LEGACY_PACKAGE
    package.mkdir(parents=True)
    for path in git("ls-tree", "--name-only", f"{commit}:storage").split():
        if path.endswith(".py"):
            text = git("show", f"{commit}:storage/{path}")
            (package / path).write_text(re.sub(r"\bseqcast\.storage\b", LEGACY_PACKAGE, text))
    return where


def progress(what: str, n: int, started: float) -> None:
    if n % PROGRESS_EVERY == 0:
        print(f"  {what}: {n} runs in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def case_records(home: Path, runs: int, s3: str | None) -> dict:
    from legacy_storage import Store
    from legacy_storage.objects import ObjectStore

    remote = ObjectStore(s3) if s3 else None
    writer = Store(home / "writer", remote=remote, db=home / "writer.duckdb")
    started = time.perf_counter()
    for n in range(runs):
        writer.records.write(f"run-{n:06d}", run_rows(f"run-{n:06d}"))
        progress("records", n + 1, started)
    written = time.perf_counter() - started
    reader = writer if remote is None else Store(home / "reader", remote=remote, db=home / "reader.duckdb")
    report = reader.results.sync()
    answer = reader.results.query("SELECT count(*) FROM leaderboard")[1]
    return {"seconds": time.perf_counter() - started, "write_s": written, "loaded": len(report.loaded),
            "answer": answer[0][0]}


def case_tables(home: Path, runs: int, s3: str | None) -> dict:
    from seqcast.storage.objects import ObjectStore
    from seqcast.storage.results import Results

    remote = ObjectStore(s3) if s3 else None
    writer = Results(home / "writer", remote)  # as a flow run's record step: store.results.record(run_id, rows)
    started = time.perf_counter()
    for n in range(runs):
        writer.record(f"run-{n:06d}", run_rows(f"run-{n:06d}"))
        progress("tables", n + 1, started)
    written = time.perf_counter() - started
    # as another process or machine sees them: nothing cached (on S3, another machine's cache folder)
    reader = Results(home / ("reader" if remote else "writer"), remote)
    answer = reader.query("SELECT count(*) FROM leaderboard")[1]
    return {"seconds": time.perf_counter() - started, "write_s": written, "answer": answer[0][0]}


def case_tables_compacting(home: Path, runs: int, every: int) -> dict:
    """``case_tables`` on a local folder with ``seqcast results compact`` every ``every`` runs, its time included."""
    from seqcast.storage.results import Results

    writer = Results(home / "writer")
    started = time.perf_counter()
    for n in range(runs):
        writer.record(f"run-{n:06d}", run_rows(f"run-{n:06d}"))
        progress("tables, compacting", n + 1, started)
        if (n + 1) % every == 0:
            writer.compact()
    written = time.perf_counter() - started
    answer = Results(home / "writer").query("SELECT count(*) FROM leaderboard")[1]
    return {"seconds": time.perf_counter() - started, "write_s": written, "answer": answer[0][0]}


def case_big_records(home: Path, rows: int) -> dict:
    from legacy_storage.results import Results

    results = Results(home)
    table = big_predictions("run-big", rows)
    started = time.perf_counter()
    results.records.write("run-big", {"predictions": table, "runs": [{"run_id": "run-big", "status": "completed"}]})
    written = time.perf_counter() - started
    report = results.load(["run-big"])
    answer = results.query("SELECT count(*) FROM predictions")[1][0][0]
    return {"seconds": time.perf_counter() - started, "write_s": written, "loaded": len(report.loaded),
            "answer": answer}


def case_big_tables(home: Path, rows: int) -> dict:
    from seqcast.storage.results import Results

    table = big_predictions("run-big", rows)
    started = time.perf_counter()
    Results(home).record("run-big", {"predictions": table, "runs": [{"run_id": "run-big", "status": "completed"}]})
    written = time.perf_counter() - started
    answer = Results(home).query("SELECT count(*) FROM predictions")[1][0][0]
    return {"seconds": time.perf_counter() - started, "write_s": written, "answer": answer}


def setup_many_records(home: Path, many: int) -> dict:
    """``many`` runs straight into a results.duckdb (as loads of their records would leave it)."""
    import duckdb
    from legacy_storage.results import ensure_schema
    from legacy_storage.schemas import SCHEMAS, as_table

    home.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(home / "results.duckdb")) as con:
        ensure_schema(con)
        for start in range(0, many, 10_000):
            ids = [f"run-{n:06d}" for n in range(start, min(start + 10_000, many))]
            runs = as_table("runs", [{"run_id": r, "status": "completed", "variant": "linear"} for r in ids])
            predictions = pa.concat_tables([few_predictions(r) for r in ids]).cast(SCHEMAS["predictions"])
            con.register("runs_arrow", runs)
            con.register("predictions_arrow", predictions)
            con.execute("INSERT INTO runs BY NAME SELECT * FROM runs_arrow")
            con.execute("INSERT INTO predictions BY NAME SELECT * FROM predictions_arrow")
    return {}


def setup_many_tables(home: Path, many: int) -> dict:
    """``many`` runs in the tables, 1,000 runs a commit, then compacted."""
    from seqcast.storage.tables import Tables

    tables = Tables(home)
    for start in range(0, many, 1_000):
        tables.write_many({f"run-{n:06d}": {"runs": [{"run_id": f"run-{n:06d}", "status": "completed",
                                                       "variant": "linear"}],
                                             "predictions": few_predictions(f"run-{n:06d}")}
                           for n in range(start, min(start + 1_000, many))})
    tables.compact(retention_hours=0)
    return {}


def case_one_records(home: Path, run_id: str) -> dict:
    from legacy_storage.results import query

    started = time.perf_counter()
    rows = query(home / "results.duckdb", "SELECT * FROM predictions WHERE run_id = ?", [run_id])[1]
    return {"seconds": time.perf_counter() - started, "answer": len(rows)}


def case_one_tables(home: Path, run_id: str) -> dict:
    from seqcast.storage.results import Results

    started = time.perf_counter()
    rows = Results(home).query("SELECT * FROM predictions WHERE run_id = ?", [run_id])[1]
    return {"seconds": time.perf_counter() - started, "answer": len(rows)}


CASES = {"records": case_records, "tables": case_tables, "tables-compacting": case_tables_compacting,
         "big-records": case_big_records,
         "big-tables": case_big_tables, "many-records": setup_many_records, "many-tables": setup_many_tables,
         "one-records": case_one_records, "one-tables": case_one_tables}


def run_case(name: str, *args, env: dict[str, str]) -> dict:
    """Run one case in a process of its own; its result with ``peak_rss_mb`` (the process's maximum RSS)."""
    process = subprocess.Popen([sys.executable, "-m", "bench.table_format", "--case", name, json.dumps(args)],
                               cwd=REPO_ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"case {name} failed: {output[-2000:]}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def s3_size_mb(endpoint: str, prefix: str) -> float:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                          region_name="us-east-1")
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        total += sum(item["Size"] for item in page.get("Contents", []))
    return total / 1e6


def start_s3() -> tuple[subprocess.Popen, str]:
    """moto's S3 server in a process of its own on a free loopback port, with the bench's bucket."""
    import socket

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                          region_name="us-east-1")
    for _ in range(200):
        try:
            client.create_bucket(Bucket=BUCKET)
            return process, endpoint
        except Exception:  # not listening yet
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto's S3 server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs recorded one by one (default 1000)")
    parser.add_argument("--s3-runs", type=int, default=None, help="the same on S3 (default: --runs)")
    parser.add_argument("--big-rows", type=int, default=18_000_000, help="rows of the one big append (18M)")
    parser.add_argument("--compact-every", type=int, default=100,
                        help="also record --runs runs locally, compacting every N runs, tables only (0: not; "
                             "default 100)")
    parser.add_argument("--many", type=int, default=100_000, help="runs the one-run query picks from (100k)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "table-format.md")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("case_args", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        case_args = json.loads(args.case_args)
        case_args[0] = Path(case_args[0])
        print(json.dumps(CASES[args.case](*case_args)))
        return 0

    s3_runs = args.s3_runs or args.runs
    command = ".venv/bin/python bench/table_format.py " + " ".join(argv if argv is not None else sys.argv[1:])
    began = datetime.now(UTC)
    rows, sizes = [], []

    def report() -> str:
        """The page so far; written after every case, so a run cut short keeps what it measured."""
        table = tabulate(rows, headers=["case", "records + DuckDB s", "Delta tables s", "tables vs today",
                                        "writing per run ms (today / tables)", "today peak RSS MB",
                                        "tables peak RSS MB", "answer (today / tables)"], tablefmt="github")
        size_table = tabulate(sizes, headers=["home", "today MB", "Delta tables MB"], tablefmt="github")
        text = (f"# Results on Delta tables against the record format (`bench/table_format.py`)\n\n"
                f"`{command.strip()}`, {began:%Y-%m-%d %H:%M} UTC, the record format's code from commit "
                f"{LEGACY_COMMIT}, load average at the end {os.getloadavg()[0]:.1f}.\n\n{table}\n\n"
                f"size on disk:\n\n{size_table}\n")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        return text

    work = Path(tempfile.mkdtemp(prefix="seqcast-bench-tables-"))
    legacy = build_legacy_package(work / "legacy")
    path = os.pathsep.join(filter(None, [str(legacy), os.environ.get("PYTHONPATH")]))
    local = {"PYTHONPATH": path}
    s3, endpoint = start_s3()
    remote = {**local, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    try:
        def measure(what: str, today_case: str, tables_case: str, today_args: list, tables_args: list,
                    env: dict[str, str], runs: int | None = None):
            today = run_case(today_case, *today_args, env=env)
            delta = run_case(tables_case, *tables_args, env=env)
            per_run = (f"{1000 * today['write_s'] / runs:.0f} / {1000 * delta['write_s'] / runs:.0f}" if runs
                       else "")
            rows.append([what, f"{today['seconds']:.2f}", f"{delta['seconds']:.2f}",
                         f"{delta['seconds'] / today['seconds']:.2f}x", per_run, f"{today['peak_rss_mb']:.0f}",
                         f"{delta['peak_rss_mb']:.0f}", f"{today.get('answer')} / {delta.get('answer')}"])
            print(rows[-1], flush=True)
            report()
            return today, delta

        # the longest case, S3, last: a run cut short still has the others
        today_local, _ = measure(f"record {args.runs} runs, local folder", "records", "tables",
                                 [str(work / "rec-local"), args.runs, None], [str(work / "tab-local"), args.runs, None],
                                 local, args.runs)
        sizes.append([f"{args.runs} runs, local folder", f"{size_mb(work / 'rec-local' / 'writer'):.1f} records + "
                      f"{size_mb(work / 'rec-local') - size_mb(work / 'rec-local' / 'writer'):.1f} results.duckdb",
                      f"{size_mb(work / 'tab-local'):.1f}"])
        if args.compact_every:
            # the tables alone: what the per-run cost is when compaction keeps the small files few
            delta = run_case("tables-compacting", str(work / "tab-compacting"), args.runs, args.compact_every,
                             env=local)
            rows.append([f"record {args.runs} runs, local, compacted every {args.compact_every}", "-",
                         f"{delta['seconds']:.2f}", f"{delta['seconds'] / today_local['seconds']:.2f}x",
                         f"- / {1000 * delta['write_s'] / args.runs:.0f}", "-", f"{delta['peak_rss_mb']:.0f}",
                         f"- / {delta['answer']}"])
            print(rows[-1], flush=True)
            report()
        measure(f"append {args.big_rows:,} rows (one run)", "big-records", "big-tables",
                [str(work / "rec-big"), args.big_rows], [str(work / "tab-big"), args.big_rows], local)
        sizes.append([f"{args.big_rows:,} rows", f"{size_mb(work / 'rec-big'):.1f}",
                      f"{size_mb(work / 'tab-big'):.1f}"])
        shutil.rmtree(work / "rec-big", ignore_errors=True)
        shutil.rmtree(work / "tab-big", ignore_errors=True)
        run_case("many-records", str(work / "rec-many"), args.many, env=local)
        run_case("many-tables", str(work / "tab-many"), args.many, env=local)
        picked = f"run-{args.many // 2:06d}"
        measure(f"read one run of {args.many:,}", "one-records", "one-tables", [str(work / "rec-many"), picked],
                [str(work / "tab-many"), picked], local)
        sizes.append([f"{args.many:,} runs x {PER_STEP} predictions", f"{size_mb(work / 'rec-many'):.1f} "
                      "results.duckdb only", f"{size_mb(work / 'tab-many'):.1f} compacted"])
        measure(f"record {s3_runs} runs, S3 (moto)", "records", "tables",
                [str(work / "rec-s3"), s3_runs, f"s3://{BUCKET}/records-home"],
                [str(work / "tab-s3"), s3_runs, f"s3://{BUCKET}/tables-home"], remote, s3_runs)
        sizes.append([f"{s3_runs} runs, S3 (bucket)", f"{s3_size_mb(endpoint, 'records-home'):.1f}",
                      f"{s3_size_mb(endpoint, 'tables-home'):.1f}"])
    finally:
        s3.terminate()
        s3.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
