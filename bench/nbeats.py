"""N-BEATS on the book's 10-step dataset, beside the chapter's LSTM and WaveNet.

Trains ``nbeats_generic`` and ``nbeats_interpretable`` (and scores ``naive_10``) through the forecast flow at full
size (10,000 series of 50 + 10 steps, 7000/2000/1000), then writes a markdown table to bench/results/nbeats.md:
weights, epochs run, valid and test MSE, training time. The chapter's ``lstm`` and ``wavenet`` stand beside them
with the book's figure and the plain-Keras reference's, and with seqcast's own run when SEQCAST_HOME holds a
completed full-size one with the same epochs (``bench/reproduce.py lstm wavenet`` makes one; this script does not
train them). Runs against SEQCAST_HOME (default ~/.seqcast); with --skip-existing, a variant that already has a
completed run with the same parameters is not trained again.

    .venv/bin/python bench/nbeats.py [--epochs N] [--skip-existing] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reproduce import existing_run, machine  # noqa: E402
from seqcast.config.params import ForecastParams  # noqa: E402
from seqcast.models.registry import NBEATS_UNITS, REGISTRY  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TRAINED = ["naive_10", "nbeats_generic", "nbeats_interpretable"]
BESIDE = ["lstm", "wavenet"]


def cell(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[tuple[str, dict | None]]) -> str:
    lines = ["| variant | weights | epochs run | valid MSE | test MSE | train time (s) | book valid MSE | "
             "plain-Keras reference valid MSE |", "|---|---|---|---|---|---|---|---|"]
    for name, run in rows:
        v = REGISTRY[name]
        run = run or {}
        lines.append(f"| {name} | {cell(run.get('n_params'))} | {cell(run.get('epochs'))} | "
                     f"{cell(run.get('valid_mse'), '.5f')} | {cell(run.get('test_mse'), '.5f')} | "
                     f"{cell(run.get('train_seconds'), '.1f')} | {cell(v.book_valid_mse, '.4f')} | "
                     f"{cell(v.reference_valid_mse, '.5f')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100, help="maximum epochs (early stopping, patience 5)")
    parser.add_argument("--skip-existing", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "nbeats.md")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    from seqcast.flows.forecast import forecast

    started = time.perf_counter()
    rows = []
    for i, name in enumerate(TRAINED, 1):
        params = ForecastParams(variant=name, epochs=args.epochs)
        found = existing_run(params) if args.skip_existing else None
        if found is None:
            print(f"[{i}/{len(TRAINED)}] {name}: training", file=sys.stderr, flush=True)
            forecast(**params.model_dump())
            found = existing_run(params)
        else:
            print(f"[{i}/{len(TRAINED)}] {name}: reusing run {found['run_id']}", file=sys.stderr)
        rows.append((name, found))
    rows += [(name, existing_run(ForecastParams(variant=name, epochs=args.epochs))) for name in BESIDE]
    elapsed = time.perf_counter() - started

    shortened = "" if args.epochs == 100 else (
        f" **Shortened:** at most {args.epochs} epochs, not the chapter's 100, so that the run fits its time "
        f"budget; with more epochs early stopping may end later and lower.")
    text = (f"# N-BEATS on the book's 10-step dataset\n\n"
            f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/nbeats.py` on {machine()}. "
            f"Training: Nadam, up to {args.epochs} epochs, EarlyStopping(patience=5, restore_best_weights), batch "
            f"32, seed 42, XLA on; 10,000 series of 50 + 10 steps, 7000/2000/1000. N-BEATS width {NBEATS_UNITS} "
            f"(`--units`); see docs/benchmarks.md for the architectures. Valid and test MSE over the 10 steps after "
            f"the last input step. A `-` for lstm or wavenet: no seqcast run of it with these parameters in "
            f"SEQCAST_HOME (bench/results/reproduce.md has seqcast's own full-size runs of them); the book's and the "
            f"reference's figures are from full 100-epoch runs. Wall time of this "
            f"invocation: {elapsed:.0f} s (times include other work sharing the machine).{shortened}\n\n"
            f"{table(rows)}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
