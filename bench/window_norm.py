"""Window norms on trending series: test MSE of naive and of linear and recurrent variants, per norm and seed.

Every series of ``tests/series_files.trending_series`` is a straight line plus noise whose test part lies above
all of its training part. Each variant trains on it (ingested with the default per-series scaling) under each window
norm and seed, through the core functions as ``tests/test_window_norm.py`` does (no Prefect); the test MSEs are in
original units. The default window norm of ingested datasets (``seqcast/config/params.py``) rests on this comparison.

    .venv/bin/python bench/window_norm.py [--variants linear lstm gru] [--norms none last mean] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from tests.test_window_norm import trending_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["linear", "lstm", "gru"])
    parser.add_argument("--norms", nargs="+", default=["none", "last", "mean"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| variant | window_norm | seed | naive test MSE | model test MSE | ratio |")
        print("|---|---|---|---|---|---|")
        for variant in args.variants:
            for norm in args.norms:
                for seed in args.seeds:
                    r = trending_run(variant, norm, Path(tmp), seed=seed, epochs=args.epochs, units=args.units,
                                     learning_rate=args.learning_rate)
                    print(f"| {variant} | {norm} | {seed} | {r['naive']:.4g} | {r['model']:.4g} | "
                          f"{r['model'] / r['naive']:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
