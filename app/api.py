"""The FastAPI app: health, metrics, and each package's router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

import prompter.api
import recordings.analytics_api
import recordings.categories_api
import recordings.search_api
import robot.api
import stt.batch_api
import stt.live_api
import tts.api
import tts.ivr.api
from app.health import health
from pipeline import calls_api
from pipeline.api import errors, limits
from pipeline.auth import ROLE_RIGHTS, ROLES, Principal, Role, require
from pipeline.database import DatabaseError
from pipeline.ingest import l16, twilio
from pipeline.services import Services
from pipeline.webhooks import api as webhooks_api

RouterOf = Callable[[Services], APIRouter]


class Health(BaseModel):
    """Whether this process and the services it needs answer."""

    status: Literal["ok", "degraded"]
    mode: Literal["embedded", "distributed"]
    services: dict[str, str] = Field(description="each service's state (up, or why not)")


class Me(BaseModel):
    """Who a key is: the pages start from it (the agent panel needs no agent id)."""

    tenant: str
    role: Role
    agent_id: str | None = None
    key_id: str | None = None
    may: str


# Live call registration and the media WebSockets: served where the ingest runs, since the
# ports it hands out and the streams it holds are that host's (embedded: the one process;
# distributed: the `ingest` role).
CALL_ROUTERS: list[RouterOf] = [calls_api.router, twilio.router, l16.router]

# Everything else: the `api` role, as many replicas as wanted behind a load balancer.
API_ROUTERS: list[RouterOf] = [
    calls_api.elsewhere_router,
    stt.batch_api.router,
    stt.live_api.router,
    prompter.api.router,
    recordings.search_api.router,
    recordings.categories_api.router,
    recordings.analytics_api.router,
    robot.api.router,
    tts.api.router,
    tts.ivr.api.router,
    webhooks_api.router,
]

# Embedded: the whole API in one process.
ROUTERS: list[RouterOf] = CALL_ROUTERS + API_ROUTERS[1:]


def create_app(services: Services, routers: list[RouterOf] = ROUTERS) -> FastAPI:
    """One app for embedded and distributed mode alike (a role may serve fewer routers)."""
    app = FastAPI(title="callpipe", version="0.1.0")
    app.state.services = services
    limits.install(app, services.metrics)

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "a service this process needs is down"}},
    )
    def healthz() -> JSONResponse:
        """ok, or 503 naming each service (Kafka, S3, database) that does not answer."""
        up, states = health(services)
        body = {"status": "ok" if up else "degraded", "mode": services.settings.mode}
        return JSONResponse({**body, "services": states}, status_code=200 if up else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(_: Annotated[Principal, Depends(require("admin"))]) -> str:
        """Prometheus text; scrape it with an admin key (`authorization` in the scrape
        config)."""
        return services.metrics.render()

    @app.get("/v1/me")
    def me(principal: Annotated[Principal, Depends(require(*ROLES))]) -> Me:
        """The tenant, role and (agent keys) agent of the key, and what the role may do."""
        return Me(
            tenant=principal.tenant,
            role=principal.role,
            agent_id=principal.agent_id,
            key_id=principal.key_id,
            may=ROLE_RIGHTS[principal.role],
        )

    @app.exception_handler(DatabaseError)
    async def database_down(request: Request, exc: DatabaseError) -> JSONResponse:
        """The database did not answer (or refused): 503, the request may be sent again."""
        services.metrics.inc("api_rejections_total", route="any", cause="database")
        return JSONResponse(
            {"detail": f"the database is unavailable; retry ({exc})"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    for router in routers:
        app.include_router(router(services))
    errors.document(app)
    return app
