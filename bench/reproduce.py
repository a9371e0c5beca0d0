"""Reproduce the chapter: every variant of the chapter, both horizons, at full size through the forecast flow.

Writes a markdown table (variant | parameters | epochs run | valid MSE | book | plain-Keras reference | train time)
to bench/results/reproduce.md and prints it. Runs against SEQCAST_HOME (default ~/.seqcast); with --skip-existing,
a variant that already has a completed full-size run with the same parameters is not trained again.

    .venv/bin/python bench/reproduce.py [--skip-existing] [--epochs N] [VARIANT ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seqcast.config.params import ForecastParams, normalized_params  # noqa: E402
from seqcast.models.registry import REGISTRY  # noqa: E402
from seqcast.storage.home import current_store  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

RUN_SQL = """
SELECT r.run_id, r.variant, r.n_params, r.epochs, s.valid_mse, s.test_mse, r.train_seconds, r.duration_s, r.params
FROM runs r JOIN run_scores s USING (run_id)
WHERE r.variant = ? AND r.dataset_id = ? AND r.status = 'completed'
ORDER BY r.finished_at DESC
"""


def existing_run(params: ForecastParams) -> dict | None:
    """The newest completed run of exactly these parameters, if the results database has one."""
    results = current_store().results
    columns, rows = results.query(RUN_SQL, [params.variant, params.dataset_spec().dataset_id])
    wanted = params.model_dump()
    for row in rows:
        found = dict(zip(columns, row))
        if normalized_params(found["params"]) == wanted:
            return found
    return None


def machine() -> str:
    return (f"{platform.node() or 'host'}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}")


def at_most_book(valid_mse: float, book: float) -> bool:
    """Compare at the book's printed precision (3 significant digits): it prints naive as 0.0202 for 0.020211."""
    return float(f"{valid_mse:.3g}") <= book


def table(rows: list[dict]) -> str:
    lines = ["| variant | parameters | epochs run | valid MSE | book valid MSE | plain-Keras reference | "
             "at most book (3 s.f.)? | train time (s) | flow time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = REGISTRY[r["variant"]]
        ok = "yes" if at_most_book(r["valid_mse"], v.book_valid_mse) else "**no**"
        train = f"{r['train_seconds']:.1f}" if r["train_seconds"] is not None else "-"
        lines.append(f"| {r['variant']} | {r['n_params'] if r['n_params'] is not None else '-'} | "
                     f"{r['epochs'] if r['epochs'] is not None else '-'} | {r['valid_mse']:.5f} | "
                     f"{v.book_valid_mse:.4f} | {v.reference_valid_mse:.5f} | {ok} | {train} | "
                     f"{r['duration_s']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help="default: every variant of the chapter (those with a book "
                                                    "figure; bench/nbeats.py covers N-BEATS)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--skip-existing", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "reproduce.md")
    args = parser.parse_args()
    names = args.variants or [name for name, v in REGISTRY.items() if v.book_valid_mse is not None]
    beyond = [name for name in names if name in REGISTRY and REGISTRY[name].book_valid_mse is None]
    if beyond:
        parser.error(f"{', '.join(beyond)}: no book figure to reproduce; bench/nbeats.py compares N-BEATS, and "
                     f"the statistical baselines are scored on M3 (docs/benchmarks.md)")
    planned = [ForecastParams(variant=name, epochs=args.epochs) for name in names]  # validates every name first

    from seqcast.flows.forecast import forecast

    started = time.perf_counter()
    rows = []
    for i, params in enumerate(planned, 1):
        found = existing_run(params) if args.skip_existing else None
        if found is None:
            print(f"[{i}/{len(planned)}] {params.variant}: training", file=sys.stderr, flush=True)
            forecast(**params.model_dump())
            found = existing_run(params)
        else:
            print(f"[{i}/{len(planned)}] {params.variant}: reusing run {found['run_id']}", file=sys.stderr)
        rows.append(found)
    text = (f"# Reproduction of the chapter's figures\n\n"
            f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/reproduce.py` on {machine()}. "
            f"Training: Nadam, up to {args.epochs} epochs, EarlyStopping(patience=5, restore_best_weights), "
            f"batch 32, seed 42, XLA on; 10,000 series, 7000/2000/1000. Valid MSE over the horizon after the last "
            f"input step. Wall time of this invocation: {time.perf_counter() - started:.0f} s (times include other "
            f"work sharing the machine).\n\n{table(rows)}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0 if all(at_most_book(r["valid_mse"], REGISTRY[r["variant"]].book_valid_mse) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
