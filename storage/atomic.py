"""Crash-safe writes: temporary file or folder, fsync, rename. A reader never sees a half-written file."""

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
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it and rename it over ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success publish it as ``target`` in one rename.

    If ``target`` already exists (another process published the same content first), the new copy is
    discarded and the existing one kept: use it only for content-addressed, immutable folders.
    ``durable=False`` publishes without fsync: other processes see the whole folder at once, but a machine that
    goes down before the kernel writes it back may leave it with missing or empty files (the caller checks).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    tmp.mkdir()
    try:
        yield tmp
        if durable:
            fsync_tree(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
        if durable:
            fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
