"""Trained models: ``models/<run_id>/model.keras`` beside ``manifest.json`` and the run's plots; an ensemble run's
``models/<run_id>/ensemble.json`` names its members' runs instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from seqcast.storage.atomic import atomic_file
from seqcast.storage.objects import ObjectStore

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
ENSEMBLE_FILE = "ensemble.json"
BACKUP = "backup"


class Models:
    """The models part of a store: one folder per run under ``models/``; paths handed out are relative to the root.

    With an object store, every file is written to this machine's cache (``root``) and uploaded, the manifest last;
    reads go to the object store, and a model is loaded from the cache once its cached manifest matches the stored
    one.
    """

    def __init__(self, home: Path, remote: ObjectStore | None = None):
        self.home = home
        self.root = home / "models"
        self.remote = remote
        self._stored: dict[str, set[str]] = {}  # backup prefix -> keys stored, once listed

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
        self._upload(folder / MODEL_FILE, folder / MANIFEST_FILE)
        return self.model_path(run_id)

    def save_ensemble(self, run_id: str, manifest: dict) -> str:
        """Save an ensemble run's manifest (its members' runs), atomically; return its relative path, the run's
        model path."""
        target = self.folder(run_id) / ENSEMBLE_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        self._upload(target)
        return self._relative(target)

    @staticmethod
    def is_ensemble(model_path: str) -> bool:
        """Whether a run's model path is an ensemble's manifest rather than a Keras model."""
        return Path(model_path).name == ENSEMBLE_FILE

    def saved_manifest(self, run_id: str) -> dict | None:
        """The manifest of the run's complete saved model, or None when it has none (yet)."""
        folder = self.folder(run_id)
        if self.remote is not None:
            data = self.remote.get_bytes(self._relative(folder / MANIFEST_FILE))
            try:
                manifest = json.loads(data) if data is not None else None
            except json.JSONDecodeError:
                return None
            return manifest if manifest and self.remote.exists(self._relative(folder / MODEL_FILE)) else None
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return manifest if (folder / MODEL_FILE).is_file() else None

    def load(self, model_path: str, custom_objects: dict | None = None):
        """Load a saved model by its relative path, in any process; ``custom_objects``: the core's own layers."""
        import keras

        path = self.home / model_path
        if self.remote is not None:
            self._cache(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {self._where(model_path)}")
        return keras.saving.load_model(path, custom_objects=custom_objects)

    def _cache(self, model_path: str) -> None:
        """Bring a stored model into this machine's cache unless the cached copy has the stored manifest.

        A retried run may save its model again under the same run id; the manifest, saved after the model,
        tells the copies apart.
        """
        manifest_key = str(Path(model_path).parent / MANIFEST_FILE)
        stored = self.remote.get_bytes(manifest_key)
        if stored is None:
            return
        cached = self.home / manifest_key
        if cached.is_file() and cached.read_bytes() == stored and (self.home / model_path).is_file():
            return
        self.remote.get_file(model_path, self.home / model_path)
        with atomic_file(cached) as tmp:
            tmp.write_bytes(stored)

    def manifest(self, model_path: str) -> dict:
        """The manifest saved beside the model at ``model_path`` (relative); an ensemble's model path is its
        manifest."""
        relative = model_path if self.is_ensemble(model_path) else str(Path(model_path).parent / MANIFEST_FILE)
        if self.remote is not None:
            data = self.remote.get_bytes(relative)
            if data is None:
                raise FileNotFoundError(f"no manifest at {self._where(relative)}")
            return json.loads(data)
        return json.loads((self.home / relative).read_text())

    def write_file(self, run_id: str, name: str, data: bytes) -> str:
        """Write a file (a plot) into the run's folder atomically; return its relative path."""
        target = self.folder(run_id) / name
        with atomic_file(target) as tmp:
            tmp.write_bytes(data)
        self._upload(target)
        return self._relative(target)

    def read_file(self, path: str | None) -> bytes | None:
        """The bytes of a file written by :meth:`write_file` (relative path), or None when there is none."""
        if not path:
            return None
        if self.remote is not None:
            return self.remote.get_bytes(path)
        return (self.home / path).read_bytes() if (self.home / path).is_file() else None

    def backup_folder(self, run_id: str) -> Path:
        """The local folder of the run's training backup, holding the stored backup of an interrupted try.

        With an object store the backup lives in the store, so a try that died with its machine resumes on
        another: this brings the stored backup into the cache (replacing whatever a cached copy holds) and
        :meth:`store_backup` sends it back as training goes.
        """
        folder = self.folder(run_id) / BACKUP
        if self.remote is None:
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        stored = self.remote.list(self._relative(folder))
        self.remote.get_files((key, self.home / key) for key in stored)
        return folder

    def store_backup(self, run_id: str) -> None:
        """Mirror the run's local training backup into the object store (nothing to do on a local store).

        Changed and new files go first, then the ones the backup no longer holds are removed; what a crash
        in between leaves behind is Keras's own checkpoint and journal of one epoch or the next, both resumable.
        """
        if self.remote is None:
            return
        folder = self.folder(run_id) / BACKUP
        prefix = self._relative(folder)
        if prefix not in self._stored:  # the first call of this fit: what an earlier try left in the store
            self._stored[prefix] = set(self.remote.list(prefix))
        local = {self._relative(p): p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}
        self.remote.put_files((path, key) for key, path in local.items())
        self.remote.delete(sorted(self._stored[prefix] - set(local)))
        self._stored[prefix] = set(local)

    def _upload(self, *paths: Path) -> None:
        """Upload files of the cache in order (a manifest after what it vouches for); nothing on a local store."""
        if self.remote is not None:
            for path in paths:
                self.remote.put_file(path, self._relative(path))

    def _where(self, relative: str) -> str:
        return f"{self.remote.url}/{relative}" if self.remote is not None else str(self.home / relative)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.home).as_posix()
