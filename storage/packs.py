"""Records on an object store, as objects: a write's bundle, and packs of many bundles.

A record write is one tar object, ``records/<run_id>/<write_id>.tar`` (its Parquet files and marker), so a machine
that syncs fetches a record in one request. Fetching thousands of records one request each is what makes a first
sync slow, so records are also packed: a pack, ``packs/<pack_id>.tar``, is a tar of many bundles, each named
``<run_id>/<write_id>.tar``. A pack is only a copy: the listing of ``records/`` alone says which write of a run is
current, a reader takes a bundle from a pack only when its write id is that one, and a lost or stale pack costs
requests, never a result.

A pack also holds each table of its records merged into one Parquet file (``tables/<table>.parquet``): loading
thousands of small files costs DuckDB far more than reading their rows, so a machine that takes a whole pack loads
its merged tables instead of each record's files.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PACKS = "packs"
PACK_SIZE = 10  # a machine's writes per pack: one request instead of ten, while its unpacked remainder stays small
PACK_MAX = 1000  # records a sync packs together, of those it had to fetch one by one
TABLES = "tables"
BUNDLE = ".tar"
# plain ustar headers: the names fit (a run id is at most 64 characters), and reading a pax header per file would
# double the cost of reading a pack
FORMAT = tarfile.USTAR_FORMAT


def bundle(folder: Path, names: Iterable[str]) -> bytes:
    """One write of a record as a tar of its files (``names``, in that order: the marker last)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=FORMAT) as tar:
        for name in names:
            tar.add(folder / name, arcname=name)
    return data.getvalue()


def bundle_members(data: bytes) -> dict[str, bytes]:
    """A bundle's files: name -> bytes."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def pack_key(writes: Iterable[tuple[str, str]]) -> str:
    """The key of a pack of these (run id, write id) pairs: named by its content, so machines that pack the same
    writes at once write the same object."""
    digest = hashlib.sha256("\n".join(f"{r}/{w}" for r, w in sorted(writes)).encode()).hexdigest()
    return f"{PACKS}/{digest[:32]}{BUNDLE}"


def pack(bundles: dict[tuple[str, str], bytes], tables: dict[str, bytes]) -> bytes:
    """A pack of bundles, keyed by (run id, write id), and of their merged tables (name -> Parquet bytes)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=FORMAT) as tar:
        members = {f"{run_id}/{write_id}{BUNDLE}": content for (run_id, write_id), content in sorted(bundles.items())}
        members |= {f"{TABLES}/{name}.parquet": content for name, content in sorted(tables.items())}
        for name, content in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return data.getvalue()


def merge(files: dict[str, list[Path]]) -> dict[str, bytes]:
    """Each table's record files (name -> paths) as one Parquet file's bytes; a column some lack is null there."""
    merged = {}
    for name, paths in files.items():
        data = io.BytesIO()
        pq.write_table(pa.concat_tables([pq.read_table(path) for path in paths], promote_options="default"), data)
        merged[name] = data.getvalue()
    return merged


def unpack(data: bytes) -> tuple[dict[tuple[str, str], bytes], dict[str, bytes]]:
    """A pack's bundles ((run id, write id) -> bytes) and merged tables (name -> Parquet bytes); other names are
    skipped."""
    bundles, tables = {}, {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 2:
                continue
            if parts[0] == TABLES and parts[1].endswith(".parquet"):
                tables[parts[1].removesuffix(".parquet")] = tar.extractfile(member).read()
            elif parts[1].endswith(BUNDLE):
                bundles[(parts[0], parts[1].removesuffix(BUNDLE))] = tar.extractfile(member).read()
    return bundles, tables
