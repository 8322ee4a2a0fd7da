"""What the stream transports (Twilio Media Streams, L16 WebSocket, AudioSocket) share:
who may send media, which call a connection feeds, and the errors that end one.

A connection either joins a call registered for its transport beforehand (a robot
session waiting for its stream, an AudioSocket UUID given to POST /v1/calls) or registers
its call itself, announced and stored as an RTP call is. Either way the frames go into
the ingest's `MediaStream`, so what comes out (media and DTMF on the bus) is the same
whatever the transport.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import WebSocket

from pipeline.auth import Principal
from pipeline.catalog import ensure_live_manifest
from pipeline.events import CallStarted, LegInfo, Transport
from pipeline.ids import check_id
from pipeline.ingest.receiver import CallExists, MediaStream, ingest_of
from pipeline.languages import check_language
from pipeline.logs import ctx
from pipeline.services import Services

log = logging.getLogger(__name__)

MEDIA_ROLES = ("pbx", "admin")

# WebSocket close codes (AudioSocket answers with an error frame instead).
NORMAL = 1000
TOO_BIG = 1009
OVERLOADED = 1013
PROTOCOL_ERROR = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
TIMEOUT = 4408
CONFLICT = 4409


class StreamRejected(Exception):
    """A connection that cannot go on: `code` to close it with, `cause` for metrics."""

    def __init__(self, code: int, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.cause = cause
        self.reason = reason


def may_send_media(services: Services, principal: Principal | None, transport: str) -> Principal:
    """The principal, if it may fork calls to callpipe (StreamRejected 4401 / 4403)."""
    if principal is None:
        services.metrics.inc("auth_failures_total", reason="stream_key")
        raise StreamRejected(UNAUTHORIZED, "key", "missing or unknown API key")
    if principal.role not in MEDIA_ROLES:
        services.metrics.inc("auth_failures_total", reason="role")
        raise StreamRejected(
            FORBIDDEN, "role", f"role {principal.role!r} may not send media (needs pbx or admin)"
        )
    return principal


def call_details(params: dict[str, Any]) -> dict[str, Any]:
    """Who the call is, from a stream's metadata (Twilio customParameters, the L16
    metadata frame): agent_id, caller, callee, direction, language, and `record` (true /
    false). StreamRejected when one is malformed."""
    out: dict[str, Any] = {}
    record = params.get("record")
    if record not in (None, ""):
        flag = str(record).strip().lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise StreamRejected(PROTOCOL_ERROR, "metadata", "record must be true or false")
        out["record"] = flag in ("true", "1", "yes")
    for name, limit in (("agent_id", 128), ("caller", 64), ("callee", 64)):
        v = params.get(name)
        if v is None or v == "":
            continue
        if not isinstance(v, str | int) or len(str(v)) > limit:
            raise StreamRejected(PROTOCOL_ERROR, "metadata", f"{name} must be a short string")
        out[name] = str(v)
    direction = params.get("direction")
    if direction:
        if direction not in ("inbound", "outbound", "internal"):
            raise StreamRejected(
                PROTOCOL_ERROR, "metadata", "direction must be inbound, outbound or internal"
            )
        out["direction"] = direction
    language = params.get("language")
    if language:
        try:
            out["language"] = check_language(str(language))
        except ValueError as exc:
            raise StreamRejected(PROTOCOL_ERROR, "metadata", str(exc)) from None
    return out


def stream_call_id(given: object, fallback: str) -> str:
    """The call id a stream names (`call_id` in its metadata), else its own call id."""
    raw = given if given not in (None, "") else fallback
    try:
        return check_id(str(raw), "call_id")
    except ValueError as exc:
        raise StreamRejected(PROTOCOL_ERROR, "call_id", str(exc)) from None


def open_call(
    services: Services,
    principal: Principal,
    transport: Transport,
    call_id: str,
    legs: tuple[LegInfo, ...],
    details: dict[str, Any],
) -> MediaStream:
    """The MediaStream this connection feeds, its legs claimed: the call registered for it,
    or one registered now (call.started published, live manifest written)."""
    ingest = ingest_of(services)
    tenant = principal.tenant
    stream = ingest.stream(tenant, call_id)
    if stream is None:
        if ingest.call(tenant, call_id) is not None:
            raise StreamRejected(CONFLICT, "exists", f"call {call_id!r} is live over RTP")
        started = CallStarted(
            tenant=tenant,
            call_id=call_id,
            transport=transport,
            legs=legs,
            **{
                **details,
                "language": services.settings.stt.language_for(tenant, details.get("language")),
            },
        )
        try:
            ingest.register(started, via=transport)
        except CallExists:
            pass  # registered a moment ago by another connection: joined below
        else:
            ensure_live_manifest(services.store, **started.details())
            log.info("call registered over %s", transport, **ctx(tenant, call_id))
        stream = ingest.stream(tenant, call_id)
        if stream is None:
            raise StreamRejected(CONFLICT, "exists", f"call {call_id!r} ended as it started")
    if stream.started.transport != transport:
        raise StreamRejected(
            CONFLICT,
            "exists",
            f"call {call_id!r} was registered for {stream.started.transport}, not {transport}",
        )
    wanted = [leg.leg for leg in legs]
    missing = [leg for leg in wanted if leg not in stream.legs]
    if missing:
        raise StreamRejected(
            PROTOCOL_ERROR,
            "unknown_leg",
            f"call {call_id!r} was registered without the {', '.join(missing)} leg",
        )
    if not stream.attach(wanted):
        raise StreamRejected(
            CONFLICT, "exists", f"call {call_id!r} is already streaming {', '.join(wanted)}"
        )
    services.metrics.inc("media_streams_total", transport=transport)
    return stream


async def close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    """Close a WebSocket the peer may have closed already."""
    try:
        await ws.close(code=code, reason=reason[:120])
    except Exception:  # gone already: nothing to tell it
        pass


def stream_closed(
    services: Services,
    transport: str,
    stream: MediaStream,
    legs: list[str],
    reason: str,
    playback_dropped: int = 0,
) -> None:
    """A connection is gone: its legs are detached (the call ends with its last one), the
    frames it carried counted, and the audio back it could not queue."""
    stream.detach(legs, reason)
    metrics = services.metrics
    metrics.inc(
        "media_stream_frames_total", sum(stream.frames[leg] for leg in legs), transport=transport
    )
    if playback_dropped:
        metrics.inc("media_stream_playback_dropped_total", playback_dropped, transport=transport)


def rejected(services: Services, transport: str, exc: StreamRejected, **where: str) -> None:
    """Count and log a connection ended for a reason of its own."""
    services.metrics.inc("media_stream_rejected_total", transport=transport, cause=exc.cause)
    tenant, call_id = where.get("tenant"), where.get("call_id")
    log.warning(
        "%s stream closed (%d %s): %s",
        transport,
        exc.code,
        exc.cause,
        exc.reason,
        **(ctx(tenant, call_id) if tenant and call_id else {}),
    )
