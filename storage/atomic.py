"""Atomic writes: a temporary file or folder, renamed into place, so a reader never sees a half-written one.

``atomic_file`` also fsyncs before and after the rename, so the file survives a crash. ``atomic_dir`` does not: its
caller makes the folder durable when it needs to (``seqcast.storage.datasets.sync_dataset``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_file(target: Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it and rename it over ``target``.

    ``durable=False`` skips the fsyncs, for a copy that can be fetched again (a cache): the rename still keeps
    readers from ever seeing half a file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success publish it as ``target`` in one rename, without fsync.

    If ``target`` already exists (another process published the same content first), the new copy is
    discarded and the existing one kept: use it only for content-addressed, immutable folders.
    Other processes see the whole folder at once, but a machine that goes down before the kernel writes it back may
    leave it with missing or empty files: :func:`fsync_tree` and :func:`fsync_dir` of its parent make it durable.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
