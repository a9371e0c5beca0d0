"""The ``seqcast`` command: run variants through the forecast flow and query their results."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import types
import typing
from pathlib import Path

from pydantic import ValidationError
from tabulate import tabulate

from seqcast.app import api
from seqcast.config.names import is_url
from seqcast.config.params import ForecastParams
from seqcast.config.settings import SettingsError, load_settings
from seqcast.models.registry import NEEDS_DATASET, ONE_STEP, REGISTRY
from seqcast.storage import Store
from seqcast.storage.tables import DEFAULT_RETENTION_HOURS


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """Render rows as an aligned text table; floats with 5 significant digits, None as NULL."""
    def cell(value) -> str:
        if value is None:
            return "NULL"
        return f"{value:.5g}" if isinstance(value, float) else str(value)

    table = tabulate([[cell(v) for v in row] for row in rows], headers=columns, disable_numparse=True)
    return f"{table}\n({len(rows)} row{'s' if len(rows) != 1 else ''})"


class _WithoutTraceback(logging.Filter):
    """Keep the line but drop the traceback of a console record about bad input (a ValueError): not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ValueError):
            # the API handler (on the run loggers) has already sent the full record; only the console's copy changes
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def refusals_without_traceback():
    """While inside, Prefect's console shows a flow's refusal of bad input as one line, with no traceback; the
    command then prints the refusal itself as ``seqcast: error: ...``."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    quiet = _WithoutTraceback()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def chosen_variants(args: argparse.Namespace) -> list[str]:
    """The variants a ``--variant``/``--one-step``/``--all`` group names."""
    if args.all:  # the statistical baselines need an ingested dataset: without one, --all leaves them out
        return [v for v in REGISTRY if getattr(args, "dataset_id", None) or v not in NEEDS_DATASET]
    return ONE_STEP if args.one_step else args.variant


def add_variant_choice(parser: argparse.ArgumentParser, what: str) -> None:
    """``--variant NAME`` (repeatable), ``--one-step`` or ``--all``, alike in every command that runs variants."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", action="append", metavar="NAME",
                       help=f"variant to {what} (repeatable): {', '.join(REGISTRY)}")
    which.add_argument("--one-step", action="store_true",
                       help=f"the one-step variants of the seed notebook: {', '.join(ONE_STEP)}")
    which.add_argument("--all", action="store_true",
                       help="every registered variant (the statistical ones only with --dataset-id)")


