"""Data tier: the chapter's generator, dataset ids, targets, Parquet round trips."""

from __future__ import annotations

import errno
import json

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from seqcast.data.synthetic import SyntheticSpec, generate_splits, generate_time_series, sequence_targets, split_windows
from seqcast.storage import datasets
from seqcast.storage.datasets import (
    SPLITS,
    UNSYNCED,
    DamagedDataset,
    content_hash,
    find_dataset,
    read_split,
    sync_dataset,
    write_dataset,
)


def book_generate_time_series(batch_size, n_steps):
    """The book's generator verbatim (global numpy RNG), as an independent computation."""
    freq1, freq2, offsets1, offsets2 = np.random.rand(4, batch_size, 1)
    time = np.linspace(0, 1, n_steps)
    series = 0.5 * np.sin((time - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((time - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (np.random.rand(batch_size, n_steps) - 0.5)
    return series[..., np.newaxis].astype(np.float32)


def test_default_dataset_is_the_books_bit_for_bit():
    np.random.seed(42)
    expected = book_generate_time_series(10000, 51)
    splits = generate_splits(SyntheticSpec())
    got = np.concatenate([splits["train"], splits["valid"], splits["test"]])[..., np.newaxis]
    assert got.dtype == np.float32 and got.shape == (10000, 51, 1)
    assert np.array_equal(got, expected)
    assert [len(splits[s]) for s in SPLITS] == [7000, 2000, 1000]


def test_generator_is_seeded_and_leaves_global_rng_alone():
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    a = generate_time_series(50, 20, seed=3)
    assert np.array_equal(np.random.get_state()[1], before)
    assert np.array_equal(a, generate_time_series(50, 20, seed=3))
    assert not np.array_equal(a, generate_time_series(50, 20, seed=4))


def test_dataset_id_follows_content_of_spec():
    base = SyntheticSpec()
    assert base.dataset_id == SyntheticSpec().dataset_id
    assert base.dataset_id.startswith("ds-") and len(base.dataset_id) == 15
    ids = {SyntheticSpec(seed=1).dataset_id, SyntheticSpec(horizon=10).dataset_id, SyntheticSpec(n_test=999).dataset_id,
           SyntheticSpec(generator_version=2).dataset_id, base.dataset_id}
    assert len(ids) == 5


def test_split_larger_than_series_is_rejected():
    with pytest.raises(ValidationError, match="needs 11000 series, but n_series is 10000"):
        SyntheticSpec(n_train=8000)


def test_sequence_targets_match_the_chapters_loop():
    windows = generate_time_series(30, 60, seed=0)[..., 0]
    expected = np.empty((30, 50, 10), np.float32)
    for step_ahead in range(1, 11):
        expected[..., step_ahead - 1] = windows[:, step_ahead:step_ahead + 50]
    assert np.array_equal(sequence_targets(windows, 50, 10), expected)
    x, future = split_windows(windows, 50)
    assert x.shape == (30, 50, 1) and np.array_equal(future, windows[:, 50:])


def test_parquet_round_trip_is_bit_exact(tmp_path):
    spec = SyntheticSpec(n_series=120, n_train=80, n_valid=20, n_test=20, horizon=10)
    splits = generate_splits(spec)
    ref = write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits)
    assert sorted(p.name for p in ref.path.iterdir()) == [UNSYNCED, "dataset.json", "test.parquet",
                                                          "train.parquet", "valid.parquet"]
    sync_dataset(ref.path)
    assert not (ref.path / UNSYNCED).exists()
    for name in SPLITS:
        back = read_split(ref, name)
        assert back.dtype == np.float32 and np.array_equal(back, splits[name])
    manifest = json.loads((ref.path / "dataset.json").read_text())
    assert manifest["content_hash"] == content_hash(splits)
    assert manifest["spec"] == spec.model_dump()
    assert pq.read_metadata(ref.path / "train.parquet").num_rows == 80 * 60  # one row per value, window-major
    assert [p.name for p in tmp_path.iterdir()] == [spec.dataset_id]  # no temporary folder left behind


def test_a_split_without_windows_round_trips(tmp_path):
    spec = SyntheticSpec(n_series=30, n_train=20, n_valid=10, n_test=0)
    splits = generate_splits(spec)
    ref = write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits)
    assert read_split(ref, "test").shape == (0, 51) and np.array_equal(read_split(ref, "valid"), splits["valid"])
    assert ref.manifest["content_hash"] == content_hash(splits) != content_hash({**splits, "test": splits["valid"]})


def test_interrupted_write_leaves_no_dataset(tmp_path, monkeypatch):
    spec = SyntheticSpec(n_series=30, n_train=10, n_valid=10, n_test=10)
    splits = generate_splits(spec)
    real_write = datasets.write_values

    def disk_full_on_test_split(windows, path):  # the disk fills up while the other splits are being written
        if path.name == "test.parquet":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(windows, path)

    monkeypatch.setattr(datasets, "write_values", disk_full_on_test_split)
    with pytest.raises(OSError, match="No space left"):
        write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits)
    assert find_dataset(tmp_path, spec.dataset_id) is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    ref = write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits)
    assert np.array_equal(read_split(ref, "test"), splits["test"])


