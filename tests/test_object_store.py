"""SEQCAST_HOME=s3://bucket/prefix against a real S3 API (moto's server): the store's parts on a local folder and on
the object store alike, machines that share only the store, and a whole run whose state lands in the bucket."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.fs as pafs
import pytest

from seqcast.app.cli import main as cli
from seqcast.config.settings import SettingsError, load_settings
from seqcast.storage import Store
from seqcast.storage.objects import ObjectStore
from seqcast.storage.packs import PACK_SIZE, PACKS, unpack
from seqcast.storage.results import MARKER, MERGED, SEEN, UNPACKED
from tests.s3_server import SECRET
from tests.series_files import COLUMNS, daily_series, write


def machine(location: str, local: Path) -> Store:
    """The store as one machine sees it: the shared location, its own cache and its own results database."""
    if location.startswith("s3://"):
        return Store(local / "cache", 5.0, ObjectStore(location), local / "results.duckdb")
    return Store(Path(location), 5.0, None, local / "results.duckdb")


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path, s3_server, monkeypatch) -> str:
    """A fresh store location: a local folder, or a prefix of the S3 server's bucket."""
    if request.param == "local":
        return str(tmp_path / "home")
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.url(f"parts-{tmp_path.name}")


def splits(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(n, 6)).astype(np.float32) for name, n in (("train", 8), ("valid", 3), ("test", 2))}


def test_a_dataset_written_on_one_machine_is_read_on_another(location, tmp_path):
    one, two = machine(location, tmp_path / "one"), machine(location, tmp_path / "two")
    data = splits(0)
    written = one.datasets.write("ds-a", {"n_steps": 5, "horizon": 1}, data)
    found = two.datasets.find("ds-a")
    assert found is not None and found.manifest["content_hash"] == written.manifest["content_hash"]
    for name in data:
        np.testing.assert_array_equal(two.datasets.read_windows(found, name)[0], data[name])
    assert two.datasets.list() == ["ds-a"] and two.datasets.find("ds-b") is None
    # a second write of the same id, from either machine, keeps the first copy
    assert two.datasets.write("ds-a", {"n_steps": 5, "horizon": 1}, data).manifest == written.manifest


