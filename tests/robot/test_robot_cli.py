"""`callpipe robot talk` and `robot validate`: text in, the robot's text out."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest

from app.cli import main
from robot.cli import talk
from robot.validate import load_scenario


def test_talk_runs_a_scenario_from_typed_lines(survey_yaml: str) -> None:
    out = io.StringIO()
    lines = io.StringIO("\nyes\n#7#\nthere is a power cut\n")
    result = talk(load_scenario(survey_yaml), {"name": "Ana"}, lines, out, date(2026, 11, 23))
    text = out.getvalue()
    assert result == "transferred"
    assert "robot: Hello Ana, this is a short survey" in text
    assert "robot: Sorry, I did not hear you." in text  # the empty line was silence
    assert "[transfer to outages]" in text
    assert "'household': 7" in text and "'reason': 'outage'" in text


def test_cli_errors_exit_2(
    tmp_path: Path, survey_yaml: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - {id: a, say: 'Hi {who}'}\n")
    assert main(["robot", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "steps[0].say" in err and "{who}" in err
    good = tmp_path / "survey.yaml"
    good.write_text(survey_yaml)
    assert main(["robot", "validate", str(good)]) == 0
    assert main(["robot", "talk", "--scenario", str(good)]) == 2  # {name} not given
    assert "--var name=" in capsys.readouterr().err
    assert main(["robot", "talk", "--scenario", str(tmp_path / "missing.yaml")]) == 2
