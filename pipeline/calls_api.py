"""Live call registration: POST /v1/calls allocates a UDP port per leg; POST
/v1/calls/{id}/hangup ends the call."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.api.errors import errors
from pipeline.auth import Principal, require
from pipeline.catalog import ensure_live_manifest, load_manifest
from pipeline.events import CallEnded, CallStarted, LegInfo
from pipeline.ids import check_id
from pipeline.ingest.receiver import CallExists, NoFreePort
from pipeline.ingest.stage import ingest_of
from pipeline.languages import check_language
from pipeline.logs import ctx
from pipeline.media.codec import canonical_codec
from pipeline.services import Services

log = logging.getLogger(__name__)


class LegRequest(BaseModel):
    """One leg the PBX will fork."""

    model_config = ConfigDict(extra="forbid")

    leg: Literal["agent", "customer"]
    codec: str = "PCMU"
    payload_type: int | None = Field(default=None, ge=96, le=127)

    @field_validator("codec")
    @classmethod
    def _codec(cls, v: str) -> str:
        return canonical_codec(v)


class CallRequest(BaseModel):
    """Body of POST /v1/calls."""

    model_config = ConfigDict(extra="forbid")

    call_id: str | None = None
    tenant: str | None = None
    direction: Literal["inbound", "outbound", "internal"] = "inbound"
    agent_id: str | None = Field(default=None, max_length=128)
    caller: str | None = Field(default=None, max_length=64)
    callee: str | None = Field(default=None, max_length=64)
    source: str | None = Field(default=None, max_length=64)  # IP the PBX sends RTP from
    legs: list[LegRequest] = Field(min_length=1, max_length=2)
    # What the call is spoken in; None: the tenant's language, else detected per leg.
    language: str | None = Field(default=None, max_length=8)

    @field_validator("call_id")
    @classmethod
    def _call_id(cls, v: str | None) -> str | None:
        return None if v is None else check_id(v, "call_id")

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        return None if v is None else check_language(v)

    @model_validator(mode="after")
    def _distinct_legs(self) -> CallRequest:
        if len({leg.leg for leg in self.legs}) != len(self.legs):
            raise ValueError("each leg (agent, customer) may appear once")
        return self


def _reject(services: Services, status: int, reason: str, cause: str) -> HTTPException:
    services.metrics.inc("api_rejections_total", route="calls", cause=cause)
    return HTTPException(status, reason)


def end_live_call(services: Services, tenant: str, call_id: str) -> dict[str, Any] | None:
    """Hang up a call this process's ingest holds: `{call_id, reason, legs}`, or None when
    it holds no such call.

    A process without an ingest (the `api` role) holds no call: it announces the end on
    the bus, where the ingest host holding the call ends it, and answers None."""
    if services.settings.mode == "distributed" and services.existing("ingest") is None:
        manifest = load_manifest(services.store, tenant, call_id)
        if manifest is not None and manifest.status == "live":
            ended = CallEnded(tenant=tenant, call_id=call_id, reason="hangup")
            producer = services.bus.producer()
            producer.send(services.topics.calls, ended.key, ended.encode())
            producer.flush(services.settings.kafka.publish_timeout_s)
        return None
    ingest = ingest_of(services)
    if ingest.call(tenant, call_id) is None:
        return None
    summary = ingest.end(tenant, call_id, "hangup")
    if summary is None:
        return None
    return {"call_id": call_id, "reason": "hangup", "legs": summary["legs"]}


def router(services: Services) -> APIRouter:
    """POST /v1/calls and POST /v1/calls/{call_id}/hangup."""
    r = APIRouter()

    @r.post("/v1/calls", status_code=201, responses=errors(409, 503))
    def register_call(
        body: CallRequest,
        principal: Annotated[Principal, Depends(require("pbx", "admin"))],
    ) -> dict[str, Any]:
        """Register a live call; returns where to send each leg's RTP."""
        if body.tenant is not None and body.tenant != principal.tenant:
            raise _reject(
                services,
                403,
                f"this key registers calls for tenant {principal.tenant!r} only",
                "tenant",
            )
        call_id = body.call_id or uuid.uuid4().hex
        ingest = ingest_of(services)
        started = CallStarted(
            tenant=principal.tenant,
            call_id=call_id,
            direction=body.direction,
            agent_id=body.agent_id,
            caller=body.caller,
            callee=body.callee,
            legs=tuple(
                LegInfo(leg=leg.leg, codec=leg.codec, payload_type=leg.payload_type)
                for leg in body.legs
            ),
            language=services.settings.stt.language_for(principal.tenant, body.language),
        )
        try:
            endpoints = ingest.register(started, via="api", source_host=body.source)
        except CallExists:
            raise _reject(services, 409, f"call {call_id!r} is already live", "exists") from None
        except NoFreePort as exc:
            raise _reject(services, 503, str(exc), "no_port") from None
        # The call's manifest at once (the live worker fills in the rest): its agent may open
        # the live view the moment the PBX has registered the call, not when a worker
        # has read the call.started.
        ensure_live_manifest(services.store, **started.details())
        log.info("call registered over HTTP", **ctx(principal.tenant, call_id))
        return {
            "call_id": call_id,
            "tenant": principal.tenant,
            "dtmf_payload_type": services.settings.live.dtmf_payload_type,
            "legs": [
                {
                    "leg": e.leg,
                    "codec": e.codec,
                    "payload_type": e.payload_type,
                    "host": e.host,
                    "port": e.port,
                }
                for e in endpoints
            ],
        }

    @r.post("/v1/calls/{call_id}/hangup")
    def hang_up(
        call_id: str,
        principal: Annotated[Principal, Depends(require("pbx", "admin"))],
    ) -> dict[str, Any]:
        """The PBX ends a live call. Idempotent: a call already ended (by an earlier
        hang-up, an RTP timeout, or closed after a restart) is answered with how it ended."""
        ended = end_live_call(services, principal.tenant, call_id)
        if ended is not None:
            return ended
        manifest = load_manifest(services.store, principal.tenant, call_id)
        if manifest is None:
            raise _reject(services, 404, "no such live call", "unknown")
        return {
            "call_id": call_id,
            "reason": "already ended",
            "ended_by": manifest.end_reason,
            "legs": {},
        }

    return r


def elsewhere_router(services: Services) -> APIRouter:
    """POST /v1/calls where no RTP ingest runs (the `api` role): 421, naming where to go.

    The ports a registration hands out belong to the host that answers it, so a PBX must
    register each call with an ingest host (`callpipe worker ingest`)."""
    r = APIRouter()

    @r.post("/v1/calls", status_code=421, responses=errors(421), include_in_schema=False)
    def misdirected(_: Annotated[Principal, Depends(require("pbx", "admin"))]) -> None:
        raise _reject(
            services,
            421,
            "live calls are registered with an ingest host (callpipe worker ingest), whose"
            " RTP ports they get; this host serves the rest of the API",
            "misdirected",
        )

    return r
