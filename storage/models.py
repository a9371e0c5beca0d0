"""Trained models: ``models/<run_id>/model.keras`` beside ``manifest.json`` and the run's plots; an ensemble run's
``models/<run_id>/ensemble.json`` names its members' runs instead."""

from __future__ import annotations

import json
from pathlib import Path

from storage.atomic import atomic_file

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
ENSEMBLE_FILE = "ensemble.json"


class Models:
    """The models part of a store: one folder per run under ``models/``; paths handed out are relative to the root."""

    def __init__(self, home: Path):
        self.home = home
        self.root = home / "models"

    def folder(self, run_id: str) -> Path:
        """The run's local folder (its model, plots and the training backup of an interrupted try)."""
        return self.root / run_id

    def model_path(self, run_id: str) -> str:
        return self._relative(self.folder(run_id) / MODEL_FILE)

    def save(self, run_id: str, model, manifest: dict) -> str:
        """Save a Keras model, then its manifest, each atomically; return the model's relative path.

        The manifest goes last, so a manifest means a complete model (:meth:`saved_manifest`).
        """
        folder = self.folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / MODEL_FILE) as tmp:
            model.save(tmp)  # the temporary name keeps the .keras suffix Keras requires
        with atomic_file(folder / MANIFEST_FILE) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return self.model_path(run_id)

    def save_ensemble(self, run_id: str, manifest: dict) -> str:
        """Save an ensemble run's manifest (its members' runs), atomically; return its relative path, the run's
        model path."""
        target = self.folder(run_id) / ENSEMBLE_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return self._relative(target)

    @staticmethod
    def is_ensemble(model_path: str) -> bool:
        """Whether a run's model path is an ensemble's manifest rather than a Keras model."""
        return Path(model_path).name == ENSEMBLE_FILE

    def saved_manifest(self, run_id: str) -> dict | None:
        """The manifest of the run's complete saved model, or None when it has none (yet)."""
        folder = self.folder(run_id)
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return manifest if (folder / MODEL_FILE).is_file() else None

    def load(self, model_path: str, custom_objects: dict | None = None):
        """Load a saved model by its relative path, in any process; ``custom_objects``: the core's own layers."""
        import keras

        path = self.home / model_path
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        return keras.saving.load_model(path, custom_objects=custom_objects)

    def manifest(self, model_path: str) -> dict:
        """The manifest saved beside the model at ``model_path`` (relative); an ensemble's model path is its
        manifest."""
        path = self.home / model_path
        return json.loads((path if self.is_ensemble(model_path) else path.parent / MANIFEST_FILE).read_text())

    def write_file(self, run_id: str, name: str, data: bytes) -> str:
        """Write a file (a plot) into the run's folder atomically; return its relative path."""
        target = self.folder(run_id) / name
        with atomic_file(target) as tmp:
            tmp.write_bytes(data)
        return self._relative(target)

    def read_file(self, path: str | None) -> bytes | None:
        """The bytes of a file written by :meth:`write_file` (relative path), or None when there is none."""
        if not path or not (self.home / path).is_file():
            return None
        return (self.home / path).read_bytes()

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.home).as_posix()
