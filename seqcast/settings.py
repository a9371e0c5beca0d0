"""Where seqcast keeps its state: everything lives under one directory, SEQCAST_HOME."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("~/.seqcast")


def seqcast_home() -> Path:
    """Return SEQCAST_HOME (default ``~/.seqcast``), read at call time, never at import time."""
    return Path(os.environ.get("SEQCAST_HOME") or DEFAULT_HOME).expanduser().resolve()


def positive_int_setting(name: str, default: int) -> int:
    """The whole number >= 1 in environment variable ``name`` (unset or empty: ``default``); ValueError otherwise."""
    configured = os.environ.get(name)
    if not configured:
        return default
    if not configured.isdigit() or int(configured) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {configured!r}")
    return int(configured)


def datasets_dir(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "datasets"


def models_dir(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "models"


def records_dir(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "records"


def results_db(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "results.duckdb"
