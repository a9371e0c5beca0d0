"""Speed benchmark: seqcast's flow against the plain-Keras reference, side by side in one invocation.

For each variant it alternates A B A B ...: A = seqcast's path (forecast flow start to results recorded in DuckDB,
against a running Prefect server), B = the reference script's code for the same model (data generation, fit, predict).
It prints one markdown table: median wall time of each, their ratio, valid MSE of each, epochs run. It also measures

- orchestration overhead: an end-to-end ``naive`` flow run against the running server, with Prefect's default flow
  heartbeat and with seqcast's in-process setting (heartbeat off);
- the data path at scale (``--data-series``, default 1,000,000 series x 60 steps): generation against the reference
  generator, Parquet persist (the book's 70/20/10 split, as the flow writes it) + load of every split against
  ``np.save`` + ``np.load`` of the whole array, each in a fresh process for its peak memory.

    .venv/bin/python bench/speed.py [--repeats 2] [--epochs 100] [--out bench/results/speed.md] [VARIANT ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_REFERENCE = ROOT / "bench" / "reference" / "homl_reference.py"
ONE_STEP_TRAINED = ["linear", "simple_rnn", "deep_rnn", "deep_rnn_dense"]
DEFAULT_VARIANTS = ["linear", "simple_rnn", "deep_rnn", "deep_rnn_dense", "linear_10", "seq2vec_rnn", "seq2seq_rnn",
                    "ln_rnn", "lstm", "gru", "conv_gru", "wavenet"]


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("homl_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_reference(reference, name: str, epochs: int) -> dict:
    """The reference script's own code path for one model: generate, fit with early stopping, predict."""
    one_step = name in reference.ONE_STEP
    rows = (reference.run_one_step if one_step else reference.run_multi_step)({name}, epochs, False)
    started = time.perf_counter()
    row = next(r for r in rows if r["model"] == name)
    return {"seconds": time.perf_counter() - started, "valid_mse": row["valid_mse"], "epochs": row.get("epochs")}


def run_seqcast(name: str, epochs: int) -> dict:
    from seqcast.flows.forecast import forecast

    started = time.perf_counter()
    result = forecast(variant=name, epochs=epochs)
    return {"seconds": time.perf_counter() - started, "valid_mse": result["valid_mse"], "epochs": result["epochs"]}


def reference_medians(path: Path) -> dict[str, float]:
    """Variant -> reference median seconds, from the models table of an earlier ``--out`` file."""
    medians = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 3 and cells[0] in DEFAULT_VARIANTS:
            medians[cells[0]] = float(cells[2])
    return medians


def machine() -> str:
    from seqcast.training.fit import library_versions

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items() if k != "seqcast")
    from seqcast.flows.execution import available_cores

    return f"{available_cores()} cores ({cpu}), {memory:.0f} GiB RAM, no GPU; {versions}"


def median(values):
    return statistics.median(values) if values else float("nan")


def variant_table(results: dict) -> str:
    lines = ["| variant | seqcast median s | reference median s | ratio | seqcast valid MSE | reference valid MSE | "
             "MSE within +5%? | epochs (seqcast / reference) | runs |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        a, b = r["seqcast"], r["reference"]
        ta, tb = median([x["seconds"] for x in a]), median([x["seconds"] for x in b])
        ma, mb = median([x["valid_mse"] for x in a]), median([x["valid_mse"] for x in b])
        ok = "yes" if ma <= mb * 1.05 else "**no**"
        lines.append(f"| {name} | {ta:.1f} | {tb:.1f} | {ta / tb:.2f} | {ma:.5f} | {mb:.5f} | {ok} | "
                     f"{'/'.join(str(x['epochs']) for x in a)} ; {'/'.join(str(x['epochs']) for x in b)} | "
                     f"{len(a)}+{len(b)} |")
    return "\n".join(lines)


def orchestration_overhead(runs: int) -> str:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from seqcast.flows.forecast import forecast

    tiny = dict(variant="naive", n_series=240, n_train=160, n_valid=40, n_test=40)
    forecast(**tiny)  # dataset written once; every timed run reuses it
    timings = {"Prefect default (heartbeat every 180 s)": [], "heartbeat off (seqcast run, bench)": []}
    for _ in range(runs):
        for label, setting in zip(timings, (180, None)):
            with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: setting}):
                started = time.perf_counter()
                forecast(**tiny)
                timings[label].append(time.perf_counter() - started)
    lines = ["| naive flow run, end to end, running server | median s | min s | max s | runs |",
             "|---|---|---|---|---|"]
    for label, values in timings.items():
        lines.append(f"| {label} | {median(values):.2f} | {min(values):.2f} | {max(values):.2f} | {len(values)} |")
    return "\n".join(lines)


