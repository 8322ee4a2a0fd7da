"""WebSocket `/v1/media/twilio`: Twilio Media Streams (and the clones that speak it:
Telnyx, SignalWire, Fonoster...).

Twilio sends JSON text frames: `connected`, `start` {streamSid, callSid, tracks,
mediaFormat, customParameters}, then `media` {track, chunk, timestamp, payload: base64
mu-law 8 kHz}, `dtmf` {track, digit}, `mark` {name} and `stop`. The `inbound` track is
the customer leg, `outbound` the agent leg. The key comes as `?key=`, `Authorization:
Bearer`, or `customParameters.key`; the call id is `customParameters.call_id`, else the
callSid. Other customParameters name the call: agent_id, caller, callee, direction,
language.

Bidirectional (`<Connect><Stream>`): what the voicebot says goes back as `media`
messages with a `mark` after each prompt (Twilio echoes it once the prompt has played),
and `clear` drops what Twilio has not played yet (barge-in).

Close codes: 1000 stop received or call ended by callpipe, 1009 frame over
`streams.max_message_bytes`, 1013 a peer that takes none of the audio sent back within
`streams.send_timeout_s`, 4400 a frame that breaks the protocol (not JSON, bad base64,
media before start, unknown track, unsupported media format), 4401 no or unknown key,
4403 a role that may not send media, 4408 no start within `streams.start_timeout_s`,
4409 the call is already live or streaming.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket

from pipeline.auth import Principal, principal_of_key, websocket_principal
from pipeline.events import LegInfo, Transport
from pipeline.ingest.frontend import (
    NORMAL,
    OVERLOADED,
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
from pipeline.media.dtmf import DIGITS
from pipeline.services import Services

log = logging.getLogger(__name__)

TRANSPORT: Transport = "twilio"
TRACK_LEGS = {"inbound": "customer", "outbound": "agent"}
DTMF_TRACKS = {"inbound_track": "customer", "outbound_track": "agent", **TRACK_LEGS}
MARK_PREFIX = "callpipe-"
FRAME_BYTES = 160  # 20 ms of mu-law 8 kHz: what Twilio sends, and what it is sent back


def parse_frame(text: str) -> dict[str, Any]:
    """A Twilio message as a dict with a string `event` (StreamRejected 4400 otherwise)."""
    try:
        msg = json.loads(text)
    except ValueError:
        raise StreamRejected(PROTOCOL_ERROR, "not_json", "a frame that is not JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        raise StreamRejected(PROTOCOL_ERROR, "no_event", "a frame without an event name")
    return msg


def stream_legs(start: dict[str, Any]) -> dict[str, str]:
    """Track -> leg for the tracks a `start` announces (inbound only when it says none)."""
    tracks = start.get("tracks") or ["inbound"]
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise StreamRejected(PROTOCOL_ERROR, "start", "start.tracks must be a list of names")
    unknown = [t for t in tracks if t not in TRACK_LEGS]
    if unknown:
        raise StreamRejected(
            PROTOCOL_ERROR, "unknown_track", f"unknown track {unknown[0]!r} (inbound, outbound)"
        )
    fmt = start.get("mediaFormat") or {}
    if not isinstance(fmt, dict):
        raise StreamRejected(PROTOCOL_ERROR, "start", "start.mediaFormat must be an object")
    encoding = fmt.get("encoding", "audio/x-mulaw")
    rate, channels = fmt.get("sampleRate", 8000), fmt.get("channels", 1)
    if (encoding, rate, channels) != ("audio/x-mulaw", 8000, 1):
        raise StreamRejected(
            PROTOCOL_ERROR,
            "media_format",
            f"media format {encoding} {rate} Hz x{channels}: only audio/x-mulaw 8000 Hz mono",
        )
    return {t: TRACK_LEGS[t] for t in tracks}


class TwilioOutbound:
    """Audio back to the caller over one Twilio stream (see `receiver.Outbound`).

    Any thread may call play/mark/clear; the messages go out in order from one task on
    the connection's loop, so a slow peer holds up only its own stream."""

    def __init__(
        self,
        ws: WebSocket,
        stream_sid: str,
        loop: asyncio.AbstractEventLoop,
        *,
        send_timeout_s: float,
        max_queued: int,
    ) -> None:
        self._ws = ws
        self._sid = stream_sid
        self._loop = loop
        self._send_timeout_s = send_timeout_s
        self._max_queued = max_queued
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._callbacks: list[Callable[[int], None]] = []
        self.overflow = 0  # messages refused past the playback limit

    # -- any thread ----------------------------------------------------------------------
    def play(self, ulaw: bytes) -> None:
        """Queue mu-law 8 kHz audio, sent as 20 ms media messages."""
        msgs = [
            self._message(
                "media",
                media={"payload": base64.b64encode(ulaw[i : i + FRAME_BYTES]).decode()},
            )
            for i in range(0, len(ulaw), FRAME_BYTES)
        ]
        self._loop.call_soon_threadsafe(self._put, msgs)

    def mark(self, token: int) -> None:
        """Ask Twilio to say when what is queued so far has played."""
        msg = self._message("mark", mark={"name": f"{MARK_PREFIX}{token}"})
        self._loop.call_soon_threadsafe(self._put, [msg])

    def clear(self) -> None:
        """Drop what is not played yet, here and in Twilio's buffer."""
        self._loop.call_soon_threadsafe(self._clear)

    def on_played(self, callback: Callable[[int], None]) -> None:
        """`callback(token)` when Twilio echoes the mark of `token`."""
        self._callbacks.append(callback)

    # -- the connection's loop ------------------------------------------------------------
    def _message(self, event: str, **body: Any) -> str:
        return json.dumps({"event": event, "streamSid": self._sid, **body})

    def _put(self, msgs: list[str]) -> None:
        if self._queue.qsize() + len(msgs) > self._max_queued:
            self.overflow += len(msgs)
            return
        for m in msgs:
            self._queue.put_nowait(m)

    def _clear(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(self._message("clear"))

    def marked(self, name: object) -> None:
        """Twilio echoed a mark: the prompt it ends has played (or was cleared)."""
        if not isinstance(name, str) or not name.startswith(MARK_PREFIX):
            return
        try:
            token = int(name[len(MARK_PREFIX) :])
        except ValueError:
            return
        for cb in self._callbacks:
            cb(token)

    def close(self) -> None:
        """Stop the sender task once the queue is empty."""
        self._queue.put_nowait(None)

    async def run(self) -> bool:
        """Send what is queued until closed; False when the peer stopped taking it."""
        while True:
            msg = await self._queue.get()
            if msg is None:
                return True
            try:
                await asyncio.wait_for(self._ws.send_text(msg), self._send_timeout_s)
            except TimeoutError:
                return False
            except Exception:  # the connection is gone: the receive loop sees it too
                return True


def router(services: Services) -> APIRouter:
    """WebSocket /v1/media/twilio."""
    r = APIRouter()

    @r.websocket("/v1/media/twilio")
    async def twilio_stream(ws: WebSocket) -> None:
        """One Twilio Media Stream: a call's legs in, the voicebot's prompts out."""
        await ws.accept()
        session = _TwilioSession(services, ws, websocket_principal(services, ws))
        await session.run()

    return r


class _TwilioSession:
    """One connection, from `connected` to `stop`."""

    def __init__(self, services: Services, ws: WebSocket, principal: Principal | None) -> None:
        self.services = services
        self.ws = ws
        self.principal = principal
        self.limits = services.settings.streams
        self.stream: MediaStream | None = None
        self.legs: dict[str, str] = {}
        self.outbound: TwilioOutbound | None = None
        self.sender: asyncio.Task[bool] | None = None
        self.where: dict[str, str] = {}
        self.task: asyncio.Task[Any] | None = None
        self.slow = False

    async def run(self) -> None:
        reason = "disconnected"
        self.task = asyncio.current_task()
        try:
            reason = await self._receive()
        except StreamRejected as exc:
            rejected(self.services, TRANSPORT, exc, **self.where)
            reason = "protocol_error"
            await self._close(exc.code, exc.reason)
        except asyncio.CancelledError:
            if not self.slow:
                raise
            reason = "slow_peer"
        finally:
            if self.outbound is not None:
                self.outbound.close()
            if self.stream is not None:
                dropped = self.outbound.overflow if self.outbound is not None else 0
                stream_closed(
                    self.services, TRANSPORT, self.stream, list(self.legs.values()), reason, dropped
                )
            if self.sender is not None:
                self.sender.cancel()

    async def _close(self, code: int, reason: str) -> None:
        await close_quietly(self.ws, code, reason)

    async def _next(self, timeout_s: float | None) -> dict[str, Any] | None:
        """The next message, or None when the peer is gone."""
        try:
            if timeout_s is None:
                msg = await self.ws.receive()
            else:
                msg = await asyncio.wait_for(self.ws.receive(), timeout_s)
        except TimeoutError:
            raise StreamRejected(
                TIMEOUT, "no_start", f"no start within {self.limits.start_timeout_s:g} s"
            ) from None
        if msg["type"] == "websocket.disconnect":
            return None
        text = msg.get("text")
        if text is None:
            raise StreamRejected(PROTOCOL_ERROR, "binary", "a binary frame (Twilio sends JSON)")
        if len(text) > self.limits.max_message_bytes:
            raise StreamRejected(TOO_BIG, "oversized", f"a frame of {len(text)} bytes")
        return parse_frame(text)

    async def _receive(self) -> str:
        # Before start: `connected` (optional), then `start`, within the start timeout
        # (counted from the connection, however many frames come before it).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.start_timeout_s
        while self.stream is None:
            msg = await self._next(max(0.0, deadline - loop.time()))
            if msg is None:
                return "disconnected"
            event = msg["event"]
            if event == "start":
                await self._start(msg)
            elif event != "connected":
                raise StreamRejected(PROTOCOL_ERROR, "order", f"{event} before start")
        stream = self.stream
        legs = self.legs
        while True:
            msg = await self._next(None)
            if msg is None:
                return "disconnected"
            event = msg["event"]
            if event == "media":
                media = msg.get("media")
                if not isinstance(media, dict):
                    raise StreamRejected(PROTOCOL_ERROR, "media", "media without its object")
                leg = legs.get(media.get("track", "inbound"))
                if leg is None:
                    raise StreamRejected(
                        PROTOCOL_ERROR, "unknown_track", f"media on track {media.get('track')!r}"
                    )
                try:
                    payload = base64.b64decode(media.get("payload", ""), validate=True)
                except (binascii.Error, TypeError, ValueError):
                    raise StreamRejected(
                        PROTOCOL_ERROR, "bad_base64", "a media payload that is not base64"
                    ) from None
                if not payload:
                    continue
                at = media.get("timestamp")
                try:
                    units = int(at) * 8 if at is not None else None
                except (TypeError, ValueError):
                    units = None
                if stream.audio(leg, payload, units) == "ended":
                    await self._close(NORMAL, "call ended")
                    return "ended"
            elif event == "dtmf":
                self._dtmf(msg.get("dtmf"))
            elif event == "mark":
                mark = msg.get("mark")
                if self.outbound is not None and isinstance(mark, dict):
                    self.outbound.marked(mark.get("name"))
            elif event == "stop":
                await self._close(NORMAL, "stopped")
                return "hangup"
            elif event == "start":
                raise StreamRejected(PROTOCOL_ERROR, "order", "a second start")
            else:  # events Twilio may add later: counted, not fatal
                self.services.metrics.inc(
                    "media_stream_ignored_total", transport=TRANSPORT, cause="event"
                )

    async def _start(self, msg: dict[str, Any]) -> None:
        start = msg.get("start")
        if not isinstance(start, dict):
            raise StreamRejected(PROTOCOL_ERROR, "start", "start without its object")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise StreamRejected(PROTOCOL_ERROR, "start", "customParameters must be an object")
        principal = self.principal or principal_of_key(self.services, params.get("key"))
        principal = may_send_media(self.services, principal, TRANSPORT)
        legs = stream_legs(start)
        call_sid = start.get("callSid") or msg.get("streamSid") or start.get("streamSid")
        call_id = stream_call_id(params.get("call_id"), str(call_sid or ""))
        self.where = {"tenant": principal.tenant, "call_id": call_id}
        details = call_details(params)
        infos = tuple(LegInfo(leg=leg, codec="PCMU") for leg in legs.values())  # type: ignore[arg-type]
        stream = await asyncio.to_thread(
            open_call, self.services, principal, TRANSPORT, call_id, infos, details
        )
        self.stream = stream
        self.legs = legs
        loop = asyncio.get_running_loop()
        ws = self.ws

        def ended(reason: str) -> None:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._ended(reason)))

        stream.on_end(ended)
        sid = str(start.get("streamSid") or msg.get("streamSid") or call_id)
        self.outbound = TwilioOutbound(
            ws,
            sid,
            loop,
            send_timeout_s=self.limits.send_timeout_s,
            max_queued=int(self.limits.max_playback_s * 50) + 100,
        )
        self.sender = asyncio.ensure_future(self._send())
        stream.set_outbound(self.outbound)
        log.info(
            "Twilio stream %s: tracks %s", sid, ", ".join(legs), **ctx(principal.tenant, call_id)
        )

    async def _send(self) -> bool:
        assert self.outbound is not None
        ok = await self.outbound.run()
        if not ok:
            exc = StreamRejected(OVERLOADED, "slow_peer", "the peer took no audio back in time")
            rejected(self.services, TRANSPORT, exc, **self.where)
            # The peer reads nothing, so it would not read a close frame either: stop
            # waiting for its frames, end the call, leave the socket to the server.
            self.slow = True
            if self.task is not None:
                self.task.cancel()
            await self._close(exc.code, exc.reason)
        return ok

    async def _ended(self, reason: str) -> None:
        """The ingest ended the call (hang-up over the API, timeout, the robot's goodbye)."""
        if self.outbound is not None:
            self.outbound.close()
            if self.sender is not None:
                # What the voicebot said last plays out before the stream closes.
                try:
                    await asyncio.wait_for(asyncio.shield(self.sender), 10.0)
                except (TimeoutError, asyncio.CancelledError):
                    pass
        await self._close(NORMAL, f"call ended: {reason}")

    def _dtmf(self, body: object) -> None:
        if not isinstance(body, dict):
            raise StreamRejected(PROTOCOL_ERROR, "dtmf", "dtmf without its object")
        digit = str(body.get("digit", ""))
        leg = DTMF_TRACKS.get(str(body.get("track", "inbound_track")))
        if len(digit) != 1 or digit not in DIGITS or leg is None:
            raise StreamRejected(PROTOCOL_ERROR, "dtmf", f"dtmf {body!r} is not a key press")
        assert self.stream is not None
        if leg in self.stream.legs:
            self.stream.dtmf(leg, digit)
