"""Live call registration: POST /v1/calls allocates a UDP port per leg (RTP) or says
where a stream transport connects; POST /v1/calls/{id}/hangup ends the call.

WebSocket transports (Twilio, L16) register their calls themselves when they connect;
registering one here first is for a call that must exist before its stream does (an
AudioSocket UUID, which carries no key; a voicebot answering over the stream).
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.api.errors import errors
from pipeline.auth import Principal, require
from pipeline.catalog import ensure_live_manifest, load_manifest
from pipeline.events import CallEnded, CallStarted, LegInfo, Transport
from pipeline.ids import check_id
from pipeline.ingest.audiosocket import audiosocket_of, canonical_uuid
from pipeline.ingest.receiver import CallExists, NoFreePort, ingest_of
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
    # RFC 4733 telephone-event payload type negotiated for this leg (RTP; default
    # live.dtmf_payload_type).
    dtmf_payload_type: int | None = Field(default=None, ge=96, le=127)
    # AudioSocket: the UUID the PBX connects this leg with (default: the call id).
    uuid: str | None = None

    @field_validator("codec")
    @classmethod
    def _codec(cls, v: str) -> str:
        return canonical_codec(v)

    @field_validator("uuid")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        return None if v is None else canonical_uuid(v)

    @model_validator(mode="after")
    def _types(self) -> LegRequest:
        if self.dtmf_payload_type is not None and self.dtmf_payload_type == self.payload_type:
            raise ValueError("dtmf_payload_type and payload_type must differ")
        return self


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
    transport: Transport = "rtp"
    # Keep the call as a two-channel recording, transcribed in batch when it ends
    # (default: the tenant's choice, live.tenant_record, else live.record).
    record: bool | None = None
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
        if self.transport == "rtp":
            if any(leg.codec == "L16" or leg.uuid for leg in self.legs):
                raise ValueError("L16 and uuid are for stream transports, not RTP")
        elif any(leg.codec not in STREAM_CODECS[self.transport] for leg in self.legs):
            raise ValueError(
                f"{self.transport} carries {' or '.join(STREAM_CODECS[self.transport])}"
            )
        if self.transport != "audiosocket" and any(leg.uuid for leg in self.legs):
            raise ValueError("uuid is AudioSocket's")
        return self

    def stream_ids(self, call_id: str) -> dict[str, str | None]:
        """AudioSocket: the UUID each leg connects with (a lone leg's default: the call id,
        when that is a UUID)."""
        if self.transport != "audiosocket":
            return {leg.leg: None for leg in self.legs}
        ids: dict[str, str | None] = {leg.leg: leg.uuid for leg in self.legs}
        if len(self.legs) == 1 and ids[self.legs[0].leg] is None:
            try:
                ids[self.legs[0].leg] = canonical_uuid(call_id)
            except ValueError:
                raise ValueError(
                    "an AudioSocket leg needs its uuid (or a call_id that is a UUID)"
                ) from None
        if None in ids.values() or len(set(ids.values())) != len(ids):
            raise ValueError("each AudioSocket leg needs a uuid of its own")
        return ids


# What each stream transport carries (L16: little-endian 16-bit PCM).
STREAM_CODECS: dict[str, tuple[str, ...]] = {
    "twilio": ("PCMU",),
    "l16": ("L16",),
    "audiosocket": ("L16",),
}


class LegEndpoint(BaseModel):
    """Where one leg's media goes: an RTP address (`host`, `port`), or the `uuid` a stream
    transport names the leg by."""

    leg: Literal["agent", "customer"]
    codec: str
    payload_type: int | None = None
    dtmf_payload_type: int | None = None
    host: str | None = None
    port: int | None = None
    uuid: str | None = None


class CallRegistered(BaseModel):
    """A live call registered: where the PBX sends each leg."""

    call_id: str
    tenant: str
    transport: str
    dtmf_payload_type: int | None = Field(default=None, description="RTP: the first leg's")
    legs: list[LegEndpoint]
    connect: dict[str, str | int] | None = Field(
        default=None, description="stream transports: the WebSocket path, or AudioSocket's address"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "call_id": "c-2026-0042",
                    "tenant": "acme",
                    "transport": "rtp",
                    "dtmf_payload_type": 101,
                    "legs": [
                        {"leg": "agent", "codec": "PCMU", "host": "10.0.0.5", "port": 20000},
                        {"leg": "customer", "codec": "PCMU", "host": "10.0.0.5", "port": 20002},
                    ],
                }
            ]
        }
    )


class CallHungUp(BaseModel):
    """How a live call ended (`legs`: what each leg's receiver counted)."""

    call_id: str
    reason: str
    ended_by: str | None = None
    legs: dict[str, dict[str, int | float | str | None]]


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


def _where_to_connect(services: Services, transport: str) -> dict[str, Any]:
    """Where the PBX sends a stream transport's media."""
    if transport == "audiosocket":
        listener = audiosocket_of(services)
        s = services.settings
        return {
            "host": s.live.advertise_host or s.audiosocket.host,
            "port": listener.port or s.audiosocket.port,
        }
    return {"path": f"/v1/media/{transport}"}


def router(services: Services) -> APIRouter:
    """POST /v1/calls and POST /v1/calls/{call_id}/hangup."""
    r = APIRouter()

    @r.post(
        "/v1/calls",
        status_code=201,
        response_model=CallRegistered,
        response_model_exclude_none=True,  # a leg names its RTP address or its uuid
        responses=errors(409, 503),
    )
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
        call_id = body.call_id or (
            str(uuid.uuid4()) if body.transport == "audiosocket" else uuid.uuid4().hex
        )
        try:
            stream_ids = body.stream_ids(call_id)
        except ValueError as exc:
            raise _reject(services, 422, str(exc), "uuid") from None
        ingest = ingest_of(services)
        started = CallStarted(
            tenant=principal.tenant,
            call_id=call_id,
            direction=body.direction,
            agent_id=body.agent_id,
            caller=body.caller,
            callee=body.callee,
            transport=body.transport,
            record=body.record,
            legs=tuple(
                LegInfo(
                    leg=leg.leg,
                    codec=leg.codec,
                    payload_type=leg.payload_type,
                    dtmf_payload_type=leg.dtmf_payload_type,
                    sample_rate=8000 if leg.codec == "L16" else None,
                    stream_id=stream_ids[leg.leg],
                )
                for leg in body.legs
            ),
            language=services.settings.stt.language_for(principal.tenant, body.language),
        )
        try:
            endpoints = ingest.register(started, via="api", source_host=body.source)
        except CallExists:
            raise _reject(
                services, 409, f"call {call_id!r} (or one of its uuids) is already live", "exists"
            ) from None
        except NoFreePort as exc:
            raise _reject(services, 503, str(exc), "no_port") from None
        # The call's manifest at once (the live worker fills in the rest): its agent may open
        # the live view the moment the PBX has registered the call, not when a worker
        # has read the call.started.
        ensure_live_manifest(services.store, **started.details())
        log.info("call registered over HTTP", **ctx(principal.tenant, call_id))
        default_dtmf = services.settings.live.dtmf_payload_type
        dtmf: dict[str, int] = {leg.leg: leg.dtmf_payload_type or default_dtmf for leg in body.legs}
        answer: dict[str, Any] = {
            "call_id": call_id,
            "tenant": principal.tenant,
            "transport": body.transport,
        }
        if body.transport == "rtp":
            answer["dtmf_payload_type"] = dtmf[body.legs[0].leg]
            answer["legs"] = [
                {
                    "leg": e.leg,
                    "codec": e.codec,
                    "payload_type": e.payload_type,
                    "dtmf_payload_type": dtmf[e.leg],
                    "host": e.host,
                    "port": e.port,
                }
                for e in endpoints
            ]
            return answer
        answer["legs"] = [
            {"leg": leg.leg, "codec": leg.codec, "uuid": stream_ids[leg.leg]} for leg in body.legs
        ]
        answer["connect"] = _where_to_connect(services, body.transport)
        return answer

    @r.post("/v1/calls/{call_id}/hangup", response_model=CallHungUp)
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
