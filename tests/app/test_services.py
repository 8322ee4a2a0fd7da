"""Building a process's services: a distributed service that does not answer at start is
one clear line naming it, its address and its setting (exit code 2 from the CLI), against
a real broker and a real S3 server for the one that does answer."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from app.cli import main
from app.services import build_services
from pipeline.config import Settings
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
