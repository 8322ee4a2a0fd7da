"""The FastAPI app: health, metrics, and each package's router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import PlainTextResponse

import prompter.api
import recordings.search_api
import robot.api
import stt.batch_api
import stt.live_api
import tts.api
import tts.ivr.api
from pipeline import calls_api
from pipeline.api import errors, limits
from pipeline.auth import Principal, require
from pipeline.services import Services

# Each builds its package's routes on the process's services.
ROUTERS: list[Callable[[Services], APIRouter]] = [
    stt.batch_api.router,
    calls_api.router,
    stt.live_api.router,
    prompter.api.router,
    recordings.search_api.router,
    robot.api.router,
    tts.api.router,
    tts.ivr.api.router,
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

    for router in ROUTERS:
        app.include_router(router(services))
    errors.document(app)
    return app