def _cut_short(path, damage: str) -> None:
    """What a crash may leave of a file whose pages never reached the disk."""
    if damage == "empty split":
        (path / "train.parquet").write_bytes(b"")
    elif damage == "zeroed values":  # the file's size survived, some of its pages did not
        data = bytearray((path / "valid.parquet").read_bytes())
        data[200:1200] = bytes(1000)
        (path / "valid.parquet").write_bytes(bytes(data))
    else:
        (path / "dataset.json").write_bytes(b"")


@pytest.mark.parametrize("damage", ["empty split", "zeroed values", "empty manifest"])
def test_a_dataset_cut_short_before_its_sync_is_reported_and_written_again(tmp_path, damage):
    spec = SyntheticSpec(n_series=120, n_train=80, n_valid=20, n_test=20)
    splits = generate_splits(spec)
    ref = write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits)
    _cut_short(ref.path, damage)
    with pytest.raises(DamagedDataset, match=f"dataset {spec.dataset_id} at {ref.path} is damaged: .*flushed to disk"):
        find_dataset(tmp_path, spec.dataset_id)
    again = write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits)  # the damaged copy is replaced
    assert [p.name for p in tmp_path.iterdir()] == [spec.dataset_id]
    for name in SPLITS:
        assert np.array_equal(read_split(again, name), splits[name])
    found = find_dataset(tmp_path, spec.dataset_id)  # checked, then synced: the check runs once
    assert found.manifest["content_hash"] == content_hash(splits) and not (found.path / UNSYNCED).exists()


def test_an_unsynced_dataset_that_is_whole_is_checked_once_then_trusted(tmp_path):
    spec = SyntheticSpec(n_series=120, n_train=80, n_valid=20, n_test=20)
    splits = generate_splits(spec)
    ref = write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits)
    assert (ref.path / UNSYNCED).exists()
    found = find_dataset(tmp_path, spec.dataset_id)  # e.g. another process, while this run trains: checked, synced
    assert found.manifest["content_hash"] == content_hash(splits) and not (ref.path / UNSYNCED).exists()
    _cut_short(ref.path, "zeroed values")  # damage after the sync: not what a crash does, and no longer looked for
    assert find_dataset(tmp_path, spec.dataset_id).manifest == found.manifest


