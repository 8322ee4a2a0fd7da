"""POST /v1/tts through the prompt cache: a repeat is served without synthesis; errors; auth."""

import io
import wave
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.cli import main
from pipeline.auth import keys_of
from pipeline.services import Services


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services))


def test_second_request_served_from_cache(services: Services, client: TestClient) -> None:
    pbx = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    body = {"text": "Thank you for calling. Please hold.", "format": "l16_8k"}
    first = client.post("/v1/tts", json=body, headers=pbx)
    assert first.status_code == 200
    assert services.metrics.total("tts_synthesised_total") == 1
    assert services.metrics.total("tts_cache_misses_total") == 1
    second = client.post("/v1/tts", json=body, headers=pbx)
    assert second.status_code == 200
    assert services.metrics.total("tts_synthesised_total") == 1
    assert services.metrics.total("tts_cache_hits_total") == 1
    with wave.open(io.BytesIO(second.content)) as w:
        assert w.getframerate() == 8000
        # the stored copy has exact sizes, and the same samples as the streamed one
        assert w.getnframes() * 2 == len(first.content) - 44
    assert first.content[44:] == second.content[44:]
    other = client.post("/v1/tts", json={**body, "rate": 1.5}, headers=pbx)
    assert other.status_code == 200
    assert services.metrics.total("tts_synthesised_total") == 2


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"text": ""}, 422, "empty"),
        ({"text": "x" * 100_000}, 413, "limit"),
        ({"text": "hi\x07"}, 422, "control"),
        ({"text": "hi", "format": "mp3"}, 422, "unknown"),
        ({"text": "<b>hi</b>"}, 422, "markup"),
        ({"text": "hi 😀"}, 422, "unsupported character"),
    ],
)
def test_bad_requests(
    services: Services, client: TestClient, body: dict[str, str], status: int, reason: str
) -> None:
    admin = {"Authorization": f"Bearer {keys_of(services).create('acme', 'admin')}"}
    r = client.post("/v1/tts", json=body, headers=admin)
    assert r.status_code == status
    assert reason in r.json()["detail"]
    assert services.metrics.total("tts_rejected_total") == 1


def test_auth(services: Services, client: TestClient) -> None:
    assert client.post("/v1/tts", json={"text": "hi"}).status_code == 401
    analyst = {"Authorization": f"Bearer {keys_of(services).create('acme', 'analyst')}"}
    assert client.post("/v1/tts", json={"text": "hi"}, headers=analyst).status_code == 403


def test_cli_say_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLPIPE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out.wav"
    assert main(["say", "Press 1 for sales.", "--format", "alaw8k", "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"RIFF" and len(out.read_bytes()) > 8000
    for argv, reason in [(["--format", "mp3"], "unknown format"), (["--rate", "9"], "rate")]:
        assert main(["say", "hello", *argv, "-o", str(out)]) == 2
        assert reason in capsys.readouterr().err
    assert main(["say", "", "-o", str(out)]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["say", "Привет", "-o", str(out)]) == 2
    assert "unsupported character" in capsys.readouterr().err
