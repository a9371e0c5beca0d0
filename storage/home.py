"""The store at ``SEQCAST_HOME``, built from the settings as the environment holds them now."""

from __future__ import annotations

from seqcast.config.settings import Settings, load_settings
from seqcast.storage import Store
from seqcast.storage.objects import ObjectStore


def current_settings() -> Settings:
    """The ``SEQCAST_*`` settings as the environment holds them now (SettingsError naming a bad variable)."""
    return load_settings()


def current_store(settings: Settings | None = None) -> Store:
    """The store at SEQCAST_HOME (a local folder, or an object store with this machine's cache of it)."""
    settings = settings or load_settings()
    remote = ObjectStore(settings.home_url) if settings.home_url else None
    return Store(settings.home_path, remote)
