"""SEQCAST_HOME=s3://bucket/prefix against a real S3 API (moto's server): the store's parts on a local folder and on
the object store alike, machines that share only the store, and a whole run whose state lands in the bucket."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from seqcast.app.cli import main as cli
from seqcast.config.settings import SettingsError, load_settings
from seqcast.storage import Store
from seqcast.storage.objects import ObjectStore
from tests.s3_server import SECRET
from tests.series_files import COLUMNS, daily_series, write


def machine(location: str, local: Path) -> Store:
    """The store as one machine sees it: the shared location, and with an object store its own cache."""
    if location.startswith("s3://"):
        return Store(local / "cache", ObjectStore(location))
    return Store(Path(location))


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


def test_runs_of_other_machines_are_read_as_soon_as_committed(location, tmp_path):
    """Machines share only the store: what one commits, another reads at once, a retry's rows replacing the first
    write's; a machine that never ran anything reads all of it."""
    one, two = machine(location, tmp_path / "one"), machine(location, tmp_path / "two")
    for n in range(3):
        one.results.record(f"run-{n}", runs_row(f"run-{n}"))
    assert two.results.query("SELECT run_id FROM runs ORDER BY run_id")[1] == [("run-0",), ("run-1",), ("run-2",)]
    one.results.record("run-1", runs_row("run-1", dataset_id="ds-b"))  # a retried run replaces its rows
    two.results.record("run-3", runs_row("run-3"))
    expected = [("run-0", "ds-a"), ("run-1", "ds-b"), ("run-2", "ds-a"), ("run-3", "ds-a")]
    for store in (one, two, machine(location, tmp_path / "three")):
        assert store.results.query("SELECT run_id, dataset_id FROM runs ORDER BY run_id")[1] == expected
    if location.startswith("s3://"):  # the tables live in the bucket: no machine keeps results of its own
        assert not any((tmp_path / name / "cache" / "tables").exists() for name in ("one", "two", "three"))


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
    assert cli(["run", "--variant", "linear", "--epochs=2", "--dataset-id", latest_dataset()]) == 0

    bucket, prefix = s3_home.removeprefix("s3://").split("/", 1)
    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint.removeprefix("http://"), scheme="http",
                           access_key="seqcast-test", secret_key=SECRET, region="us-east-1")
    stored = {info.path.split(f"{prefix}/", 1)[1] for info in
              fs.get_file_info(pafs.FileSelector(f"{bucket}/{prefix}", recursive=True)) if info.is_file}
    assert {key.split("/")[0] for key in stored} == {"datasets", "models", "tables"}
    from seqcast.storage.home import current_store

    (run_id,) = current_store().results.query("SELECT run_id FROM runs")[1][0]
    assert {f"models/{run_id}/{name}" for name in ("model.keras", "manifest.json", "forecast.png")} <= stored
    assert any(key.startswith("tables/runs/_delta_log/") for key in stored)
    assert not any("/backup/" in key for key in stored)  # the finished fit removed its backup from the store
    assert not (tmp_path / "s3:").exists()

    # another machine: its own cache, the same bucket; it reads the run with nothing to load first
    monkeypatch.setenv("SEQCAST_CACHE", str(tmp_path / "other-cache"))
    assert current_store().results.query("SELECT run_id, variant, status FROM runs")[1] == [
        (run_id, "linear", "completed")]
    assert cli(["predict", "--run-id", run_id]) == 0
    # the model and the dataset came from the bucket into the other machine's cache; the forecasts went back
    assert (tmp_path / "other-cache" / "models" / run_id / "model.keras").is_file()
    assert not (tmp_path / "other-cache" / "tables").exists()
    (machine_one_view,) = Store(tmp_path / "cache", ObjectStore(s3_home)).results.query(
        "SELECT count(DISTINCT run_id) FROM forecasts WHERE model_run_id = ?", [run_id])[1]
    assert machine_one_view == (1,)


def latest_dataset() -> str:
    from seqcast.storage.home import current_store

    return current_store().results.query("SELECT dataset_id FROM datasets ORDER BY created_at DESC LIMIT 1")[1][0][0]
