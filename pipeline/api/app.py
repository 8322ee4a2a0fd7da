"""The FastAPI app: health, metrics, and each package's router."""

from __future__ import annotations

import importlib
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from pipeline.api import errors, limits
from pipeline.auth import Principal, require
from pipeline.services import Services

# Each module holds `router(services) -> APIRouter`.
ROUTER_MODULES = [
    "recordings.api",
    "pipeline.calls_api",
    "stt.live_api",
    "prompter.api",
    "recordings.search_api",
    "robot.api",
    "tts.api",
    "tts.ivr.api",
]


def create_app(services: Services) -> FastAPI:
    """One app for embedded and distributed mode alike."""
    app = FastAPI(title="callpipe", version="0.1.0")
    app.state.services = services
    limits.install(app, services.metrics)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "mode": services.settings.mode}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(_: Annotated[Principal, Depends(require("admin"))]) -> str:
        """Prometheus text; scrape it with an admin key (`authorization` in the scrape
        config)."""
        return services.metrics.render()

    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router(services))
    errors.document(app)
    return app
