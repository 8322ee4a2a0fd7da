"""Every status a route may answer, in the OpenAPI: a client generator (and schemathesis'
status conformance check) sees each refusal with its reason model.

Statuses follow from what a route is: a `/v1/` route takes a key (401 missing or unknown,
403 a role that may not); a path parameter names something that may not exist or not be
this caller's (404); parameters, queries and bodies are validated (400 a query that cannot
be read, 422 a field); a body is bounded in size and depth (413, 422:
pipeline/api/limits.py). What only some routes answer (409, 413, 415, 503) they declare
with `errors(...)` in their decorator.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

REASONS = {
    400: "the request cannot be read",
    401: "missing or unknown API key",
    403: "this key's role or tenant may not do this",
    404: "no such resource for this key (another tenant's answers the same)",
    409: "conflicts with the current state (already live, held, answered)",
    410: "gone (an IVR session that ended or expired)",
    413: "larger or longer than allowed",
    415: "not a readable audio file",
    421: "sent to the wrong kind of host (live calls register with an ingest host)",
    422: "a field or the body is invalid; the detail says which and why",
    503: "a resource is exhausted or a service is down for now (ports, Kafka, S3); retry",
}


class ErrorBody(BaseModel):
    """Every refusal: `detail` is the reason (a list of field errors for 422)."""

    detail: str | list[Any] | dict[str, Any]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route decorator: these statuses, with the reason model."""
    return {code: {"model": ErrorBody, "description": REASONS[code]} for code in codes}


def files(description: str, *media_types: str, partial: bool = False) -> dict[int | str, Any]:
    """`responses=` for a route that answers a file (audio, subtitles) rather than JSON:
    its media types as binary strings, and 206 when it serves byte ranges."""
    body = {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in media_types}}
    out: dict[int | str, Any] = {200: {"description": description, **body}}
    if partial:
        out[206] = {"description": "the byte range asked for (Range: bytes=...)", **body}
        out[416] = {"description": "a range past the end of the file"}
    return out


def document(app: FastAPI) -> None:
    """Add to the app's OpenAPI the statuses every operation answers by what it is (see the
    module docstring), each with the ErrorBody model."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["ErrorBody"] = ErrorBody.model_json_schema()
        # Swagger's "Authorize" and client generators send the key from this scheme.
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key (`callpipe keys create`): Authorization: Bearer cp_…",
            }
        }
        ref = {"content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}
        for path, ops in schema.get("paths", {}).items():
            for method, op in ops.items():
                # Schemas a route's openapi_extra names (a body it reads by itself).
                components["schemas"].update(op.pop("x-components", {}))
                codes: set[int] = set()
                if path.startswith("/v1/") or path == "/metrics":
                    codes |= {400, 401, 403, 422}  # any input may be refused, queries too
                    op["security"] = [{"bearer": []}]
                if "{" in path:
                    codes.add(404)
                if op.get("parameters") or op.get("requestBody"):
                    codes.add(422)
                if method in ("post", "put", "patch"):  # a body: readable, bounded
                    codes |= {400, 413, 422}
                responses = op.setdefault("responses", {})
                for code in sorted(codes):
                    responses.setdefault(str(code), {"description": REASONS[code], **ref})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_ERROR_REF = "#/components/schemas/ErrorBody"