def _option_type(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return args[0]
    return annotation


def add_param_options(parser: argparse.ArgumentParser, model=ForecastParams, skip=("variant",)) -> None:
    """Mirror every field of ``model`` (except ``skip``) as a ``--option``; unset means the default."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _option_type(field.annotation)
        description = field.description or ""
        help_text = description if "default" in description else \
            f"{description + '; ' if description else ''}default: {field.default}"
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(kind) is typing.Literal:
            parser.add_argument(flag, dest=name, choices=typing.get_args(kind), default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(), help=help_text)


def planned_runs(args: argparse.Namespace, store: Store) -> list[ForecastParams]:
    """Every chosen variant's parameters, each checked against its dataset; ValueError naming the first problem."""
    return api.plan_runs(chosen_variants(args), store, **_overrides(args, ForecastParams, skip=("variant",)))


def cmd_run(args: argparse.Namespace) -> int:
    from seqcast.storage.home import current_store

    started = time.perf_counter()
    try:  # the settings and every variant's parameters are checked before any work
        result = api.run(chosen_variants(args), jobs=args.jobs, address=args.address, progress=_say,
                         **_overrides(args, ForecastParams, skip=("variant",)))
    except ValueError as exc:  # SettingsError included
        return fail(str(exc))
    summaries, failed = result.summaries, result.failed
    if summaries:
        print_leaderboard(current_store(), summaries)
    elapsed = time.perf_counter() - started
    print(f"\n{len(summaries)} run(s) in {elapsed:.0f} s; query them with: seqcast sql \"SELECT * FROM leaderboard\"")
    if failed:
        print(f"seqcast: {len(failed)} variant(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _say(line: str) -> None:
    print(f"seqcast: {line}", file=sys.stderr, flush=True)


def print_leaderboard(store: Store, summaries: list[dict]) -> None:
    variants = list(REGISTRY)
    book = [REGISTRY[v].book_valid_mse for v in variants]
    datasets = sorted({s["dataset_id"] for s in summaries})
    try:
        columns, rows = store.results.leaderboard(variants, book, datasets)
    except Exception as exc:  # the results are committed; show what the runs returned instead
        print(f"(leaderboard unavailable: {exc})", file=sys.stderr)
        columns = ["variant", "valid_mse", "naive_valid_mse", "epochs", "run_id"]
        rows = [tuple(s[c] for c in columns) for s in summaries]
    print(format_table(columns, rows))


def _overrides(args: argparse.Namespace, model, skip=()) -> dict:
    """The options given on the command line; an empty string means None (e.g. ``--id-column ''``)."""
    given = {k: getattr(args, k) for k in model.model_fields if k not in skip and getattr(args, k, None) is not None}
    return {k: (None if v == "" else v) for k, v in given.items()}


def cmd_ingest(args: argparse.Namespace) -> int:
    from seqcast.data.ingest import IngestError, IngestParams

    try:
        params = IngestParams(source=args.source, **_overrides(args, IngestParams, skip=("source",)))
    except ValidationError as exc:
        return fail(_validation_message(exc))
    from seqcast.flows.ingest import ingest

    try:
        with refusals_without_traceback():
            summary = ingest(**params.model_dump())
    except IngestError as exc:
        return fail(str(exc))
    print(format_table(list(summary), [tuple(summary.values())]))
    if summary["forecast_errors"]:
        print(f"\nscored {summary['forecast_errors']} stored forecast step(s) with the file's actuals: "
              f"seqcast sql \"SELECT * FROM live_scores\"")
    print(f"\ntrain on it with: seqcast run --variant linear --dataset-id {summary['dataset_id']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from seqcast.forecasting.predict import PredictParams

    try:
        params = PredictParams(**_overrides(args, PredictParams))
    except ValidationError as exc:
        return fail(_validation_message(exc))
    from seqcast.flows.predict import predict
    from seqcast.storage.home import current_store

    try:
        api.check_export(args.export)
        store = current_store()
        with refusals_without_traceback():
            summary = predict(**params.model_dump())
    except (ValueError, FileNotFoundError) as exc:  # IngestError included: bad file, unfit model, unknown run
        return fail(str(exc))
    print(format_table(list(summary), [tuple(summary.values())]))
    if args.export:
        levels = list(api.INTERVAL_LEVELS) if summary["intervals_from"] else []
        path = api.export(api.forecast_frame([(summary["variant"], summary["run_id"])], levels), args.export)
        print(f"forecasts written to {path} (unique_id, ds, {summary['variant']}, ...)", file=sys.stderr)
    print(format_table(*store.results.forecasts(summary["run_id"], args.show)))
    if summary["intervals_from"] is None:
        run = store.results.completed_run(summary["model_run_id"])
        model_dataset = run["dataset_id"] if run else "<the run's dataset>"
        print(f"seqcast: no intervals (lo_80 .. hi_95 are NULL): run {summary['model_run_id']} has no completed "
              f"backtest; get them with `seqcast backtest --dataset-id {model_dataset} --variant "
              f"{summary['variant']}` and the run's training options, then predict again", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score the stored forecasts with the actuals of a newer file; print the scored forecast runs' live scores."""
    from seqcast.forecasting.live import ScoreParams

    try:
        params = ScoreParams(**_overrides(args, ScoreParams))
    except ValidationError as exc:
        return fail(_validation_message(exc))
    from seqcast.flows.score import score
    from seqcast.storage.home import current_store

    try:
        store = current_store()
        with refusals_without_traceback():
            summary = score(**params.model_dump())
    except ValueError as exc:  # ScoreError and IngestError included: a bad file, or nothing to score
        return fail(str(exc))
    shown = {**summary, "forecast_run_ids": ", ".join(summary["forecast_run_ids"])}
    print(format_table(list(shown), [tuple(shown.values())]))
    print(format_table(*store.results.live_scores(summary["forecast_run_ids"])))
    print('\nevery scored step: seqcast sql "SELECT * FROM live_errors"; live against backtest MASE: '
          'live_vs_backtest')
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Backtest each chosen variant on a dataset, one backtest flow run after another; print their scores."""
    from seqcast.storage.home import current_store

    parameters = _overrides(args, ForecastParams, skip=("variant", "dataset_id"))
    try:  # every variant is checked against the dataset before the first one trains
        api.check_execution(args.jobs, args.address)
        store = current_store()
        planned, skipped = api.plan_backtests(chosen_variants(args), args.dataset_id, args.windows, args.step,
                                              args.refit, args.levels, parameters, skip_unfit=args.all)
        api.check_export(args.export)
    except ValueError as exc:  # SettingsError included
        return fail(str(exc))
    for reason in skipped:  # --all means every variant that can run on this dataset
        print(f"seqcast: skipping {reason}", file=sys.stderr)
    if not planned:
        return fail(f"no variant can be backtested on {args.dataset_id}")
    print(f"seqcast: backtesting {len(planned)} variant(s) on {args.dataset_id} from {args.windows} cutoff(s) with "
          f"SEQCAST_HOME={store.location}", file=sys.stderr)
    try:
        with refusals_without_traceback():
            outcome = api.backtests(planned, jobs=args.jobs, address=args.address, progress=_say)
    except ValueError as exc:  # no Dask scheduler at --address, or a bad --jobs
        return fail(str(exc))
    summaries = outcome.summaries
    try:
        print(format_table(*store.results.backtest_scores([s["run_id"] for s in summaries])))
    except Exception as exc:  # the results are committed; show what the runs returned instead
        print(f"(backtest scores unavailable: {exc})", file=sys.stderr)
        columns = ["variant", "smape", "mase", "owa", "n_series", "run_id"]
        print(format_table(columns, [tuple(s[c] for c in columns) for s in summaries]))
    if args.export:
        levels = sorted({level for params in planned for level in params.levels})
        frame = api.cv_frame([(s["variant"], s["run_id"]) for s in summaries], args.dataset_id, levels)
        path = api.export(frame, args.export)
        print(f"forecasts written to {path} (unique_id, ds, cutoff, y, <variant>, ...)", file=sys.stderr)
    print('\nper cutoff: seqcast sql "SELECT * FROM backtest_scores ORDER BY run_id, cutoff"; every forecast: '
          'backtest_forecasts')
    if outcome.failed:
        print(f"seqcast: {len(outcome.failed)} backtest(s) failed: {', '.join(outcome.failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_champion(args: argparse.Namespace) -> int:
    """Choose a dataset's champion among its backtests, record the choice, print the contest and the choice."""
    from seqcast.forecasting.champion import ChampionParams

    try:
        params = ChampionParams(**_overrides(args, ChampionParams))
    except ValidationError as exc:
        return fail(_validation_message(exc))
    from seqcast.flows.champion import champion

    try:
        with refusals_without_traceback():
            summary = champion(**params.model_dump())
    except ValueError as exc:  # SettingsError included: no dataset, no backtest
        return fail(str(exc))
    ranked = summary.pop("ranked")
    print(format_table(["rank", *ranked[0]], [(i, *r.values()) for i, r in enumerate(ranked, 1)]))
    print()
    print(format_table(list(summary), [tuple(summary.values())]))
    print(f'\nevery choice: seqcast sql "SELECT * FROM champions WHERE dataset_id = \'{params.dataset_id}\' '
          f'ORDER BY chosen_at"')
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from seqcast.storage.home import current_store

    try:
        columns, rows = current_store().results.read_only_query(args.query)
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    except Exception as exc:  # duckdb's own errors name the problem (syntax, unknown column, ...)
        return fail(f"query failed: {exc}")
    if args.format == "json":
        print(json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=1))
    elif args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(format_table(columns, rows))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    """Maintain the results tables: compact them, or migrate a home written by the record format into them."""
    from seqcast.storage.home import current_store

    try:
        store = current_store()
    except ValueError as exc:  # SettingsError
        return fail(str(exc))
    if args.action == "compact":
        from seqcast.flows.maintenance import results_maintenance

        done = results_maintenance(retention_hours=args.retention_hours)
        print(format_table(list(done[0]), [tuple(r.values()) for r in done]) if done else
              f"no results table in {store.results.location} yet: nothing to compact")
        return 0
    from seqcast.storage import migrate
    from seqcast.storage.objects import ObjectStore
    from seqcast.tasks.rows import with_stored_scores

    source = args.source or store.location
    try:
        records = migrate.stored_records(ObjectStore(source)) if is_url(source) else \
            migrate.local_records(Path(source).expanduser() / migrate.RECORDS)
    except ValueError as exc:  # a URL seqcast cannot use
        return fail(str(exc))
    if not is_url(source) and not (Path(source).expanduser() / migrate.RECORDS).is_dir():
        return fail(f"{source} holds no records/ folder: nothing to migrate")
    started = time.perf_counter()
    migrated, skipped = migrate.migrate(records, store.results.tables, with_stored_scores,
                                        progress=lambda n: _say(f"migrated {n} run(s)"))
    print(f"migrated {len(migrated)} run(s) from {source} into {store.results.location} in "
          f"{time.perf_counter() - started:.1f} s"
          + (f"; {len(skipped)} record(s) without a committed write left out" if skipped else ""))
    print(f"the records under {source}/{migrate.RECORDS} (and any results.duckdb) are no longer read: delete them "
          f"once the tables hold what you expect", file=sys.stderr)
    return 0


def cmd_variants(args: argparse.Namespace) -> int:
    rows = [(v.name, v.family, v.horizon or "dataset's", v.target, ", ".join(v.hyperparameters) or "-",
             "-" if v.book_valid_mse is None else v.book_valid_mse, v.description) for v in REGISTRY.values()]
    print(format_table(["variant", "family", "horizon", "target", "hyperparameters", "book_valid_mse",
                        "architecture"], rows))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve every (or every named) variant's forecast deployment from this process until interrupted."""
    from seqcast.deployments.automations import HEARTBEAT_S
    from seqcast.deployments.forecast import deployment_specs, forecast_deployments, schedules_switched_off
    from seqcast.deployments.maintenance import maintenance_deployment, maintenance_spec
    from seqcast.deployments.monitor import monitor_deployment, monitor_spec
    from seqcast.flows.execution import ensure_training_limit, share_cores, training_slots
    from seqcast.storage.home import current_store

    try:  # the settings, the variants and the slots are checked before Prefect is contacted
        store = current_store()
        specs = deployment_specs(args.variant)
        # all variants: the monitor that watches them and the maintenance of their results too
        scheduled = [] if args.variant else [monitor_spec(), maintenance_spec()]
        slots = training_slots(args.training_slots, "--training-slots")
    except ValueError as exc:  # SettingsError included
        return fail(str(exc))
    from prefect import serve

    slots = ensure_training_limit(slots)
    threads = share_cores(slots)
    # the runs' heartbeat, as prefect.yaml gives the work-pool runs: `seqcast automations` crashes a run whose
    # heartbeats stop for longer than a few of these, so runs must not send them more rarely
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S))
    print(f"seqcast: serving {len(specs)} deployment(s) with SEQCAST_HOME={store.location}; "
          f"at most {slots} training(s) at once (global concurrency limit seqcast-training), "
          f"{threads} TensorFlow thread(s) per run", file=sys.stderr)
    switched_off = set() if args.no_schedules else schedules_switched_off([spec.full_name
                                                                             for spec in [*specs, *scheduled]])
    for name, cron, timezone in sorted(switched_off):
        print(f"seqcast: {name}: its schedule '{cron}' ({timezone}) was switched off; it stays off", file=sys.stderr)
    serve(*forecast_deployments(args.variant, schedules=not args.no_schedules, switched_off=switched_off),
          *([monitor_deployment(schedules=not args.no_schedules, switched_off=switched_off),
             maintenance_deployment(schedules=not args.no_schedules, switched_off=switched_off)] if scheduled else []),
          limit=args.limit)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep flow: trigger the variants' deployments, wait for them, print the leaderboard."""
    from seqcast.storage.home import current_store

    try:  # before anything is triggered
        planned = planned_runs(args, current_store())
    except ValueError as exc:  # SettingsError included
        return fail(str(exc))
    from seqcast.flows.sweep import sweep

    table = sweep(variants=[p.variant for p in planned], parameters=_overrides(args, ForecastParams, skip=("variant",)),
                  timeout_s=args.timeout)
    columns = list(dict.fromkeys(k for row in table for k in row))
    print(format_table(columns, [tuple(row.get(c) for c in columns) for row in table]))
    return 0


def cmd_automations(args: argparse.Namespace) -> int:
    """Create (or update) the automations that crash runs whose heartbeats stopped and schedule them again."""
    from seqcast.deployments.automations import CrashPolicy, deploy_automations

    try:
        policy = CrashPolicy(crash_after_s=args.crash_after, retries=args.retries)
    except ValueError as exc:
        return fail(str(exc))
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # an automation on a temporary server would vanish with it
        return fail("set PREFECT_API_URL to the Prefect server the workers use")
    for automation in deploy_automations(policy):
        state = "enabled" if automation.enabled else "disabled"
        print(f"seqcast: automation '{automation.name}' ({automation.id}, {state}): {automation.description}",
              file=sys.stderr)
    return 0


def _validation_message(exc: ValidationError) -> str:
    return api.validation_message(exc)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of hours, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def fail(message: str) -> int:
    print(f"seqcast: error: {message}", file=sys.stderr)
    return 2


def add_execution_options(parser: argparse.ArgumentParser, runs: str, default: str) -> None:
    """``--jobs`` and ``--address``, as ``seqcast run`` has them, for a command that runs several flows."""
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help=f"{runs} run at once, in worker processes sharing this machine's cores (default: "
                             f"{default})")
    parser.add_argument("--address", default=None, metavar="URL",
                        help=f"run the {runs} on the running Dask cluster whose scheduler is at URL (e.g. "
                             f"tcp://host:8786), as many at once as its workers have threads; default: on this "
                             f"machine")


