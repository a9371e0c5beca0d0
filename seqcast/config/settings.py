"""Every ``SEQCAST_*`` environment variable, gathered and validated in one settings object.

Read with :func:`load_settings` at call time, never at import time, so a changed environment (a test, a worker
started with other variables) takes effect. A bad value raises :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, PositiveInt, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seqcast.config.names import check_url, is_url

PREFIX = "SEQCAST_"


class SettingsError(ValueError):
    """A ``SEQCAST_*`` variable holds a value seqcast cannot use."""


class Settings(BaseSettings):
    """seqcast's configuration from the environment; an empty variable counts as unset."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    home: str = Field("~/.seqcast", description="where datasets, models, plots and the results tables live: a local "
                      "folder or s3://bucket/prefix (any S3-compatible store, reached through the AWS_* variables)")
    cache: Path | None = Field(None, description="this machine's scratch cache of an s3:// home; default "
                               "~/.cache/seqcast/<bucket>/<prefix>")
    training_slots: PositiveInt | None = Field(
        None, description="models that may train at once; default: one per CPU core")
    backup_interval: float = Field(30.0, ge=0, description="with an s3:// home: least seconds between two uploads "
                                   "of a training backup (after the first epoch's)")
    dask_address: str | None = Field(
        None, description="a Dask scheduler (tcp://host:port) whose workers run the shard tasks of flow runs; "
                          "default: a flow run's shards run one after another in its own process")
    dask_worker_wait: float = Field(
        120.0, gt=0, description="seconds a flow run waits for a Dask cluster that has lost every worker before it "
                                 "fails, naming the shards left")
    schedule_start: str = Field("01:00", description="time of day (HH:MM) of the first nightly forecast run")
    schedule_stagger_min: int = Field(10, ge=0, description="minutes between the nightly runs of two variants")
    schedule_timezone: str = Field("UTC", description="IANA time zone of the schedules")
    schedule_paused: bool = Field(False, description="create the schedules inactive")
    champion_margin: float = Field(
        2.0, ge=0, lt=100, description="percent of backtest MASE by which a challenger must beat a dataset's "
                                       "champion to replace it")
    test_fail_once: Path | None = Field(
        None, description="test-only: a marker file naming the stage (train, evaluate) to fail once")

    @field_validator("home")
    @classmethod
    def _known_location(cls, value: str) -> str:
        if is_url(value):
            check_url(value)
        return value

    @field_validator("schedule_start")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError(f"must be a time of day HH:MM, got {value!r}")
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"must be an IANA time zone such as UTC or Europe/Berlin, got {value!r}") from None
        return value

    @property
    def home_url(self) -> str | None:
        """SEQCAST_HOME when it names an object store, else None."""
        return self.home.rstrip("/") if is_url(self.home) else None

    @property
    def home_path(self) -> Path:
        """Where this machine keeps the state: the local SEQCAST_HOME as an absolute path, or its cache of a URL."""
        if self.home_url is None:
            return Path(self.home).expanduser().resolve()
        return (self.cache or Path("~/.cache/seqcast") / _url_folder(self.home_url)).expanduser().resolve()

    @property
    def schedule_time(self) -> tuple[int, int]:
        hour, minute = self.schedule_start.split(":")
        return int(hour), int(minute)


def _url_folder(url: str) -> Path:
    parsed = urlparse(url)
    return Path(parsed.scheme, parsed.netloc, *[part for part in parsed.path.split("/") if part not in ("", ".", "..")])


def load_settings() -> Settings:
    """Read and validate the environment now; raise SettingsError naming every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError("; ".join(
            f"{PREFIX}{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())) from None
