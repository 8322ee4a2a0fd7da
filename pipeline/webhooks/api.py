"""POST/GET/DELETE /v1/webhooks and each webhook's delivery log (admin keys)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from pipeline.api.errors import errors
from pipeline.auth import Principal, require
from pipeline.services import Services
from pipeline.webhooks.delivery import SIGNATURE_HEADER, url_refusal
from pipeline.webhooks.store import Delivery, EventType, Webhook, webhooks_of

Admin = Annotated[Principal, Depends(require("admin"))]


class WebhookIn(BaseModel):
    """A webhook to register."""

    url: str = Field(max_length=2048, description="http(s) URL that receives a POST per event")
    events: list[EventType] = Field(min_length=1, max_length=3)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"url": "https://crm.example.com/callpipe", "events": ["transcript.ready"]}
            ]
        }
    )


class WebhookOut(BaseModel):
    """A registered webhook; `secret` only in the answer to its creation."""

    webhook_id: str
    url: str
    events: list[str]
    created_at: datetime
    secret: str | None = Field(
        default=None,
        description=f"signs each delivery ({SIGNATURE_HEADER}: t=<unix>,v1=<hex HMAC-SHA256"
        ' of "<t>.<body>">); shown once',
    )


class DeliveryOut(BaseModel):
    """One event's delivery to a webhook, as tried so far."""

    delivery_id: str
    event_type: str
    call_id: str | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = Field(description="the endpoint's last HTTP status")
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="while pending")
    delivered_at: datetime | None


def _when(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _out(hook: Webhook, with_secret: bool = False) -> WebhookOut:
    return WebhookOut(
        webhook_id=hook.webhook_id,
        url=hook.url,
        events=list(hook.events),
        created_at=datetime.fromtimestamp(hook.created_at, UTC),
        secret=hook.secret if with_secret else None,
    )


def _delivery(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=d.delivery_id,
        event_type=d.event_type,
        call_id=d.call_id,
        status=d.status,  # type: ignore[arg-type]
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=datetime.fromtimestamp(d.created_at, UTC),
        next_attempt_at=_when(d.next_attempt_at) if d.status == "pending" else None,
        delivered_at=_when(d.delivered_at),
    )


def router(services: Services) -> APIRouter:
    """The webhook routes."""
    r = APIRouter()
    allow_private = services.settings.webhooks.allow_private
    metrics = services.metrics

    @r.post("/v1/webhooks", status_code=201)
    async def register(body: WebhookIn, p: Admin) -> WebhookOut:
        """Register a URL for some of the tenant's events; the answer holds its secret."""
        refusal = url_refusal(body.url, allow_private, resolve=False)
        if refusal is not None:
            metrics.inc("api_rejections_total", route="webhooks", cause="url")
            raise HTTPException(422, f"webhook URL refused: {refusal}")
        events = tuple(dict.fromkeys(body.events))
        hook = await run_in_threadpool(webhooks_of(services).register, p.tenant, body.url, events)
        return _out(hook, with_secret=True)

    @r.get("/v1/webhooks")
    def list_webhooks(p: Admin) -> list[WebhookOut]:
        """The tenant's webhooks (without their secrets)."""
        return [_out(h) for h in webhooks_of(services).webhooks(p.tenant)]

    @r.delete("/v1/webhooks/{webhook_id}", status_code=204, responses=errors(404))
    def delete_webhook(webhook_id: str, p: Admin) -> None:
        """Stop delivering to it; what it had not yet received is dropped."""
        if not webhooks_of(services).delete(p.tenant, webhook_id):
            raise HTTPException(404, "no such webhook")

    @r.get("/v1/webhooks/{webhook_id}/deliveries", responses=errors(404))
    def deliveries(
        webhook_id: str,
        p: Admin,
        limit: Annotated[int, Query(ge=1, le=500, description="newest first")] = 100,
    ) -> list[DeliveryOut]:
        """What was sent to the webhook: each event's attempts, last status and error."""
        store = webhooks_of(services)
        if store.webhook(p.tenant, webhook_id) is None:
            raise HTTPException(404, "no such webhook")
        return [_delivery(d) for d in store.deliveries(p.tenant, webhook_id, limit)]

    return r
