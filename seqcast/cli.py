"""The ``seqcast`` command: run variants through the forecast flow and query their results."""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
import typing

from pydantic import ValidationError

from seqcast.models import ONE_STEP, REGISTRY
from seqcast.params import ForecastParams
from seqcast.settings import records_dir, results_db, seqcast_home

LEADERBOARD_SQL = """
SELECT l.variant, l.horizon, l.valid_mse, v.book_valid_mse, l.naive_valid_mse, l.ratio_to_naive, l.test_mse,
       l.epochs, round(l.train_seconds, 1) AS train_s, l.run_id
FROM leaderboard l JOIN (SELECT unnest(?) AS variant, unnest(?) AS book_valid_mse) v USING (variant)
WHERE l.dataset_id IN (SELECT unnest(?))
ORDER BY l.horizon, l.valid_mse
"""


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """Render rows as an aligned text table; floats with 5 significant digits."""
    def cell(value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, float):
            return f"{value:.5g}"
        return str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths)) for r in body]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _option_type(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return args[0]
    return annotation


def add_param_options(parser: argparse.ArgumentParser) -> None:
    """Mirror every ForecastParams field (except the variant) as a ``--option``; unset means the default."""
    for name, field in ForecastParams.model_fields.items():
        if name == "variant":
            continue
        flag = "--" + name.replace("_", "-")
        kind = _option_type(field.annotation)
        help_text = f"{field.description + '; ' if field.description else ''}default: {field.default}"
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(), help=help_text)


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in ForecastParams.model_fields if k != "variant"
                 and getattr(args, k, None) is not None}
    variants = ONE_STEP if args.all else args.variant
    try:
        planned = [ForecastParams(variant=v, **overrides) for v in variants]
    except ValidationError as exc:
        return fail(_validation_message(exc))
    from flows.forecast import forecast

    print(f"seqcast: running {len(planned)} variant(s) with SEQCAST_HOME={seqcast_home()}", file=sys.stderr)
    started = time.perf_counter()
    summaries = []
    for i, params in enumerate(planned, 1):
        print(f"seqcast: [{i}/{len(planned)}] {params.variant}", file=sys.stderr)
        summaries.append(forecast(**params.model_dump()))
    elapsed = time.perf_counter() - started
    print_leaderboard(summaries)
    print(f"\n{len(summaries)} run(s) in {elapsed:.0f} s; query them with: seqcast sql \"SELECT * FROM leaderboard\"")
    if not all(s["in_duckdb"] for s in summaries):
        print("some results wait in the record (database locked): run `seqcast results sync`", file=sys.stderr)
    return 0


def print_leaderboard(summaries: list[dict]) -> None:
    variants = list(REGISTRY)
    book = [REGISTRY[v].book_valid_mse for v in variants]
    datasets = sorted({s["dataset_id"] for s in summaries})
    try:
        columns, rows = __import__("storage.results", fromlist=["query"]).query(
            results_db(), LEADERBOARD_SQL, [variants, book, datasets])
    except Exception as exc:  # the results are safe in the record; show what the runs returned instead
        print(f"(leaderboard unavailable: {exc})", file=sys.stderr)
        columns = ["variant", "valid_mse", "naive_valid_mse", "epochs", "run_id"]
        rows = [tuple(s[c] for c in columns) for s in summaries]
    print(format_table(columns, rows))


def cmd_sql(args: argparse.Namespace) -> int:
    from storage.results import query

    try:
        columns, rows = query(results_db(), args.query)
    except FileNotFoundError as exc:
        return fail(str(exc))
    except Exception as exc:  # duckdb's own errors name the problem (syntax, unknown column, ...)
        return fail(f"query failed: {exc}")
    if args.format == "json":
        print(json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=1))
    elif args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(format_table(columns, rows))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from storage.results import rebuild, sync

    if args.action == "sync":
        report = sync(records_dir(), results_db())
    else:
        report = rebuild(records_dir(), results_db())
    if report.pending:
        return fail(f"{results_db()} is locked by another process; {len(report.pending)} run(s) still wait "
                    f"in the record. Close the other connection and run this again.")
    print(f"{args.action}: loaded {len(report.loaded)} run(s) into {results_db()}")
    return 0


