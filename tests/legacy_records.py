"""Homes as the record format wrote them (``records/<run_id>/`` with a ``_COMMITTED`` marker; on an object store one
tar bundle per write beside the marker), made here the way that release wrote them, for the migration's tests.
``tests/data/legacy-home`` is a home that release itself wrote (a day of runs, backtests, a champion, forecasts and
their scoring)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from seqcast.storage.objects import ObjectStore
from seqcast.storage.schemas import checked_tables
from tests.conftest import REPO_ROOT

LEGACY_HOME = REPO_ROOT / "tests" / "data" / "legacy-home"
MARKER = "_COMMITTED"


def write_record(record_root: Path, run_id: str, rows: dict[str, list[dict] | pa.Table]) -> Path:
    """One run's committed record, its earlier write (if any) replaced; return its folder."""
    tables = {name: table for name, table in checked_tables(run_id, rows).items() if table.num_rows}
    folder = record_root / run_id
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    write_id = uuid.uuid4().hex
    files, digests = {}, {}
    for name, table in tables.items():
        path = folder / f"{name}-{write_id}.parquet"
        pq.write_table(table, path)
        files[name], digests[path.name] = path.name, hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / MARKER).write_text(json.dumps({"run_id": run_id, "write_id": write_id, "written_at": time.time(),
                                             "tables": files, "files": digests}, sort_keys=True))
    return folder


def upload_records(record_root: Path, remote: ObjectStore) -> list[str]:
    """Put every record under ``record_root`` on an object store as that release did: the write's bundle, then the
    marker; return the run ids."""
    uploaded = []
    for folder in sorted(record_root.iterdir()):
        marker = json.loads((folder / MARKER).read_text())
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in [*marker["files"], MARKER]:
                tar.add(folder / name, arcname=name)
        remote.put_bytes(f"records/{folder.name}/{marker['write_id']}.tar", data.getvalue())
        remote.put_file(folder / MARKER, f"records/{folder.name}/{MARKER}")
        uploaded.append(folder.name)
    return uploaded


def record_rows(record_root: Path, table: str) -> list[dict]:
    """Every committed record's rows of ``table``, read straight from its Parquet files."""
    found = []
    for marker_path in sorted(record_root.glob(f"*/{MARKER}")):
        marker = json.loads(marker_path.read_text())
        if table in marker["tables"]:
            found += pq.read_table(marker_path.parent / marker["tables"][table]).to_pylist()
    return found
