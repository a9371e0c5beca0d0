"""A training's backup in a local folder: what lets an interrupted fit resume where it stopped.

The folder holds Keras's own BackupAndRestore files (weights, optimizer, epoch counter), the journal of every epoch's
figures (``epochs.json``; a resumed fit's History starts at the resumed epoch, so the epochs before a crash are known
only from it) and the state of the early stopping that survives a crash (``early_stopping.json`` with the best
weights beside it). Every file here is written through a temporary name, so a crash never leaves one half written.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import numpy as np

JOURNAL = "epochs.json"
STOPPING = "early_stopping.json"


class TrainingBackup:
    """The backup of one training in ``folder`` (created on first write)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def read_journal(self) -> list[dict]:
        """Every epoch journaled so far, in order; none before the first."""
        path = self.folder / JOURNAL
        return json.loads(path.read_text()) if path.is_file() else []

    def write_journal(self, rows: list[dict]) -> None:
        self._replace(JOURNAL, json.dumps(rows).encode())

    def read_stopping(self) -> tuple[dict, list[np.ndarray]] | None:
        """The early stopping's saved state and best weights, or None before the first epoch's."""
        path = self.folder / STOPPING
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        with np.load(self.folder / state["weights"]) as weights:
            return state, [weights[f"w{i}"] for i in range(len(weights.files))]

    def write_stopping(self, state: dict, best_epoch: int, best_weights: list[np.ndarray]) -> None:
        """Save the early stopping's state with the weights of its best epoch (written once per best epoch), and
        drop the weights of earlier bests."""
        weights = f"best-{best_epoch + 1}.weights.npz"
        if not (self.folder / weights).is_file():
            buffer = io.BytesIO()
            np.savez(buffer, **{f"w{i}": w for i, w in enumerate(best_weights)})
            self._replace(weights, buffer.getvalue())
        self._replace(STOPPING, json.dumps({**state, "weights": weights}).encode())
        for old in self.folder.glob("best-*.weights.npz"):
            if old.name != weights:
                old.unlink()

    def _replace(self, name: str, content: bytes) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        try:
            tmp.write_bytes(content)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
