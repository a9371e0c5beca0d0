"""Where seqcast keeps its state: everything lives under one directory, SEQCAST_HOME."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("~/.seqcast")


def seqcast_home() -> Path:
    """Return SEQCAST_HOME (default ``~/.seqcast``), read at call time, never at import time."""
    return Path(os.environ.get("SEQCAST_HOME") or DEFAULT_HOME).expanduser().resolve()


def datasets_dir(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "datasets"


def models_dir(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "models"


def records_dir(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "records"


def results_db(home: Path | None = None) -> Path:
    return (home or seqcast_home()) / "results.duckdb"
