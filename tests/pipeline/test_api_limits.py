"""Bounds every route shares: deep JSON and unencodable validation errors answer 422."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.api.limits import MAX_JSON_DEPTH, json_depth
from pipeline.auth import keys_of
from pipeline.services import Services


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services), raise_server_exceptions=False)


def test_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{"}]}') == 3
    for doc, depth in (({"a": "x\\", "b": [1]}, 2), ({"a": '"[[', "b": [[1]]}, 3), ([["]]]"]], 2)):
        assert json_depth(json.dumps(doc).encode()) == depth, doc
    assert json_depth(b"[" * 50_000 + b"]" * 50_000) == 50_000


def test_a_kb_article_nested_50000_deep_is_refused_not_a_500(
    client: TestClient, services: Services
) -> None:
    admin = {"Authorization": f"Bearer {keys_of(services).create('acme', 'admin')}"}
    deep = '{"id": "a1", "title": "t", "answer": ' + "[" * 50_000 + "]" * 50_000 + "}"
    r = client.put(
        "/v1/kb/articles/a1",
        content=deep,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and f"deeper than {MAX_JSON_DEPTH}" in r.text
    assert services.metrics.value("api_rejections_total", route="any", cause="json_depth") == 1


def test_nan_in_a_body_is_a_422_that_names_the_field(
    client: TestClient, services: Services
) -> None:
    pbx = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    r = client.post(
        "/v1/tts",
        content='{"text": "hi", "rate": NaN}',
        headers={**pbx, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "rate"
