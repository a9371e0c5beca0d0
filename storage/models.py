"""Trained models: ``$SEQCAST_HOME/models/<run_id>/model.keras`` beside ``manifest.json`` and the run's plots."""

from __future__ import annotations

import json
from pathlib import Path

from storage.atomic import atomic_file

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"


def run_dir(models_root: Path, run_id: str) -> Path:
    return models_root / run_id


def save_model(model, folder: Path, manifest: dict) -> Path:
    """Save a Keras model and its manifest atomically; return the model path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MODEL_FILE
    with atomic_file(target) as tmp:
        model.save(tmp)  # the temporary name keeps the .keras suffix Keras requires
    with atomic_file(folder / MANIFEST_FILE) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return target


def load_model(model_path: Path):
    """Load a saved model (and its manifest) in any process; custom layers are registered on import."""
    import keras

    import seqcast.layers  # noqa: F401  (registers the custom cell and metric)

    if not Path(model_path).is_file():
        raise FileNotFoundError(f"no model file at {model_path}")
    return keras.saving.load_model(model_path)


def load_manifest(model_path: Path) -> dict:
    return json.loads((Path(model_path).parent / MANIFEST_FILE).read_text())
