"""An S3-compatible object store as the root of a store (``SEQCAST_HOME=s3://bucket/prefix``).

Objects are written whole: S3 makes an object visible only once its upload completes, so a reader never sees half a
file. A part that consists of several files (a dataset, a model, a record) uploads its parts first and its marker
last (``dataset.json``, ``manifest.json``, ``_COMMITTED``); readers look for the marker, so they see all of it or
nothing. The connection comes from the standard AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for a store other than AWS's), read
when the store is opened and never written anywhere by seqcast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from seqcast.config.names import check_url
from seqcast.storage.atomic import atomic_file

# Downloads and uploads of many small files (records, a dataset's tables) wait on the network, not the CPU
TRANSFER_THREADS = 16


class ObjectStore:
    """Whole-object reads, writes and listings under one ``s3://bucket/prefix``; keys are relative to the prefix."""

    def __init__(self, url: str):
        check_url(url)
        parsed = urlparse(url)
        self.url = url.rstrip("/")
        self.base = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options = {}
        if endpoint:
            endpoint_url = urlparse(endpoint)
            options = {"endpoint_override": endpoint_url.netloc or endpoint, "scheme": endpoint_url.scheme or "https"}
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["region"] = region
        self.fs = pafs.S3FileSystem(**options)

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def _path(self, key: str) -> str:
        return f"{self.base}/{key}"

    def put_file(self, local: Path, key: str) -> None:
        with open(local, "rb") as source, self.fs.open_output_stream(self._path(key)) as target:
            while chunk := source.read(8 << 20):
                target.write(chunk)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.fs.open_output_stream(self._path(key)) as target:
            target.write(data)

    def put_files(self, files: Iterable[tuple[Path, str]]) -> None:
        """Upload (local path, key) pairs side by side; raise the first failure once all have ended."""
        _side_by_side(self.put_file, files)

    def get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        try:
            with self.fs.open_input_stream(self._path(key)) as source:
                return source.read()
        except FileNotFoundError:
            return None

    def get_file(self, key: str, local: Path) -> None:
        """Download an object to ``local`` atomically (FileNotFoundError when it is missing)."""
        with atomic_file(local) as tmp, self.fs.open_input_stream(self._path(key)) as source, open(tmp, "wb") as f:
            while chunk := source.read(8 << 20):
                f.write(chunk)

    def get_files(self, files: Iterable[tuple[str, Path]]) -> None:
        """Download (key, local path) pairs side by side; raise the first failure once all have ended."""
        _side_by_side(self.get_file, files)

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self._path(key)).type == pafs.FileType.File

    def list(self, prefix: str) -> dict[str, int]:
        """Every object under ``prefix/`` (recursively): key -> size."""
        selector = pafs.FileSelector(self._path(prefix), recursive=True, allow_not_found=True)
        start = len(self.base) + 1
        return {info.path[start:]: info.size for info in self.fs.get_file_info(selector)
                if info.type == pafs.FileType.File}

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.fs.delete_file(self._path(key))
            except FileNotFoundError:
                pass


def _side_by_side(transfer, pairs: Iterable[tuple]) -> None:
    pairs = list(pairs)
    if not pairs:
        return
    with ThreadPoolExecutor(min(TRANSFER_THREADS, len(pairs))) as pool:
        for done in [pool.submit(transfer, *pair) for pair in pairs]:
            done.result()
