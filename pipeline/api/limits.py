"""Request bounds every route shares: JSON nesting depth, and validation errors that can
always be answered.

A JSON body nested 50,000 deep makes Python's json parser recurse until RecursionError: a
500 from any route that reads JSON. Bodies larger than MAX_JSON_BYTES are refused (413)
by their declared length. The middleware measures a body's nesting before any
route parses it (a scan of brackets outside strings, linear in the size the routes already
cap) and answers 422 with the reason. FastAPI's own validation answer echoes the input, and
cannot encode NaN or infinity ("rate": NaN): those are echoed as strings.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from pipeline.metrics import Metrics

_OPEN = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSE = np.frombuffer(b"]}", dtype=np.uint8)

MAX_JSON_DEPTH = 64
# No JSON body of the API is larger (playbooks and scenarios are capped lower by their
# routes); a larger one is refused before anything parses it.
MAX_JSON_BYTES = 4 * 1024 * 1024
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?')


class BodyTooLarge(ValueError):
    """A body that grew past its route's limit while it was read."""


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, read as it arrives and refused (BodyTooLarge) once past `limit` bytes:
    a declared length is not trusted, and a body sent chunked has none."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise BodyTooLarge(f"larger than {limit} bytes")
    return bytes(body)


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped); a few
    milliseconds per megabyte (regular expression and numpy, no Python loop)."""
    bare = np.frombuffer(_STRING.sub(b"", raw), dtype=np.uint8)
    steps = (np.isin(bare, _OPEN).astype(np.int64)) - np.isin(bare, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities (at any depth) as strings, so JSON can carry it."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def install(app: FastAPI, metrics: Metrics) -> None:
    """The depth check and the validation-error answer, on every route of `app`."""

    class DepthLimit(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            if "json" in request.headers.get("content-type", ""):
                declared = request.headers.get("content-length", "")
                too_big = declared.isdigit() and int(declared) > MAX_JSON_BYTES
                body = b"" if too_big else await request.body()  # kept for the route
                if too_big or len(body) > MAX_JSON_BYTES:
                    metrics.inc("api_rejections_total", route="any", cause="json_size")
                    return JSONResponse(
                        {"detail": f"JSON body larger than {MAX_JSON_BYTES} bytes"},
                        status_code=413,
                    )
                if json_depth(body) > MAX_JSON_DEPTH:
                    metrics.inc("api_rejections_total", route="any", cause="json_depth")
                    return JSONResponse(
                        {"detail": f"JSON nested deeper than {MAX_JSON_DEPTH} levels"},
                        status_code=422,
                    )
            return await call_next(request)

    app.add_middleware(DepthLimit)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.inc("api_rejections_total", route="any", cause="validation")
        return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)
