"""Neural training on windows sampled per batch against every stored window per epoch, on M3 monthly and on panels.

Each run of ``seqcast run`` its own process under ``/usr/bin/time`` (wall time and peak RSS its own),
both ways in the same invocation: ``--steps-per-epoch 0`` fits every stored training window once per epoch (the
path before sampling), the default draws ``steps_per_epoch`` batches per epoch from the series
(seqcast/training/windows.py).

- accuracy: M3 monthly (``seqcast ingest --benchmark m3-monthly``), ``mlp`` and ``nbeats_generic`` with the M3
  benchmark's training settings (seqcast/evaluation/m3_benchmark.py), test sMAPE from ``benchmark_scores``;
- seeds (not run by default): the same on M3 monthly for several training seeds, through the core training
  functions in one process, test sMAPE only, since one seed's score moves by a few tenths;
- scale: ``mlp`` for ``--epochs`` epochs on panels of ``--copies`` noisy copies of M3 monthly (bench/scale.py's
  generator), seconds per epoch (the median after the first, which compiles) and peak RSS of the whole run.

    .venv/bin/python bench/streaming.py [--copies 2 --copies 20] [--epochs 3] [--parts accuracy,seeds,scale]
                                        [--seed N ...] [--variant V ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scale import HORIZON, make_panel, seqcast_env, timed  # noqa: E402
from seqcast.config.params import ForecastParams  # noqa: E402
from seqcast.evaluation.m3_benchmark import training_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SEQCAST = [sys.executable, "-m", "seqcast.app.cli"]
VARIANTS = ("mlp", "nbeats_generic")
PARTS = ("accuracy", "seeds", "scale")
DEFAULT_STEPS = ForecastParams.model_fields["steps_per_epoch"].default


def ingest(args: list[str], env: dict, log: Path) -> tuple[str, dict]:
    result = timed([*SEQCAST, "ingest", *args], env, log)
    found = [line.split("--dataset-id ")[-1].strip() for line in result["log"].splitlines() if "--dataset-id " in line]
    if result["rc"] != 0 or not found:
        raise SystemExit(f"ingest failed (exit {result['rc']}); see {log}")
    return found[-1], result


def query(sql: str, env: dict) -> list[dict]:
    out = subprocess.run([*SEQCAST, "sql", sql, "--format", "json"], env=env, capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"query failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def run(variant: str, dataset_id: str, options: dict, env: dict, log: Path) -> dict:
    """One ``seqcast run``: its wall time, peak RSS, test sMAPE, epochs, train seconds and seconds per epoch."""
    flags = [part for key, value in options.items() for part in (f"--{key.replace('_', '-')}", str(value))]
    measured = timed([*SEQCAST, "run", "--variant", variant, "--dataset-id", dataset_id, *flags], env, log)
    (row,) = query("SELECT r.run_id, r.epochs, r.train_seconds, b.smape FROM runs r JOIN benchmark_scores b "
                   "USING (run_id) WHERE b.split = 'test' AND r.finished_at = (SELECT max(finished_at) FROM runs)",
                   env)
    epochs = [r["seconds"] for r in query(f"SELECT seconds FROM history WHERE run_id = '{row['run_id']}' "
                                          f"ORDER BY epoch", env)]
    later = sorted(epochs[1:]) or epochs
    return {**measured, **row, "epoch_s": later[len(later) // 2]}


def mode(steps: int) -> str:
    return "every stored window" if steps == 0 else f"sampled, at most {steps} batches"


def accuracy(work: Path) -> list[str]:
    env = seqcast_env(work, "m3")
    dataset_id, _ = ingest(["--benchmark", "m3-monthly"], env, work / "m3-ingest.log")
    lines = ["| variant | training windows | test sMAPE | epochs | train s | s per epoch | run s | peak RSS GB |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        for steps in (0, DEFAULT_STEPS):
            r = run(variant, dataset_id, {**training_settings(variant), "steps_per_epoch": steps}, env,
                    work / f"m3-{variant}-{steps}.log")
            lines.append(f"| {variant} | {mode(steps)} | {r['smape']:.2f} | {r['epochs']} | {r['train_seconds']:.1f} "
                         f"| {r['epoch_s']:.1f} | {r['seconds']:.1f} | {r['rss_gb']:.2f} |")
            print(lines[-1], file=sys.stderr)
    return lines


def trained_smape(home: Path, dataset_id: str, variant: str, seed: int, steps: int) -> tuple[float, int]:
    """Train ``variant`` through the core functions as the train task would; its test sMAPE and epochs."""
    import logging

    from seqcast.data.scaling import Scaler
    from seqcast.evaluation.point import smape_steps
    from seqcast.models.registry import get_variant
    from seqcast.storage import Store
    from seqcast.tasks.train import training_panel
    from seqcast.training.fit import forecast, train, train_streaming

    store, logger = Store(home), logging.getLogger("bench")
    ref = store.datasets.require(dataset_id)
    scaler = Scaler.from_dict(ref.manifest["scaling"])
    params = ForecastParams(variant=variant, dataset_id=dataset_id, seed=seed, steps_per_epoch=steps,
                            **training_settings(variant)).for_dataset(ref.manifest)
    if steps:
        result = train_streaming(params, training_panel(store.datasets, ref), logger)
    else:
        splits = [scaler.transform(*store.datasets.read_windows(ref, part)) for part in ("train", "valid")]
        result = train(params, *splits, logger)
    test, ids = store.datasets.read_windows(ref, "test")
    n_steps = params.n_steps
    predicted = forecast(get_variant(variant), result.model, scaler.transform(test, ids)[:, :n_steps, np.newaxis],
                         params.effective_horizon, params.window_norm)
    smape = smape_steps(test[:, n_steps:], scaler.inverse(predicted, ids)).mean(axis=1).mean()
    return float(smape), result.epochs


def seeds(work: Path, variants: list[str], seed_list: list[int]) -> list[str]:
    env = seqcast_env(work, "m3-seeds")
    dataset_id, _ = ingest(["--benchmark", "m3-monthly"], env, work / "m3-seeds-ingest.log")
    os.environ["SEQCAST_HOME"] = env["SEQCAST_HOME"]
    lines = ["| variant | training windows | " + " | ".join(f"seed {s}" for s in seed_list) + " | mean |",
             "|---|---|" + "---|" * (len(seed_list) + 1)]
    for variant in variants:
        for steps in (0, DEFAULT_STEPS):
            scores = [trained_smape(Path(env["SEQCAST_HOME"]), dataset_id, variant, seed, steps)[0]
                      for seed in seed_list]
            lines.append(f"| {variant} | {mode(steps)} | " + " | ".join(f"{s:.2f}" for s in scores)
                         + f" | {np.mean(scores):.2f} |")
            print(lines[-1], file=sys.stderr)
    return lines


def scale(work: Path, copies: list[int], epochs: int) -> list[str]:
    lines = ["| series | training windows | s per epoch | train s | run s | peak RSS GB | test sMAPE |",
             "|---|---|---|---|---|---|---|"]
    for n in copies:
        panel, env = work / f"panel-{n}.parquet", seqcast_env(work, f"panel-{n}")
        n_series, _ = make_panel(n, 0, panel)
        dataset_id, _ = ingest([str(panel), "--split", "last-horizon", "--horizon", str(HORIZON), "--short-series",
                                "pad"], env, work / f"ingest-{n}.log")
        panel.unlink()
        for steps in (0, DEFAULT_STEPS):
            r = run("mlp", dataset_id, {"epochs": epochs, "patience": epochs, "steps_per_epoch": steps}, env,
                    work / f"panel-{n}-{steps}.log")
            lines.append(f"| {n_series:,} | {mode(steps)} | {r['epoch_s']:.1f} | {r['train_seconds']:.1f} | "
                         f"{r['seconds']:.1f} | {r['rss_gb']:.2f} | {r['smape']:.2f} |")
            print(lines[-1], file=sys.stderr)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, action="append", help="panels of this many copies of M3 monthly "
                                                                     "(1,428 series each); repeatable; default: 2, 20")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each scale run; default: 3")
    parser.add_argument("--seed", type=int, action="append", help="seeds of the seeds part; repeatable; default: "
                                                                   "1, 2, 3")
    parser.add_argument("--variant", action="append",
                        help=f"variants of the seeds part; default: {', '.join(VARIANTS)}")
    parser.add_argument("--parts", default="accuracy,scale", help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--work", default=None, help="work folder; default: a temporary folder, removed after")
    parser.add_argument("--out", default=str(RESULTS / "streaming.md"), help="markdown file for the tables")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(set(parts) - set(PARTS)))}; parts: {', '.join(PARTS)}")
    copies = args.copies or [2, 20]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="seqcast-streaming-"))
    work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["bench/streaming.py", *(f"--copies {n}" for n in copies), f"--epochs {args.epochs}",
                        f"--parts {','.join(parts)}", *(f"--seed {n}" for n in args.seed or []),
                        *(f"--variant {v}" for v in args.variant or [])])
    sections = [f"# Neural training on sampled windows: `{command}`\n",
                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} cores shared with other work (load average {os.getloadavg()[0]:.1f} at the start). "
                f"A row of the accuracy and scale tables is one `seqcast run` process under `/usr/bin/time`: wall "
                f"time and peak RSS of the whole command (ingest apart). `every stored window`: "
                f"`--steps-per-epoch 0`; `sampled`: the default.\n"]
    try:
        if "accuracy" in parts:
            sections += ["## M3 monthly (1,428 series), the M3 benchmark's training settings\n", *accuracy(work), ""]
        if "seeds" in parts:
            sections += ["## M3 monthly, test sMAPE by training seed (the core functions, in one process)\n",
                         *seeds(work, args.variant or list(VARIANTS), args.seed or [1, 2, 3]), ""]
        if "scale" in parts:
            sections += [f"## mlp, {args.epochs} epochs, on panels of noisy copies of M3 monthly\n",
                         *scale(work, copies, args.epochs), ""]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text("\n".join(sections))
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
