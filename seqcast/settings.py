"""Every ``SEQCAST_*`` environment variable, gathered and validated in one settings object.

Read with :func:`load_settings` at call time, never at import time, so a changed environment (a test, a worker
started with other variables) takes effect. A bad value raises :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path

from pydantic import Field, PositiveInt, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "SEQCAST_"


class SettingsError(ValueError):
    """A ``SEQCAST_*`` variable holds a value seqcast cannot use."""


class Settings(BaseSettings):
    """seqcast's configuration from the environment; an empty variable counts as unset."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    home: Path = Field(Path("~/.seqcast"), description="where datasets, models, records and results.duckdb live")
    training_slots: PositiveInt | None = Field(
        None, description="models that may train at once; default: one per CPU core")
    keep_run_logs: PositiveInt = Field(20, description="run log folders of `seqcast run --jobs` kept")
    db_lock_timeout: float = Field(30.0, ge=0, description="seconds a writer waits for a locked results database")
    schedule_start: str = Field("01:00", description="time of day (HH:MM) of the first nightly forecast run")
    schedule_stagger_min: int = Field(10, ge=0, description="minutes between the nightly runs of two variants")
    schedule_timezone: str = Field("UTC", description="IANA time zone of the schedules")
    schedule_paused: bool = Field(False, description="create the schedules inactive")
    champion_margin: float = Field(
        2.0, ge=0, lt=100, description="percent of backtest MASE by which a challenger must beat a dataset's "
                                       "champion to replace it")
    test_fail_once: Path | None = Field(
        None, description="test-only: a marker file naming the stage (train, evaluate) to fail once")

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
    def home_path(self) -> Path:
        """SEQCAST_HOME as an absolute local path."""
        return self.home.expanduser().resolve()

    @property
    def schedule_time(self) -> tuple[int, int]:
        hour, minute = self.schedule_start.split(":")
        return int(hour), int(minute)


def load_settings() -> Settings:
    """Read and validate the environment now; raise SettingsError naming every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError("; ".join(
            f"{PREFIX}{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())) from None
