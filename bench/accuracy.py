"""Accuracy across seeds: seqcast's flow against the plain-Keras reference for one variant, seed by seed.

One run's valid MSE can hinge on float rounding. ln_rnn is the case in point: XLA and plain TensorFlow compute its
gradients equal to about 1e-6, yet the two trajectories part within a few epochs and early stopping (patience 5)
ends them at different epochs, 10% apart in valid MSE; the reference alone gives different figures in different
processes. So one pair does not tell which side is more accurate; this compares them over several seeds.

For each seed both sides generate the same series and draw the same initial weights: seqcast's forecast flow runs
with ``--seed``, the reference script's own code with its two ``42`` seeds replaced by the seed. Every run is its own
process (seqcast's with its own ephemeral Prefect server and ``SEQCAST_HOME`` in a temp dir), ``--jobs`` at a time
with ``cores / jobs`` TensorFlow threads each; only the valid MSEs are compared, not the times.

    .venv/bin/python bench/accuracy.py ln_rnn --seeds 42 43 44 [--jobs 2] [--epochs 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.speed import DEFAULT_REFERENCE  # noqa: E402

REFERENCE_RUN = r"""
import json, sys
import keras, numpy as np
sys.path.insert(0, sys.argv[1])
from bench.speed import load_reference, run_reference
path, name, seed, epochs = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
numpy_seed, keras_seed = np.random.seed, keras.utils.set_random_seed
np.random.seed = lambda s=None: numpy_seed(seed if s == 42 else s)  # the script seeds with a literal 42
keras.utils.set_random_seed = lambda s: keras_seed(seed if s == 42 else s)
print(json.dumps(run_reference(load_reference(path), name, epochs)))
"""


def seqcast_command(variant: str, seed: int, epochs: int) -> list[str]:
    return [sys.executable, "-m", "seqcast.app.cli", "run", "--variant", variant, "--seed", str(seed),
            "--epochs", str(epochs), "--jobs", "1"]


def seqcast_result(home: Path, variant: str) -> dict:
    from seqcast.storage.results import Results

    _, rows = Results(home).query("SELECT valid_mse, epochs FROM leaderboard WHERE variant = ?", [variant])
    (valid_mse, epochs), = rows
    return {"valid_mse": valid_mse, "epochs": epochs}


def main() -> int:
    from seqcast.flows.execution import available_cores
    from seqcast.models.registry import get_variant

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=available_cores(), help="runs at once (default: one per core)")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    try:
        if not get_variant(args.variant).trainable:
            parser.error(f"variant {args.variant!r} trains no model of its own")
    except ValueError as exc:
        parser.error(str(exc))
    if args.jobs < 1 or args.epochs < 1:
        parser.error("--jobs and --epochs must be at least 1")
    if not args.reference.is_file():
        parser.error(f"reference script not found: {args.reference}")

    threads = str(max(1, available_cores() // args.jobs))
    work = Path(tempfile.mkdtemp(prefix="seqcast-accuracy-"))
    base_env = {**os.environ, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
                "TF_CPP_MIN_LOG_LEVEL": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # a busy machine starts it slowly
    pending = []  # seed by seed, so that an interrupted run still has complete pairs; the reference first (slower)
    for seed in args.seeds:
        pending.append(("reference", seed, [sys.executable, "-c", REFERENCE_RUN, str(ROOT), str(args.reference),
                                            args.variant, str(seed), str(args.epochs)], base_env))
        home = work / f"seqcast-{seed}"
        pending.append(("seqcast", seed, seqcast_command(args.variant, seed, args.epochs),
                        {**base_env, "SEQCAST_HOME": str(home), "PREFECT_HOME": str(work / f"prefect-{seed}")}))
    print(f"accuracy: {args.variant}, seeds {args.seeds}, {args.jobs} run(s) at once with {threads} TensorFlow "
          f"thread(s) each; logs in {work}", file=sys.stderr, flush=True)
    results: dict[tuple[str, int], dict] = {}
    running: list[tuple[str, int, subprocess.Popen, float]] = []
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                side, seed, command, env = pending.pop(0)
                with open(work / f"{side}-{seed}.log", "wb") as log:
                    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
                running.append((side, seed, process, time.monotonic()))
            time.sleep(1)
            for entry in [e for e in running if e[2].poll() is not None]:
                running.remove(entry)
                side, seed, process, started = entry
                output = process.stdout.read().decode()
                if process.returncode != 0:
                    print(f"accuracy: {side} seed {seed} FAILED (exit {process.returncode}); see "
                          f"{work / f'{side}-{seed}.log'}", file=sys.stderr, flush=True)
                    continue
                result = (seqcast_result(work / f"seqcast-{seed}", args.variant) if side == "seqcast"
                          else json.loads(output.strip().splitlines()[-1]))
                results[side, seed] = result
                print(f"accuracy: {side} seed {seed}: valid MSE {result['valid_mse']:.5f} after {result['epochs']} "
                      f"epochs ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # Ctrl-C: stop the runs under way and print the pairs that are complete
        for *_, process, _ in running:
            process.terminate()  # seqcast's run stops its Prefect server on SIGTERM
        for *_, process, _ in running:
            process.wait(timeout=60)
        print(f"accuracy: interrupted; {len(running)} run(s) stopped", file=sys.stderr, flush=True)

    lines = [f"| {args.variant}: seed | seqcast valid MSE | epochs | reference valid MSE | epochs | "
             "seqcast / reference |", "|---|---|---|---|---|---|"]
    pairs = [(s, results.get(("seqcast", s)), results.get(("reference", s))) for s in args.seeds]
    for seed, ours, theirs in pairs:
        cells = [f"{r['valid_mse']:.5f} | {r['epochs']}" if r else "none | -" for r in (ours, theirs)]
        ratio = f"{ours['valid_mse'] / theirs['valid_mse']:.2f}" if ours and theirs else "-"
        lines.append(f"| {seed} | {cells[0]} | {cells[1]} | {ratio} |")
    complete = [(o["valid_mse"], t["valid_mse"]) for _, o, t in pairs if o and t]
    if complete:
        ours, theirs = median(o for o, _ in complete), median(t for _, t in complete)
        lines.append(f"| median of {len(complete)} | {ours:.5f} | | {theirs:.5f} | | {ours / theirs:.2f} |")
        lines.append(f"\nMedian valid MSE within the reference's + 5%: {'yes' if ours <= 1.05 * theirs else 'no'} "
                     f"({(ours / theirs - 1) * 100:+.1f}%). TensorFlow threads per run: {threads}.")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0 if len(complete) == len(args.seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
