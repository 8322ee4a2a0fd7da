"""The OpenAPI a client generator reads: a bearer scheme on every keyed route, the query
parameters of the routes that parse their query by hand (the same names the parser
allows), and each refusal's status with its reason model."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.services import Services
from recordings.search_api import CALLS_PARAMS, SEARCH_PARAMS, STATS_PARAMS


def _spec(services: Services) -> dict[str, Any]:
    spec: dict[str, Any] = TestClient(create_app(services)).get("/openapi.json").json()
    return spec


def test_every_keyed_route_names_the_bearer_scheme(services: Services) -> None:
    spec = _spec(services)
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key (`callpipe keys create`): Authorization: Bearer cp_…",
    }
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            keyed = path.startswith("/v1/") or path == "/metrics"
            assert (op.get("security") == [{"bearer": []}]) == keyed, (method, path)
            if keyed:
                for status in ("401", "403"):
                    ref = op["responses"][status]["content"]["application/json"]["schema"]
                    assert ref == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)


def test_hand_parsed_queries_are_declared_as_parsed(services: Services) -> None:
    paths = _spec(services)["paths"]
    for path, allowed, required in (
        ("/v1/search", SEARCH_PARAMS, {"q"}),
        ("/v1/calls", CALLS_PARAMS, set()),
        ("/v1/stats/terms", STATS_PARAMS, {"q"}),
    ):
        params = {p["name"]: p for p in paths[path]["get"]["parameters"] if p["in"] == "query"}
        assert set(params) == allowed, path
        assert {n for n, p in params.items() if p["required"]} == required, path
        assert all(p["description"] or p["schema"].get("enum") for p in params.values())


def test_jobs_webhooks_and_the_analysts_routes_are_typed(services: Services) -> None:
    spec = _spec(services)
    for path, model in (
        ("/v1/search", "SearchPage"),
        ("/v1/calls", "CallList"),
        ("/v1/calls/{call_id}", "CallDetail"),
        ("/v1/stats/terms", "TermStats"),
        ("/v1/webhooks/{webhook_id}/deliveries", None),
    ):
        schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        if model is None:
            assert schema["schema"]["items"] == {"$ref": "#/components/schemas/DeliveryOut"}
        else:
            assert schema["schema"] == {"$ref": f"#/components/schemas/{model}"}, path
    schemas = spec["components"]["schemas"]
    job = spec["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["200"]
    assert job["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}
    assert schemas["Job"]["properties"]["status"]["enum"] == ["queued", "running", "done", "failed"]
    assert schemas["Job"]["examples"] and schemas["Accepted"]["examples"]
    assert schemas["WebhookIn"]["examples"]


def test_every_reference_resolves_and_bodies_read_by_hand_are_declared(
    services: Services,
) -> None:
    spec = _spec(services)
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    refs.add(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    names = set(spec["components"]["schemas"])
    assert {r.rsplit("/", 1)[-1] for r in refs} <= names
    body = spec["paths"]["/v1/playbooks/{name}"]["put"]["requestBody"]["content"]
    assert set(body) == {"application/yaml", "application/json"}
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/Playbook"}
    assert "Rule" in names  # what a playbook is made of came with it
    article = spec["paths"]["/v1/kb/articles/{article_id}"]["put"]["requestBody"]["content"]
    assert article["application/json"]["schema"] == {"$ref": "#/components/schemas/Article"}