def build_parser() -> argparse.ArgumentParser:
    from seqcast.data.ingest import IngestParams
    from seqcast.deployments.automations import HEARTBEAT_S, CrashPolicy
    from seqcast.forecasting.champion import ChampionParams
    from seqcast.forecasting.live import ScoreParams
    from seqcast.forecasting.predict import PredictParams

    parser = argparse.ArgumentParser(prog="seqcast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and score variants through the forecast flow",
                         description="Run variants through the forecast flow (generate -> persist -> train -> "
                                     "evaluate -> record) and print their leaderboard.")
    add_variant_choice(run, "run")
    run.add_argument("--jobs", type=int, default=None, metavar="N",
                     help="variants run at once, in worker processes sharing this machine's cores (default: "
                          "$SEQCAST_TRAINING_SLOTS, else one per core; 1 runs them one after another here)")
    run.add_argument("--address", default=None, metavar="URL",
                     help="run the variants on the running Dask cluster whose scheduler is at URL (e.g. "
                          "tcp://host:8786), as many at once as its workers have threads; default: on this machine")
    add_param_options(run)
    run.set_defaults(func=cmd_run)

    sql = sub.add_parser("sql", help="query the results tables and views (read-only)")
    sql.add_argument("query", help='e.g. "SELECT * FROM leaderboard"')
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="how to print the rows; default: table")
    sql.set_defaults(func=cmd_sql)

    results = sub.add_parser(
        "results", help="maintain the results tables (compact; migrate from the record format)",
        description="compact: merge every results table's small files and delete the files no version younger than "
                    "--retention-hours reads (the results-maintenance flow; `seqcast serve` schedules it weekly). "
                    "migrate: write the runs of a home made by a release that kept results as records "
                    "(records/<run_id>/) into the tables; running it again replaces, never duplicates.")
    results.add_argument("action", choices=["compact", "migrate"])
    results.add_argument("source", nargs="?", default=None, metavar="FROM",
                         help="migrate: the old home (a folder or s3:// URL holding records/); default: SEQCAST_HOME")
    results.add_argument("--retention-hours", type=_non_negative_int, default=DEFAULT_RETENTION_HOURS,
                         metavar="H", help="compact: keep the files that versions of the last H hours read (time "
                                           f"travel reaches back that far); default {DEFAULT_RETENTION_HOURS}")
    results.set_defaults(func=cmd_results)

    ingest = sub.add_parser("ingest", help="turn your own long-format CSV/Parquet file, or a benchmark, into a "
                                           "dataset",
                            description="Read series id, timestamp and value columns, validate every series, cut "
                                        "leak-free chronological windows and persist them under a dataset id. "
                                        "With --benchmark and no file: the series of an M3 subset, split on its "
                                        "last horizon.")
    ingest.add_argument("source", nargs="?", default=None,
                        help="CSV or Parquet file, one row per (series, timestamp, value); none with --benchmark")
    add_param_options(ingest, IngestParams, skip=("source",))
    ingest.set_defaults(func=cmd_ingest)

    predict = sub.add_parser("predict", help="forecast the next horizon of every series with a trained run or the "
                                             "dataset's champion",
                             description="Choose a model (--run-id; else the champion of --dataset-id, the best "
                                         "backtest MASE, recorded in the champions table; or with --family/--variant "
                                         "the best valid MSE of those runs), forecast after each series' latest "
                                         "window and write the forecasts to Parquet and the DuckDB forecasts table.")
    add_param_options(predict, PredictParams, skip=())
    predict.add_argument("--show", type=int, default=14, help="forecast rows to print; default: 14")
    predict.add_argument("--export", default=None, metavar="FILE",
                         help="also write the forecasts to FILE (.parquet or .csv) in the layout of Nixtla's "
                              "libraries: unique_id, ds, <variant>, <variant>-lo-<level>, <variant>-hi-<level>; "
                              "default: none")
    predict.set_defaults(func=cmd_predict)

    score = sub.add_parser("score", help="score stored forecasts with the actual values of a newer file",
                           description="Read a long-format CSV/Parquet file (the options of `seqcast ingest`), match "
                                       "every stored forecast whose timestamp the file holds with its actual value, "
                                       "and record the errors (forecast_errors; the latest score of each step in "
                                       "live_errors). A file that scores nothing, or a series without forecasts "
                                       "or without an actual after its forecast origin, is refused before any "
                                       "write.")
    add_param_options(score, ScoreParams, skip=())
    score.set_defaults(func=cmd_score)

    serve = sub.add_parser("serve", help="serve every variant's forecast deployment (long-running)",
                           description="Register the forecast/<variant> deployments (and, without --variant, the "
                                       "monitor/daily deployment) with the Prefect API (PREFECT_API_URL) and run "
                                       "their scheduled and triggered runs here.")
    serve.add_argument("--variant", action="append", metavar="NAME",
                       help="serve only this variant (repeatable); default: every variant")
    serve.add_argument("--no-schedules", action="store_true", help="register the deployments without schedules")
    serve.add_argument("--limit", type=int, default=None, help="most flow runs executing at once (default: no cap)")
    serve.add_argument("--training-slots", type=int, default=None,
                       help="most trainings at once (default: $SEQCAST_TRAINING_SLOTS, else one per core)")
    serve.set_defaults(func=cmd_serve)

    sweep = sub.add_parser("sweep", help="run variants through their deployments and publish a leaderboard",
                           description="Trigger forecast/<variant> runs (served by `seqcast serve` or a "
                                       "worker), wait for them, and print and publish their leaderboard.")
    add_variant_choice(sweep, "sweep")
    sweep.add_argument("--timeout", type=float, default=24 * 3600, metavar="S",
                       help="seconds to wait for the runs; default: %(default)g (a day)")
    add_param_options(sweep)
    sweep.set_defaults(func=cmd_sweep)

    automations = sub.add_parser(
        "automations", help="create the automations that retry runs of lost workers",
        description="Create (or update) two automations on the Prefect server (PREFECT_API_URL): one marks a "
                    "forecast run Crashed when its heartbeats stop (its worker's host is lost), one schedules a "
                    "crashed run again so that a live worker of the pool resumes it.")
    automations.add_argument("--crash-after", type=int, default=CrashPolicy.crash_after_s, metavar="S",
                             help="seconds without a heartbeat after which a run counts as crashed "
                                  f"(runs send one every {HEARTBEAT_S} s); default: {CrashPolicy.crash_after_s}")
    automations.add_argument("--retries", type=int, default=CrashPolicy.retries, metavar="N",
                             help=f"times a crashed run is scheduled again; 0 leaves it crashed; "
                                  f"default: {CrashPolicy.retries}")
    automations.set_defaults(func=cmd_automations)

    backtest = sub.add_parser(
        "backtest", help="forecast a dataset from several cutoffs and score every forecast (rolling origin)",
        description="Forecast every series of a last-horizon dataset from --windows cutoffs, --step steps apart (the "
                    "last one the test cutoff), with one model trained on the dataset or, with --refit, one per "
                    "cutoff; store and score every forecast (sMAPE, MASE, OWA against Naive2) and its conformal "
                    "intervals (coverage, MSIS). Each variant is its own backtest flow run.")
    backtest.add_argument("--dataset-id", required=True, metavar="ID",
                          help="an ingested dataset split with --split last-horizon (e.g. a benchmark's)")
    add_variant_choice(backtest, "backtest")
    backtest.add_argument("--windows", type=int, default=3, metavar="K",
                          help="cutoffs: the test cutoff and K - 1 earlier ones; default: 3")
    backtest.add_argument("--step", type=int, default=None, metavar="S",
                          help="steps between cutoffs; default: the dataset's horizon")
    backtest.add_argument("--refit", action="store_true",
                          help="train a model per cutoff on the values before it (default: one model, trained on "
                               "the dataset's training part, forecasts from every cutoff)")
    backtest.add_argument("--level", type=float, action="append", dest="levels", metavar="L",
                          help="level in percent (0 < L < 100) of the conformal intervals around every forecast, "
                               "calibrated on the earlier cutoffs (repeatable); default: 80 and 95")
    add_execution_options(backtest, "backtests", "1: one after another here, a statistical variant's fits using "
                                                 "every core")
    backtest.add_argument("--export", default=None, metavar="FILE",
                          help="also write every forecast to FILE (.parquet or .csv) in the layout of Nixtla's "
                               "cross-validation: unique_id, ds, cutoff, y, <variant>, <variant>-lo-<level>, ...; "
                               "default: none")
    add_param_options(backtest, skip=("variant", "dataset_id"))
    backtest.set_defaults(func=cmd_backtest)

    champion = sub.add_parser(
        "champion", help="choose a dataset's champion among its backtests and record the choice",
        description="Rank the completed backtests of a dataset over the same cutoffs by MASE (ties: sMAPE), among "
                    "every variant, statistical ones included; the best replaces the sitting champion only when "
                    "better by --margin percent. The choice goes to the DuckDB champions table; `seqcast predict "
                    "--dataset-id ID` forecasts with the champion.")
    champion.add_argument("--dataset-id", required=True, metavar="ID",
                          help="an ingested dataset (split with --split last-horizon) with completed backtests")
    add_param_options(champion, ChampionParams, skip=("dataset_id",))
    champion.set_defaults(func=cmd_champion)

    variants = sub.add_parser("variants", help="list the model variants")
    variants.set_defaults(func=cmd_variants)
    return parser


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    # The temporary Prefect server a command starts would report usage, and on a busy machine its telemetry
    # service dies on the locked SQLite database with a traceback no user can act on: opt out unless the user chose
    # otherwise. Set first, before anything imports or configures Prefect.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    if argv is None and threading.current_thread() is threading.main_thread():
        # Run as a program: `kill` (SIGTERM) ends it as Ctrl-C does, with its clean-up. Parallel runs stop their
        # children, and Prefect stops the ephemeral server it started for this process (at exit, which a plain
        # SIGTERM skips: the server and any children would run on without it).
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Quiet TensorFlow's C++ start-up chatter, and give a busy 2-core machine time to start the ephemeral server;
    # set here, before Prefect or TensorFlow are imported, and only where the user has not set them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:  # every command reads some setting: a bad SEQCAST_* variable is refused before any work
        load_settings()
    except SettingsError as exc:
        return fail(str(exc))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