DATA_STEP = r"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
step, n, folder = sys.argv[2], int(sys.argv[3]), sys.argv[4]
from pathlib import Path
from seqcast.data.synthetic import generate_time_series
from concurrent.futures import ThreadPoolExecutor
from seqcast.storage.datasets import read_split, read_values, sync_dataset, write_dataset, write_values


def peak_mib():  # this process's peak resident memory since the last reset_peak()
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024


def reset_peak():
    global start_mib
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start_mib = peak_mib()  # resident at the step's start: the interpreter, its imports and (if any) the input


steps = 60
if step == "reference-generate":
    import importlib.util
    spec = importlib.util.spec_from_file_location("ref", sys.argv[5]); ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)  # imports keras: done before the clock starts
    reset_peak(); started = time.perf_counter()
    np.random.seed(42); array = ref.generate_time_series(n, steps)
elif step == "seqcast-generate":
    reset_peak(); started = time.perf_counter()
    array = generate_time_series(n, steps, 42)
else:
    array = generate_time_series(n, steps, 42)[..., 0].copy()
    reset_peak(); started = time.perf_counter()
    if step.startswith("numpy-save"):
        with open(Path(folder) / "series.npy", "wb") as f:
            np.save(f, array)
            if step == "numpy-save-fsync-load":
                f.flush(); os.fsync(f.fileno())
        del array
        array = np.load(Path(folder) / "series.npy")
    else:
        train, valid = int(n * 0.7), int(n * 0.9)  # the book's 70/20/10 split, as the flow persists it
        splits = {"train": array[:train], "valid": array[train:valid], "test": array[valid:]}
        if step == "parquet-bare":  # the format's own floor: seqcast's own split writer, no hash or manifest
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda name: write_values(splits[name], Path(folder) / name), splits))
            shapes = {name: part.shape for name, part in splits.items()}; del array, splits
            array = [read_values(Path(folder) / name, shape) for name, shape in shapes.items()]
        else:  # as the flow persists it (unsynced) and training loads it
            ref = write_dataset(Path(folder), "ds-bench", {"n": n}, splits); del array, splits
            array = [read_split(ref, name) for name in ("train", "valid", "test")]  # all of it, as np.load does
            if step == "seqcast-persist-load-sync":  # and its record's sync at once, with no training in between
                sync_dataset(ref.path)
            elif step == "seqcast-sync-after-35s":  # the sync alone, after 35 s of training: the kernel writes dirty
                time.sleep(35)  # pages back once they are 30 s old (vm.dirty_expire_centisecs), checking every 5 s
                started = time.perf_counter()
                sync_dataset(ref.path)
seconds = time.perf_counter() - started
loaded = array if isinstance(array, list) else [array]
print(json.dumps({"seconds": seconds, "peak_mb": peak_mib(), "start_mb": start_mib,
                  "array_mb": sum(a.nbytes for a in loaded) / 2**20}))