def test_a_model_saved_on_one_machine_loads_on_another(location, tmp_path):
    import keras

    one, two = machine(location, tmp_path / "one"), machine(location, tmp_path / "two")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = one.models.save("run-a", model, {"variant": "linear"})
    plot = one.models.write_file("run-a", "forecast.png", b"png bytes")
    assert two.models.saved_manifest("run-a") == {"variant": "linear"} and two.models.manifest(path)["variant"]
    np.testing.assert_allclose(two.models.load(path).predict(x, verbose=0), model.predict(x, verbose=0))
    assert two.models.read_file(plot) == b"png bytes" and two.models.saved_manifest("run-b") is None

    # the same run saved again (a retried flow run): the other machine loads the new model, not its cached one
    model.layers[0].set_weights([w + 1 for w in model.layers[0].get_weights()])
    one.models.save("run-a", model, {"variant": "linear", "try": 2})
    np.testing.assert_allclose(two.models.load(path).predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_training_backup_follows_the_run_to_another_machine(location, tmp_path):
    one, two = machine(location, tmp_path / "one"), machine(location, tmp_path / "two")
    backup = one.models.backup_folder("run-a")
    (backup / "chkpt").mkdir(parents=True)
    (backup / "chkpt" / "weights.h5").write_bytes(b"epoch 3")
    (backup / "epochs.json").write_text("[1, 2, 3]")
    one.models.store_backup("run-a")
    resumed = two.models.backup_folder("run-a")
    assert (resumed / "chkpt" / "weights.h5").read_bytes() == b"epoch 3"
    assert (resumed / "epochs.json").read_text() == "[1, 2, 3]"

    # a finished fit removes its backup; the store forgets it too, so a later try starts afresh
    for path in sorted(backup.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    one.models.store_backup("run-a")
    assert not any(two.models.backup_folder("run-a").rglob("*"))


def runs_row(run_id: str, dataset_id: str = "ds-a") -> dict:
    return {"runs": [{"run_id": run_id, "flow_run_id": run_id, "variant": "linear", "status": "completed",
                      "dataset_id": dataset_id}]}


def test_records_of_other_machines_arrive_by_sync_and_rebuild(location, tmp_path):
    one, two = machine(location, tmp_path / "one"), machine(location, tmp_path / "two")
    for n in range(3):
        one.records.write(f"run-{n}", runs_row(f"run-{n}"))
    assert one.results.load(["run-0", "run-1", "run-2"]).loaded == ["run-0", "run-1", "run-2"]

    report = two.results.sync()
    assert sorted(report.loaded) == ["run-0", "run-1", "run-2"]
    assert two.results.query("SELECT run_id FROM runs ORDER BY run_id")[1] == [("run-0",), ("run-1",), ("run-2",)]
    assert two.results.sync().loaded == []  # incremental: nothing new, nothing loaded

    one.records.write("run-1", runs_row("run-1", dataset_id="ds-b"))  # a retried run rewrites its record
    one.records.write("run-3", runs_row("run-3"))
    assert sorted(two.results.sync().loaded) == ["run-1", "run-3"]
    assert two.results.query("SELECT run_id, dataset_id FROM runs ORDER BY run_id")[1] == [
        ("run-0", "ds-a"), ("run-1", "ds-b"), ("run-2", "ds-a"), ("run-3", "ds-a")]

    three = machine(location, tmp_path / "three")
    assert sorted(three.results.rebuild().loaded) == ["run-0", "run-1", "run-2", "run-3"]


def test_a_record_whose_marker_is_not_stored_yet_is_invisible(s3_server, tmp_path, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    location = s3_server.url(f"half-{tmp_path.name}")
    one, two = machine(location, tmp_path / "one"), machine(location, tmp_path / "two")
    folder = one.records.write("run-a", runs_row("run-a"))
    remote = ObjectStore(location)
    marker = remote.get_bytes(f"records/run-a/{MARKER}")
    remote.delete([f"records/run-a/{MARKER}"])  # as if the uploader died after the parts, before the marker
    assert two.results.sync().loaded == [] and "run-a" not in two.records.committed()
    remote.put_bytes(f"records/run-a/{MARKER}", marker)
    assert two.results.sync().loaded == ["run-a"]
    assert json.loads(marker)["files"].keys() == {p.name for p in folder.iterdir() if p.name != MARKER}


@pytest.mark.parametrize("home, message", [
    ("gs://bucket/prefix", "gs:// is not a store seqcast can use"),
    ("s3:///prefix", "names its bucket"),
])
def test_a_home_url_seqcast_cannot_use_is_refused_before_any_work(home, message, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQCAST_HOME", home)
    with pytest.raises(SettingsError, match=message):
        load_settings()
    assert cli(["run", "--variant", "linear"]) == 2
    assert message in capsys.readouterr().err and list(tmp_path.iterdir()) == []  # no local "s3:" or "gs:" folder


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_on_an_s3_home_keeps_its_state_in_the_bucket(s3_home, s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = write(daily_series(n_series=4, days=120), tmp_path / "sales.csv")
    columns = [f"--{key.replace('_', '-')}={value}" for key, value in COLUMNS.items()]
    assert cli(["ingest", str(source), *columns, "--n-steps=14", "--horizon=7"]) == 0
    assert cli(["run", "--variant", "linear", "--epochs=2", "--dataset-id", latest_dataset(tmp_path)]) == 0

    bucket, prefix = s3_home.removeprefix("s3://").split("/", 1)
    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint.removeprefix("http://"), scheme="http",
                           access_key="seqcast-test", secret_key=SECRET, region="us-east-1")
    stored = {info.path.split(f"{prefix}/", 1)[1] for info in
              fs.get_file_info(pafs.FileSelector(f"{bucket}/{prefix}", recursive=True)) if info.is_file}
    assert {key.split("/")[0] for key in stored} == {"datasets", "models", "records"}
    with duckdb.connect(str(tmp_path / "results.duckdb"), read_only=True) as con:
        (run_id,) = con.execute("SELECT run_id FROM runs").fetchone()
    assert {f"models/{run_id}/{name}" for name in ("model.keras", "manifest.json", "forecast.png")} <= stored
    assert {key.split("/")[1] for key in stored if key.startswith("records/")} >= {run_id}
    assert not any("/backup/" in key for key in stored)  # the finished fit removed its backup from the store
    assert not (tmp_path / "s3:").exists()

    # another machine: its own cache and database, the same bucket
    monkeypatch.setenv("SEQCAST_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setenv("SEQCAST_DB", str(tmp_path / "other.duckdb"))
    assert cli(["results", "sync"]) == 0
    with duckdb.connect(str(tmp_path / "other.duckdb"), read_only=True) as con:
        assert con.execute("SELECT run_id, variant, status FROM runs").fetchall() == [(run_id, "linear", "completed")]
    assert cli(["predict", "--run-id", run_id]) == 0
    # the model and the dataset came from the bucket into the other machine's cache; the forecasts went back
    assert (tmp_path / "other-cache" / "models" / run_id / "model.keras").is_file()
    with duckdb.connect(str(tmp_path / "other.duckdb"), read_only=True) as con:
        (predict_run,) = con.execute("SELECT DISTINCT run_id FROM forecasts WHERE model_run_id = ?",
                                     [run_id]).fetchone()
    assert fs.get_file_info(f"{bucket}/{prefix}/records/{predict_run}/{MARKER}").is_file


def latest_dataset(tmp_path: Path) -> str:
    with duckdb.connect(str(tmp_path / "results.duckdb"), read_only=True) as con:
        return con.execute("SELECT dataset_id FROM datasets ORDER BY created_at DESC LIMIT 1").fetchone()[0]


def s3_location(s3_server, tmp_path, monkeypatch, name: str) -> str:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.url(f"{name}-{tmp_path.name}")


def stored_packs(location: str) -> dict[str, set[tuple[str, str]]]:
    """Each pack in the store: the (run id, write id) writes it holds."""
    remote = ObjectStore(location)
    return {key: set(unpack(remote.get_bytes(key))[0]) for key in remote.list(PACKS)}


def scored_rows(run_id: str, n: int, dataset_id: str = "ds-a") -> dict:
    """A record with rows in several tables, the metrics one with a row count of its own."""
    return {**runs_row(run_id, dataset_id),
            "metrics": [{"run_id": run_id, "predictor": "model", "split": "test", "metric": "mae", "horizon_step": step,
                         "value": n + step / 10} for step in range(n % 3 + 1)]}


def table_rows(store: Store, table: str) -> list[tuple]:
    return store.results.query(f"SELECT * FROM {table} ORDER BY ALL")[1]


def one_machine_writes(location: str, tmp_path: Path, count: int) -> tuple[Store, Store, list[str]]:
    """Two machines on one bucket, the first having written ``count`` records."""
    one, two = machine(location, tmp_path / "one"), machine(location, tmp_path / "two")
    runs = [f"run-{n:02d}" for n in range(count)]
    for n, run_id in enumerate(runs):
        one.records.write(run_id, scored_rows(run_id, n))
    return one, two, runs


def test_a_machine_packs_its_writes_and_another_syncs_them_from_the_pack(s3_server, tmp_path, monkeypatch):
    location = s3_location(s3_server, tmp_path, monkeypatch, "packs")
    one, two, runs = one_machine_writes(location, tmp_path, PACK_SIZE + 3)
    packs = stored_packs(location)
    assert len(packs) == 1 and {run_id for run_id, _ in next(iter(packs.values()))} == set(runs[:PACK_SIZE])
    # the machine that made the pack holds all of it: its own syncs never fetch it back
    assert {f"{PACKS}/{path.name}" for path in (one.records.root / SEEN).iterdir()} == set(packs)

    assert two.records.mirror() == (len(runs), PACK_SIZE)
    (merged,) = (two.records.root / MERGED).iterdir()  # the pack came whole: its merged tables wait for the load
    assert json.loads((merged / "covers.json").read_text()).keys() == set(runs[:PACK_SIZE])
    assert sorted(two.results.sync().loaded) == runs
    # rows loaded through the pack's merged tables are the rows of the records themselves, loaded one by one
    assert sorted(one.results.load(runs).loaded) == runs
    for table in ("runs", "metrics"):
        assert table_rows(two, table) == table_rows(one, table)
    assert not merged.exists()  # merged tables go once loaded


def test_a_pack_holding_an_older_write_of_a_run_gives_way_to_the_newer(s3_server, tmp_path, monkeypatch):
    location = s3_location(s3_server, tmp_path, monkeypatch, "stale")
    one, two, runs = one_machine_writes(location, tmp_path, PACK_SIZE)
    one.records.write("run-03", scored_rows("run-03", 7, dataset_id="ds-b"))  # a retried run, after the pack

    report = two.results.sync()
    assert sorted(report.loaded) == runs and report.from_packs == PACK_SIZE - 1
    assert two.results.query("SELECT dataset_id, count(*) FROM runs GROUP BY ALL ORDER BY ALL")[1] == [
        ("ds-a", PACK_SIZE - 1), ("ds-b", 1)]
    assert two.results.query("SELECT count(*) FROM metrics WHERE run_id = 'run-03'")[1] == [(7 % 3 + 1,)]


def test_records_fetched_one_by_one_go_up_as_a_pack_for_the_next_machine(s3_server, tmp_path, monkeypatch):
    location = s3_location(s3_server, tmp_path, monkeypatch, "resync")
    runs = [f"run-{n:02d}" for n in range(PACK_SIZE + 2)]
    for n, run_id in enumerate(runs):  # writers that keep no cache (a container per run) never pack
        machine(location, tmp_path / f"writer-{n}").records.write(run_id, scored_rows(run_id, n))
    assert stored_packs(location) == {}

    first = machine(location, tmp_path / "first").results.sync()
    assert sorted(first.loaded) == runs and first.from_packs == 0
    assert [{run_id for run_id, _ in writes} for writes in stored_packs(location).values()] == [set(runs)]
    second = machine(location, tmp_path / "second").results.sync()
    assert sorted(second.loaded) == runs and second.from_packs == len(runs)


def test_a_damaged_pack_costs_requests_not_records(s3_server, tmp_path, monkeypatch):
    location = s3_location(s3_server, tmp_path, monkeypatch, "damaged")
    _, two, runs = one_machine_writes(location, tmp_path, PACK_SIZE)
    (key,) = stored_packs(location)
    ObjectStore(location).put_bytes(key, b"not a tar")
    report = two.results.sync()
    assert sorted(report.loaded) == runs and report.from_packs == 0 and not report.failed


def test_runs_of_one_machine_side_by_side_pack_each_write_once(s3_server, tmp_path, monkeypatch):
    location = s3_location(s3_server, tmp_path, monkeypatch, "claims")

    def write(n: int) -> None:  # each call a run of its own on the same machine: its own Store, one cache
        machine(location, tmp_path / "one").records.write(f"run-{n:02d}", scored_rows(f"run-{n:02d}", n))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(3 * PACK_SIZE)))
    packed = [run_id for writes in stored_packs(location).values() for run_id, _ in writes]
    assert len(packed) == len(set(packed)) >= 2 * PACK_SIZE  # no write in two packs; at most the last pack waits
    unpacked = {path.name for path in (tmp_path / "one" / "cache" / "records" / UNPACKED).iterdir()}
    assert len(packed) + len(unpacked) == 3 * PACK_SIZE
