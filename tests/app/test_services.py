"""Building a process's services: a service that does not answer at start (Kafka, S3,
PostgreSQL) is one clear line naming it, its address and its setting (exit code 2 from the
CLI, for every role), against a real broker, S3 server and PostgreSQL for those that do."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from app.cli import main
from app.roles import roles
from app.services import build_services
from pipeline.config import DatabaseSettings, Settings
from pipeline.errors import ServiceUnavailable


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_kafka_that_does_not_answer_is_named(distributed_settings: Settings) -> None:
    address = f"127.0.0.1:{closed_port()}"
    kafka = distributed_settings.kafka.model_copy(update={"bootstrap": address})
    settings = distributed_settings.model_copy(update={"kafka": kafka})
    with pytest.raises(ServiceUnavailable) as got:
        build_services(settings)
    assert str(got.value) == (
        f"cannot reach Kafka at {address} (CALLPIPE_KAFKA__BOOTSTRAP): no broker answered"
    )


def test_s3_that_does_not_answer_is_named_once_kafka_answers(
    distributed_settings: Settings,
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    s3 = distributed_settings.s3.model_copy(update={"endpoint": address})
    settings = distributed_settings.model_copy(update={"s3": s3})
    with pytest.raises(ServiceUnavailable) as got:
        build_services(settings)
    assert str(got.value).startswith(f"cannot reach S3 at {address} (CALLPIPE_S3__ENDPOINT): ")
    assert "Connection refused" in str(got.value) and "\n" not in str(got.value)


def test_a_worker_role_without_its_broker_exits_2_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("CALLPIPE_KAFKA__BOOTSTRAP", address)
    monkeypatch.setenv("CALLPIPE_DATA_DIR", str(tmp_path))
    assert main(["worker", "batch"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"callpipe: error: cannot reach Kafka at {address} (CALLPIPE_KAFKA__BOOTSTRAP):"
        " no broker answered\n"
    )


def test_postgres_that_does_not_answer_is_named_without_its_password(
    distributed_settings: Settings,
) -> None:
    port = closed_port()
    url = f"postgresql://callpipe:s3cret@127.0.0.1:{port}/calls"
    settings = distributed_settings.model_copy(update={"database": DatabaseSettings(url=url)})
    with pytest.raises(ServiceUnavailable) as got:
        build_services(settings)
    assert str(got.value) == (
        f"cannot reach PostgreSQL at 127.0.0.1:{port}/calls (CALLPIPE_DATABASE__URL):"
        " Connection refused"
    )


@pytest.fixture
def every_service(
    distributed_settings: Settings, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of a distributed role whose Kafka, S3 and PostgreSQL all answer."""
    env = {
        "CALLPIPE_DATA_DIR": str(distributed_settings.data_dir),
        "CALLPIPE_TOPIC_PREFIX": distributed_settings.topic_prefix,
        "CALLPIPE_KAFKA__BOOTSTRAP": distributed_settings.kafka.bootstrap,
        "CALLPIPE_S3__ENDPOINT": distributed_settings.s3.endpoint,
        "CALLPIPE_S3__BUCKET": distributed_settings.s3.bucket,
        "CALLPIPE_S3__ACCESS_KEY": "test",
        "CALLPIPE_S3__SECRET_KEY": "test",
        "CALLPIPE_DATABASE__URL": postgres_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.mark.parametrize("role", roles())
@pytest.mark.parametrize(
    ("missing", "setting", "service"),
    [
        ("kafka", "CALLPIPE_KAFKA__BOOTSTRAP", "Kafka"),
        ("s3", "CALLPIPE_S3__ENDPOINT", "S3"),
        ("database", "CALLPIPE_DATABASE__URL", "PostgreSQL"),
    ],
)
def test_every_role_without_one_service_exits_2_with_one_line(
    every_service: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    role: str,
    missing: str,
    setting: str,
    service: str,
) -> None:
    port = closed_port()
    dead = {
        "kafka": f"127.0.0.1:{port}",
        "s3": f"127.0.0.1:{port}",
        "database": f"postgresql://postgres@127.0.0.1:{port}/postgres",
    }[missing]
    monkeypatch.setenv(setting, dead)
    assert main(["worker", role]) == 2
    # Log lines of what did start may come first (topics created); no traceback, and the
    # error is one line.
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith(f"callpipe: error: cannot reach {service} at 127.0.0.1:{port}")
    assert f"({setting}): " in lines[-1]
    assert not any("Traceback" in line or "error" in line for line in lines[:-1])


def test_db_migrate_makes_every_store_on_postgres(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALLPIPE_DATABASE__URL", postgres_url)
    monkeypatch.setenv("CALLPIPE_DATA_DIR", str(tmp_path))
    assert main(["db", "migrate"]) == 0
    assert main(["db", "migrate"]) == 0  # again: nothing to do, no error
    assert capsys.readouterr().out.count("on PostgreSQL") == 2
    with psycopg.connect(postgres_url) as conn:
        versions = {r[0] for r in conn.execute("SELECT component FROM schema_versions")}
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables").fetchall()}
    stores = {"keys", "prompter", "robot", "webhooks", "categories", "transcript_index"}
    assert versions == stores
    assert {"api_keys", "placed_calls", "playbooks", "categories", "transcript_call_tags"} <= tables
    assert list(tmp_path.iterdir()) == []  # no SQLite file made beside


def test_db_migrate_without_postgres_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/callpipe"
    monkeypatch.setenv("CALLPIPE_DATABASE__URL", url)
    monkeypatch.setenv("CALLPIPE_DATA_DIR", str(tmp_path))
    assert main(["db", "migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callpipe: error: cannot migrate the database") and err.count("\n") == 1
