"""Settings: every SEQCAST_* variable is read in one place, validated, and listed in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqcast.app.cli import main as cli
from seqcast.config.settings import PREFIX, Settings, SettingsError, load_settings
from tests.conftest import REPO_ROOT

SOURCES = ("app", "flows", "deployments", "tasks", "seqcast", "storage")


def variables_in(text: str) -> set[str]:
    return set(re.findall(r"\bSEQCAST_[A-Z_]*[A-Z]\b", text))


def test_a_bad_value_is_an_error_naming_the_variable(monkeypatch):
    for variable, value, problem in (("SEQCAST_TRAINING_SLOTS", "two", "valid integer"),
                                     ("SEQCAST_TRAINING_SLOTS", "0", "greater than 0"),
                                     ("SEQCAST_BACKUP_INTERVAL", "-1", "greater than or equal to 0"),
                                     ("SEQCAST_SCHEDULE_START", "25:00", "time of day"),
                                     ("SEQCAST_SCHEDULE_TIMEZONE", "Mars/Base", "IANA time zone"),
                                     ("SEQCAST_SCHEDULE_PAUSED", "maybe", "valid boolean"),
                                     ("SEQCAST_CHAMPION_MARGIN", "100", "less than 100")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError, match=f"{variable}='{re.escape(value)}': .*{problem}"):
            load_settings()
        monkeypatch.delenv(variable)


def test_empty_means_unset_and_values_are_typed(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQCAST_TRAINING_SLOTS", "")
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path / "here"))
    monkeypatch.setenv("SEQCAST_SCHEDULE_START", "06:30")
    monkeypatch.setenv("SEQCAST_SCHEDULE_PAUSED", "1")
    settings = load_settings()
    assert settings.training_slots is None and settings.home_path == tmp_path / "here"
    assert settings.schedule_time == (6, 30) and settings.schedule_paused is True


def test_every_command_refuses_a_bad_setting_before_any_work(home, monkeypatch, capsys):
    monkeypatch.setenv("SEQCAST_BACKUP_INTERVAL", "soon")
    for argv in (["run", "--variant", "naive"], ["sql", "SELECT 1"], ["results", "compact"], ["serve"]):
        assert cli(argv) == 2
        assert "seqcast: error: SEQCAST_BACKUP_INTERVAL='soon'" in capsys.readouterr().err
    assert not home.exists()  # nothing was written


def test_every_variable_the_code_reads_is_a_setting_and_documented():
    read = set()
    for package in SOURCES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            read |= variables_in(path.read_text())
    settings = {PREFIX + name.upper() for name in Settings.model_fields}
    assert read <= settings, f"read outside the settings object: {sorted(read - settings)}"
    documented = variables_in(Path(REPO_ROOT / "docs" / "configuration.md").read_text())
    assert settings <= documented, f"missing from docs/configuration.md: {sorted(settings - documented)}"
