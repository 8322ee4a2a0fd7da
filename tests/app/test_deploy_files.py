"""The deployment files in docs/deploy name only settings the code reads, and values it
accepts: a typo there would be ignored silently by pydantic-settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from app.roles import roles
from pipeline.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"


def _env() -> dict[str, str]:
    lines = (DEPLOY / "callpipe.env").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def test_every_variable_is_a_setting() -> None:
    env = _env()
    assert env and all(k.startswith("CALLPIPE_") for k in env)
    for name in env:
        model: type[BaseModel] = Settings
        *sections, field = name.removeprefix("CALLPIPE_").lower().split("__")
        for section in sections:
            annotation = model.model_fields[section].annotation
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), name
            model = annotation
        assert field in model.model_fields, f"{name} is not a setting"


def test_the_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    s = Settings()  # raises on a value a setting refuses
    assert s.database.url is not None and s.kafka.replication_factor == 3


def test_the_unit_runs_a_real_command() -> None:
    unit = (DEPLOY / "callpipe@.service").read_text()
    assert "ExecStart=/opt/callpipe/.venv/bin/callpipe worker %i" in unit
    assert "callpipe db migrate" in unit
    assert {"api", "ingest", "live", "batch"} <= set(roles())
