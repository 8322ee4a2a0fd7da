"""WebSocket `/v1/media/l16`: jambonz `listen`, FreeSWITCH mod_audio_fork and
mod_audio_stream.

The first frame is text, JSON metadata; then binary frames of 16-bit little-endian PCM
at 8 or 16 kHz, mono or stereo (interleaved, one channel per leg). The rate and channels
come from the metadata (`sampleRate` or `sample_rate`; `channels`, or jambonz's
`mixType`: stereo is two channels) or the query (`?rate=16000&channels=2`), 8000 and
mono when neither says. Legs: `legs` in the metadata or the query (`customer,agent`);
by default a mono stream is the customer leg, and a stereo one has the caller (left
channel, as jambonz and mod_audio_fork put it) as the customer and the other party as
the agent. The call id is the metadata's `call_id`, else jambonz's `callSid`, else a new
one. Later text frames may carry key presses, as jambonz sends them (`{"event": "dtmf",
"dtmf": "5"}`), on the first leg. Closing the socket ends the call.

Close codes as /v1/media/twilio (pipeline/ingest/twilio.py): 4400 for metadata that is
not a JSON object, an unsupported rate or channel count, or audio that is not whole
samples on every channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import MutableMapping
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket

from pipeline.auth import principal_of_key, websocket_principal
from pipeline.events import LegInfo, Transport
from pipeline.ingest.frontend import (
    NORMAL,
    PROTOCOL_ERROR,
    TIMEOUT,
    TOO_BIG,
    StreamRejected,
    call_details,
    close_quietly,
    may_send_media,
    open_call,
    rejected,
    stream_call_id,
    stream_closed,
)
from pipeline.ingest.receiver import MediaStream
from pipeline.logs import ctx
from pipeline.media.codec import L16_RATES
from pipeline.media.dtmf import DIGITS
from pipeline.services import Services

log = logging.getLogger(__name__)

TRANSPORT: Transport = "l16"
LEGS = ("customer", "agent")


def stream_format(meta: dict[str, Any], query: dict[str, str]) -> tuple[int, list[str]]:
    """(sample rate, legs in channel order) from the metadata, else the query."""

    def pick(*names: str) -> Any:
        for name in names:
            if meta.get(name) not in (None, ""):
                return meta[name]
            if query.get(name):
                return query[name]
        return None

    try:
        rate = int(pick("sampleRate", "sample_rate", "rate") or 8000)
    except (TypeError, ValueError):
        raise StreamRejected(PROTOCOL_ERROR, "format", "the sample rate must be a number") from None
    if rate not in L16_RATES:
        raise StreamRejected(PROTOCOL_ERROR, "format", f"{rate} Hz: only 8000 and 16000")
    mix = pick("mixType", "mix_type")
    try:
        channels = int(pick("channels") or (2 if mix == "stereo" else 1))
    except (TypeError, ValueError):
        raise StreamRejected(PROTOCOL_ERROR, "format", "channels must be 1 or 2") from None
    if channels not in (1, 2):
        raise StreamRejected(PROTOCOL_ERROR, "format", f"{channels} channels: only 1 or 2")
    legs = pick("legs")
    names = (legs.split(",") if isinstance(legs, str) else legs) or list(LEGS[:channels])
    if (
        not isinstance(names, list)
        or len(names) != channels
        or len(set(names)) != channels
        or any(n not in LEGS for n in names)
    ):
        raise StreamRejected(
            PROTOCOL_ERROR, "format", f"legs must name {channels} of customer, agent, one each"
        )
    return rate, [str(n).strip() for n in names]


def router(services: Services) -> APIRouter:
    """WebSocket /v1/media/l16."""
    r = APIRouter()

    @r.websocket("/v1/media/l16")
    async def l16_stream(ws: WebSocket) -> None:
        """One forked call: metadata, then raw PCM frames until the socket closes."""
        # mod_audio_fork asks for its sub-protocol (audiostream.drachtio.org), jambonz for
        # its own; a client that asked for one fails the handshake unless it is echoed.
        asked = ws.scope.get("subprotocols") or []
        await ws.accept(subprotocol=asked[0] if asked else None)
        where: dict[str, str] = {}
        stream: MediaStream | None = None
        legs: list[str] = []
        reason = "hangup"
        try:
            opened = await _open(services, ws, where)
            if opened is not None:
                stream, legs = opened
                reason = await _receive(services, ws, stream, legs)
        except StreamRejected as exc:
            rejected(services, TRANSPORT, exc, **where)
            reason = "protocol_error"
            await close_quietly(ws, exc.code, exc.reason)
        finally:
            if stream is not None:
                stream_closed(services, TRANSPORT, stream, legs, reason)

    return r


async def _frame(
    services: Services, ws: WebSocket, timeout_s: float | None
) -> MutableMapping[str, Any]:
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout_s)
    except TimeoutError:
        raise StreamRejected(TIMEOUT, "no_start", f"no metadata within {timeout_s:g} s") from None
    size = len(msg.get("bytes") or msg.get("text") or "")
    if size > services.settings.streams.max_message_bytes:
        raise StreamRejected(TOO_BIG, "oversized", f"a frame of {size} bytes")
    return msg


def _json(text: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(text)
    except ValueError:
        raise StreamRejected(PROTOCOL_ERROR, "not_json", "a text frame that is not JSON") from None
    if not isinstance(doc, dict):
        raise StreamRejected(PROTOCOL_ERROR, "not_json", "a text frame that is not an object")
    return doc


async def _open(
    services: Services, ws: WebSocket, where: dict[str, str]
) -> tuple[MediaStream, list[str]] | None:
    msg = await _frame(services, ws, services.settings.streams.start_timeout_s)
    if msg["type"] == "websocket.disconnect":
        return None
    if msg.get("text") is None:
        raise StreamRejected(PROTOCOL_ERROR, "order", "audio before the metadata frame")
    meta = _json(msg["text"])
    principal = websocket_principal(services, ws) or principal_of_key(services, meta.get("key"))
    principal = may_send_media(services, principal, TRANSPORT)
    rate, legs = stream_format(meta, dict(ws.query_params))
    call_id = stream_call_id(meta.get("call_id"), str(meta.get("callSid") or uuid.uuid4().hex))
    where.update(tenant=principal.tenant, call_id=call_id)
    infos = tuple(LegInfo(leg=leg, codec="L16", sample_rate=rate) for leg in legs)  # type: ignore[arg-type]
    stream = await asyncio.to_thread(
        open_call, services, principal, TRANSPORT, call_id, infos, call_details(meta)
    )
    loop = asyncio.get_running_loop()

    def ended(reason: str) -> None:
        loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(close_quietly(ws, NORMAL, f"call ended: {reason}"))
        )

    stream.on_end(ended)
    log.info("L16 stream: %d Hz, %s", rate, " + ".join(legs), **ctx(principal.tenant, call_id))
    return stream, legs


async def _receive(services: Services, ws: WebSocket, stream: MediaStream, legs: list[str]) -> str:
    width = 2 * len(legs)
    while True:
        msg = await _frame(services, ws, None)
        if msg["type"] == "websocket.disconnect":
            return "hangup"
        data = msg.get("bytes")
        if data is None:
            _text(services, stream, legs, _json(msg.get("text") or ""))
            continue
        if not data:
            continue
        if len(data) % width:
            raise StreamRejected(
                PROTOCOL_ERROR, "bad_frame", f"{len(data)} bytes is not whole {width}-byte frames"
            )
        if len(legs) == 1:
            cause = stream.audio(legs[0], data)
        else:
            both = np.frombuffer(data, dtype="<i2")
            cause = stream.audio(legs[0], both[0::2].tobytes()) or stream.audio(
                legs[1], both[1::2].tobytes()
            )
        if cause == "ended":
            return "ended"


def _text(services: Services, stream: MediaStream, legs: list[str], doc: dict[str, Any]) -> None:
    """A text frame after the metadata: a key press (jambonz), or ignored (counted)."""
    if doc.get("event") == "dtmf" or doc.get("type") == "dtmf":
        digit = str(doc.get("dtmf") or doc.get("digit") or "")
        if len(digit) != 1 or digit not in DIGITS:
            raise StreamRejected(PROTOCOL_ERROR, "dtmf", f"dtmf {digit!r} is not a key")
        stream.dtmf(legs[0], digit)
        return
    services.metrics.inc("media_stream_ignored_total", transport=TRANSPORT, cause="text")