def cmd_variants(args: argparse.Namespace) -> int:
    rows = [(v.name, v.family, v.horizon, v.target, v.book_valid_mse, v.description) for v in REGISTRY.values()]
    print(format_table(["variant", "family", "horizon", "target", "book_valid_mse", "architecture"], rows))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve every (or every named) variant's forecast deployment from this process until interrupted."""
    from deployments.forecast import deployment_specs, ensure_training_limit, forecast_deployments

    try:
        specs = deployment_specs(args.variant)
    except ValueError as exc:
        return fail(str(exc))
    from prefect import serve

    slots = ensure_training_limit(args.training_slots)
    print(f"seqcast: serving {len(specs)} deployment(s) with SEQCAST_HOME={seqcast_home()}; "
          f"at most {slots} training(s) at once (global concurrency limit seqcast-training)", file=sys.stderr)
    serve(*forecast_deployments(args.variant, schedules=not args.no_schedules), limit=args.limit)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep flow: trigger the variants' deployments, wait for them, print the leaderboard."""
    overrides = {k: getattr(args, k) for k in ForecastParams.model_fields if k != "variant"
                 and getattr(args, k, None) is not None}
    variants = list(REGISTRY) if args.all else args.variant
    try:
        [ForecastParams(variant=v, **overrides) for v in variants]
    except ValidationError as exc:
        return fail(_validation_message(exc))
    from flows.sweep import sweep

    table = sweep(variants=variants, parameters=overrides, timeout_s=args.timeout)
    columns = list(dict.fromkeys(k for row in table for k in row))
    print(format_table(columns, [tuple(row.get(c) for c in columns) for row in table]))
    return 0


def _validation_message(exc: ValidationError) -> str:
    return "invalid parameters:\n" + "\n".join(
        f"  {'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors())


def fail(message: str) -> int:
    print(f"seqcast: error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqcast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and score variants through the forecast flow",
                         description="Run variants through the forecast flow (generate -> persist -> train -> "
                                     "evaluate -> record) and print their leaderboard.")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", action="append", metavar="NAME",
                       help=f"variant to run (repeatable): {', '.join(REGISTRY)}")
    which.add_argument("--all", action="store_true", help=f"every one-step variant: {', '.join(ONE_STEP)}")
    add_param_options(run)
    run.set_defaults(func=cmd_run)

    sql = sub.add_parser("sql", help="query the results database (read-only)")
    sql.add_argument("query", help='e.g. "SELECT * FROM leaderboard"')
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=cmd_sql)

    results = sub.add_parser("results", help="maintain the results database")
    results.add_argument("action", choices=["sync", "rebuild"],
                         help="sync: load records not yet in DuckDB; rebuild: recreate DuckDB from the record")
    results.set_defaults(func=cmd_results)

    serve = sub.add_parser("serve", help="serve every variant's forecast deployment (long-running)",
                           description="Register the forecast/<variant> deployments with the Prefect API "
                                       "(PREFECT_API_URL) and run their scheduled and triggered runs here.")
    serve.add_argument("--variant", action="append", metavar="NAME", help="serve only this variant (repeatable)")
    serve.add_argument("--no-schedules", action="store_true", help="register the deployments without schedules")
    serve.add_argument("--limit", type=int, default=None, help="most flow runs executing at once (default: no cap)")
    serve.add_argument("--training-slots", type=int, default=None,
                       help="most trainings at once (default: $SEQCAST_TRAINING_SLOTS, else one per 2 cores)")
    serve.set_defaults(func=cmd_serve)

    sweep = sub.add_parser("sweep", help="run variants through their deployments and publish a leaderboard",
                           description="Trigger forecast/<variant> runs (served by `seqcast serve` or a "
                                       "worker), wait for them, and print and publish their leaderboard.")
    sweep_which = sweep.add_mutually_exclusive_group(required=True)
    sweep_which.add_argument("--variant", action="append", metavar="NAME", help="variant to run (repeatable)")
    sweep_which.add_argument("--all", action="store_true", help="every registered variant")
    sweep.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for the runs")
    add_param_options(sweep)
    sweep.set_defaults(func=cmd_sweep)

    variants = sub.add_parser("variants", help="list the model variants")
    variants.set_defaults(func=cmd_variants)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