@pytest.mark.parametrize(("case", "message"), [
    ("narrow test split", "one width"),
    ("no test split", "the splits train, valid, test"),
    ("short per-window column", "test split: per-window columns hold 3 rows for 10 windows"),
    ("unknown split", "unknown split 'holdout'"),
])
def test_inconsistent_splits_are_refused_before_anything_is_written(tmp_path, case, message):
    spec = SyntheticSpec(n_series=30, n_train=10, n_valid=10, n_test=10)
    splits, extra = generate_splits(spec), None
    if case == "narrow test split":
        splits["test"] = splits["test"][:, :50]
    elif case == "no test split":
        del splits["test"]
    elif case == "short per-window column":
        extra = {"test": {"series_id": np.arange(3)}}
    else:
        extra = {"holdout": {"series_id": np.arange(10)}}
    with pytest.raises(ValueError, match=message):
        write_dataset(tmp_path, spec.dataset_id, spec.model_dump(), splits, extra)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_content_hash_names_the_values_not_the_files(tmp_path):
    spec = SyntheticSpec(n_series=120, n_train=80, n_valid=20, n_test=20)
    splits = generate_splits(spec)
    ref = write_dataset(tmp_path / "a", spec.dataset_id, spec.model_dump(), splits)
    back = {name: read_split(ref, name) for name in SPLITS}
    assert ref.manifest["content_hash"].startswith("xxh3_128:")
    assert content_hash(back) == ref.manifest["content_hash"]  # what was read back is what was hashed
    again = write_dataset(tmp_path / "b", spec.dataset_id, spec.model_dump(), generate_splits(spec))
    assert again.manifest["content_hash"] == ref.manifest["content_hash"]  # seeded generation, same hash
    nudged = {**back, "valid": back["valid"].copy()}
    nudged["valid"][7, 13] = np.nextafter(nudged["valid"][7, 13], np.float32(2))  # one value, one ulp
    assert content_hash(nudged) != ref.manifest["content_hash"]
    moved = {"train": back["train"][:79], "valid": np.concatenate([back["train"][79:], back["valid"]]),
             "test": back["test"]}  # the same bytes split differently
    assert content_hash(moved) != ref.manifest["content_hash"]


def test_large_split_reads_back_in_one_decode(tmp_path):
    windows = np.random.default_rng(3).random((40_000, 60), dtype=np.float32)  # 2.4M values
    path = tmp_path / "train.parquet"
    datasets.write_values(windows, path)
    metadata = pq.read_metadata(path)
    assert metadata.num_row_groups == 1
    column = metadata.row_group(0).column(0)  # one row group, in pages of PAGE_ROWS values
    with open(path, "rb") as f:  # a page header starts with type, uncompressed size, compressed size (thrift varints)
        f.seek(column.data_page_offset)
        header = f.read(16)
    assert header[0] == 0x15 and _zigzag_varints(header[1:], 3) == [0, 4 * datasets.PAGE_ROWS, 4 * datasets.PAGE_ROWS]
    back = datasets.read_values(path, windows.shape)
    assert np.array_equal(back, windows)
    with duckdb.connect() as db:  # the query the module's docstring gives, across its pages
        rows = db.execute("SELECT file_row_number // 60 AS window, value FROM read_parquet(?, file_row_number = true) "
                          "ORDER BY file_row_number", [str(path)]).fetchnumpy()
    assert np.array_equal(rows["value"].reshape(windows.shape), windows) and rows["window"][-1] == 39_999
    with pytest.raises(ValueError, match="holds 2400000 values, its manifest says 40001 x 60"):
        datasets.read_values(path, (40_001, 60))


def _zigzag_varints(data: bytes, count: int) -> list[int]:
    """The first ``count`` thrift-compact i32 values of ``data``, each after a one-byte field header."""
    values, position = [], 0
    for _ in range(count):
        value = shift = 0
        while True:
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        values.append((value >> 1) ^ -(value & 1))
        position += 1  # the next field's header
    return values


def test_the_store_lists_published_datasets_by_id_and_requires_a_known_one(tmp_path):
    from seqcast.storage import Store

    datasets = Store(tmp_path).datasets
    assert datasets.list() == []
    ids = []
    for seed in (1, 2):
        spec = SyntheticSpec(n_series=30, n_train=20, n_valid=10, n_test=0, seed=seed)
        ids.append(datasets.write(spec.dataset_id, spec.model_dump(), generate_splits(spec)).dataset_id)
    (tmp_path / "datasets" / ".tmp-half-written").mkdir()  # not published: no manifest
    assert datasets.list() == sorted(ids)
    assert datasets.require(ids[0]).path == tmp_path / "datasets" / ids[0]
    with pytest.raises(ValueError, match=r"no dataset 'ds-000000000000' in .*datasets; ingest one"):
        datasets.require("ds-000000000000")