"""


def data_path(n_series: int, reference: Path, repeats: int) -> str:
    results: dict[str, list[dict]] = {}
    steps = ["reference-generate", "seqcast-generate", "numpy-save-load", "numpy-save-fsync-load", "parquet-bare",
             "seqcast-persist-load", "seqcast-persist-load-sync", "seqcast-sync-after-35s"]
    for _ in range(repeats):
        for step in steps:
            with tempfile.TemporaryDirectory(dir=os.environ.get("SEQCAST_BENCH_TMP")) as folder:
                out = subprocess.run([sys.executable, "-c", DATA_STEP, str(ROOT), step, str(n_series), folder,
                                      str(reference)], capture_output=True, text=True, check=True)
            results.setdefault(step, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [f"| data path, {n_series:,} series x 60 steps float32 | median s | peak memory of the step, MiB | "
             f"peak / array size | resident at the step's start, MiB | runs |", "|---|---|---|---|---|---|"]
    for step in steps:
        rows = results[step]
        peak, array = median([r["peak_mb"] for r in rows]), rows[0]["array_mb"]
        lines.append(f"| {step} | {median([r['seconds'] for r in rows]):.2f} | {peak:.0f} | {peak / array:.2f}x | "
                     f"{median([r['start_mb'] for r in rows]):.0f} | {len(rows)} |")

    def ratio(a, b):
        return median([r["seconds"] for r in results[a]]) / median([r["seconds"] for r in results[b]])

    lines.append(
        f"\nRatios: generation {ratio('seqcast-generate', 'reference-generate'):.2f}x the reference generator; "
        f"Parquet persist + load {ratio('seqcast-persist-load', 'numpy-save-load'):.2f}x np.save + np.load; with "
        f"the sync that the run's record does (here at once, not after training) "
        f"{ratio('seqcast-persist-load-sync', 'numpy-save-fsync-load'):.2f}x np.save + fsync + np.load and "
        f"{ratio('seqcast-persist-load-sync', 'numpy-save-load'):.2f}x np.save + np.load; that sync after 35 s of "
        f"training {1000 * median([r['seconds'] for r in results['seqcast-sync-after-35s']]):.0f} ms; the bare "
        f"Parquet calls alone (no hash or manifest) {ratio('parquet-bare', 'numpy-save-load'):.2f}x np.save + np.load. "
        f"Peak memory is the process's resident peak during the step (the interpreter, its imports and the "
        f"input array included), reset at the step's start.")
    return "\n".join(lines)


def sweep_section(variants: list[str], epochs: int, server, reference_seconds: dict[str, float]) -> str:
    """The sweep flow over ``variants`` through a served ``seqcast serve`` (a fresh process per run, as deployed),
    once per training-slot setting on this machine's cores; against the reference run one after another."""
    from prefect.client.orchestration import get_client

    from seqcast.flows.execution import available_cores
    from seqcast.flows.forecast import forecast
    from seqcast.flows.sweep import sweep
    from tests.prefect_server import wait_for_deployments

    forecast(variant="naive", epochs=epochs)  # the one-step dataset exists before either timed sweep
    cores = available_cores()
    lines = ["| sweep of " + ", ".join(variants) + " | wall s | training slots x TensorFlow threads per run |",
             "|---|---|---|"]
    for slots in dict.fromkeys((1, cores)):
        env = {**os.environ, "SEQCAST_TRAINING_SLOTS": str(slots)}
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            env.pop(name, None)  # seqcast serve shares the cores out among the slots
        log_path = server.home / f"serve-{slots}.log"
        with open(log_path, "wb") as log:
            serving = subprocess.Popen([sys.executable, "-m", "seqcast.app.cli", "serve", "--no-schedules",
                                        *[a for v in variants for a in ("--variant", v)]], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:  # each pass starts with no deployments: they exist once this serve registered them
            wait_for_deployments([f"forecast/{name}" for name in variants], serving, log_path)
            started = time.perf_counter()
            table = sweep(variants=variants, parameters={"epochs": epochs})
            seconds = time.perf_counter() - started
        finally:
            os.killpg(serving.pid, signal.SIGTERM)
            try:
                serving.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(serving.pid, signal.SIGKILL)
                serving.wait()
            with get_client(sync_client=True) as client:
                for name in variants:
                    client.delete_deployment(client.read_deployment_by_name(f"forecast/{name}").id)
        failed = [r["variant"] for r in table if r["state"] != "Completed"]
        if failed:
            raise RuntimeError(f"sweep runs failed: {failed}")
        lines.append(f"| seqcast sweep | {seconds:.1f} | {slots} x {max(1, cores // slots)} |")
    if all(v in reference_seconds for v in variants):
        total = sum(reference_seconds[v] for v in variants)
        lines.append(f"| reference, one after another (sum of its model medians, {reference_seconds['source']}) | "
                     f"{total:.1f} | 1 process |")
    return "\n".join(lines)


def run_jobs_section(variants: list[str], epochs: int, reference_seconds: dict[str, float],
                     checkouts: list[Path], workdir: Path) -> str:
    """``seqcast run --jobs <cores>`` over ``variants`` (one TensorFlow thread per run on 2 cores), in a fresh
    process per checkout of the code (this one first; others to compare with), against the running server; the
    1-minute load average before and after each, as this host may be shared."""
    from seqcast.flows.execution import available_cores
    from seqcast.flows.forecast import forecast

    forecast(variant="naive", epochs=epochs)  # the one-step dataset exists before any timed run
    cores = available_cores()
    lines = ["| seqcast run --jobs " + str(cores) + " of " + ", ".join(variants) + " | code | wall s | "
             "runs at once x TensorFlow threads per run | load before / after |", "|---|---|---|---|---|"]
    for n, checkout in enumerate(checkouts, 1):
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            env.pop(name, None)  # seqcast run shares the cores out among its runs
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        with open(workdir / f"run-jobs-{n}.log", "wb") as log:
            done = subprocess.run([sys.executable, "-m", "seqcast.app.cli", "run", *[a for v in variants for a in
                                   ("--variant", v)], "--jobs", str(cores), "--epochs", str(epochs)],
                                  cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"seqcast run in {checkout} failed (exit code {done.returncode}): see {log.name}")
        lines.append(f"| seqcast run --jobs {cores} | {checkout} | {seconds:.1f} | {cores} x "
                     f"{max(1, cores // cores)} | {load_before:.1f} / {os.getloadavg()[0]:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    if all(v in reference_seconds for v in variants):
        total = sum(reference_seconds[v] for v in variants)
        lines.append(f"| reference, one after another (sum of its model medians, {reference_seconds['source']}) | "
                     f"| {total:.1f} | 1 process | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", metavar="VARIANT[:N]",
                        help=f"default: {' '.join(DEFAULT_VARIANTS)}; NAME:N runs that one N times")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--data-series", type=int, default=1_000_000)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also time the sweep flow over the one-step variants "
                        "through seqcast serve, with 1 training slot and with one per core")
    parser.add_argument("--run-jobs", action="store_true", help="also time `seqcast run --jobs <cores>` over the "
                        "one-step variants, one TensorFlow thread per run")
    parser.add_argument("--compare-checkout", type=Path, action="append", default=[], metavar="DIR",
                        help="--run-jobs: also time the same command with the code in DIR (another commit's "
                             "checkout), after this checkout's (repeatable)")
    parser.add_argument("--reference-from", type=Path, metavar="MD",
                        help="--sweep, --run-jobs: reference medians of variants this invocation does not run, "
                             "from an earlier run's models table")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args()
    if not args.reference.is_file():
        parser.error(f"reference script not found at {args.reference}; pass --reference PATH")
    from seqcast.models.registry import get_variant

    plan = {}  # variant -> repeats; "NAME:N" repeats one variant N times
    for item in args.variants or DEFAULT_VARIANTS:
        name, _, count = item.partition(":")
        get_variant(name)
        if count and not count.isdigit():
            parser.error(f"{item!r}: write a variant's repeats as NAME:N, e.g. wavenet:3")
        plan[name] = int(count) if count else args.repeats

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped with kill: still stop the Prefect server
    workdir = Path(tempfile.mkdtemp(prefix="seqcast-speed-"))
    os.environ.update({"SEQCAST_HOME": str(workdir / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "DO_NOT_TRACK": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PREFECT_LOGGING_LEVEL": "WARNING"})
    from tests.prefect_server import start_server, stop_server

    server = start_server(workdir / "prefect")
    os.environ.update({"PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(server.home)})
    from seqcast.flows.execution import ensure_training_limit

    ensure_training_limit(resize=False)  # as `seqcast run` does: its runs acquire a training slot
    sections = [f"# seqcast speed benchmark\n\nMachine: {machine()}; "
                f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; Prefect server at {server.api_url}.\n\n"
                f"Command: `{' '.join(['python', 'bench/speed.py', *sys.argv[1:]])}`"]
    try:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        if not args.skip_overhead:
            sections.append("## Orchestration overhead\n\n" + orchestration_overhead(5))
            print(sections[-1], flush=True)
        results = {}
        if not args.skip_models:
            reference = load_reference(args.reference)
            with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                for name, repeats in plan.items():
                    results[name] = {"seqcast": [], "reference": []}
                    for _ in range(repeats):
                        results[name]["seqcast"].append(run_seqcast(name, args.epochs))
                        results[name]["reference"].append(run_reference(reference, name, args.epochs))
                        print(name, json.dumps({k: v[-1] for k, v in results[name].items()}), file=sys.stderr,
                              flush=True)
                    if args.out:  # a long invocation keeps every finished variant even if it is stopped later
                        write_out(args.out, [*sections, "## Models (partial)\n\n" + variant_table(results)])
            sections.append(f"## Models (A B alternating, up to {args.epochs} epochs)\n\n"
                            + variant_table(results))
            print(sections[-1], flush=True)
        measured = {name: median([x["seconds"] for x in r["reference"]]) for name, r in results.items()}
        reference_seconds = {**(reference_medians(args.reference_from) if args.reference_from else {}), **measured}
        reference_seconds["source"] = "this invocation" + (f" and {args.reference_from}" if args.reference_from
                                                           else "")
        if args.run_jobs:
            sections.append("## seqcast run --jobs over the one-step variants\n\n"
                            + run_jobs_section(ONE_STEP_TRAINED, args.epochs, reference_seconds,
                                               [ROOT, *args.compare_checkout], workdir))
            print(sections[-1], flush=True)
        if args.sweep:
            sections.append("## Sweep of the one-step variants\n\n"
                            + sweep_section(ONE_STEP_TRAINED, args.epochs, server, reference_seconds))
            print(sections[-1], flush=True)
        if not args.skip_data:
            sections.append("## Data path\n\n" + data_path(args.data_series, args.reference, args.repeats))
            print(sections[-1], flush=True)
    finally:
        stop_server(server)
    if args.out:
        write_out(args.out, sections)
    return 0


def write_out(path: Path, sections: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    sys.exit(main())
