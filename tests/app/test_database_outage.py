"""PostgreSQL going away under a running API: requests that need it answer 503 with the
reason and `Retry-After`, `/healthz` names the database, nothing crashes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.services import build_services
from pipeline.auth import keys_of
from pipeline.config import DatabaseSettings, Settings
from pipeline.services import Services


@pytest.fixture
def pg_services(postgres_url: str, tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "data", database=DatabaseSettings(url=postgres_url))
    svc = build_services(settings)
    yield svc
    svc.close()


def test_requests_answer_503_while_the_database_is_gone(
    pg_services: Services, postgres_server: str, postgres_url: str
) -> None:
    key = keys_of(pg_services).create("acme", "analyst")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(pg_services)) as client:
        assert client.get("/v1/calls", headers=auth).status_code == 200
        assert client.get("/healthz").json()["services"] == {"database": "ok"}
        name = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")  # every connection cut
        r = client.get("/v1/calls", headers=auth)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["detail"].startswith("the database is unavailable; retry")
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["services"]["database"].startswith("down: ")
    assert pg_services.metrics.value("api_rejections_total", route="any", cause="database") >= 1
