"""Asterisk AudioSocket (TCP): what `AudioSocket()`, `Dial(AudioSocket/...)` and ARI's
ExternalMedia (`encapsulation=audiosocket`) speak.

Every frame is a 3-byte header (kind, 16-bit big-endian length) and its payload:
0x01 the stream's UUID (16 bytes, first), 0x10 audio (signed linear 16-bit
little-endian, 8 kHz mono, 20 ms), 0x03 a DTMF digit (one ASCII byte), 0x00 hang-up,
0xff an error. Audio sent back the same way (0x10 frames, paced at 20 ms) is played to
the channel: the voicebot speaks over it.

Which call a UUID is: the leg POST /v1/calls registered with `"transport":
"audiosocket"` and that UUID (the key of that request gives the tenant), else, when
`audiosocket.tenant` is set, a one-leg (customer) call of that tenant whose id is the
UUID. A connection that breaks the protocol (no UUID first, an unknown kind, audio that
is not whole samples, a frame over `streams.max_message_bytes`) or names an unknown UUID
is sent a hang-up frame and closed; its call (if any) ends, no other is touched.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable

import numpy as np

from pipeline.auth import Principal
from pipeline.errors import CliError
from pipeline.events import LegInfo, Transport
from pipeline.ingest.frontend import (
    PROTOCOL_ERROR,
    TIMEOUT,
    StreamRejected,
    open_call,
    rejected,
    stream_closed,
)
from pipeline.ingest.receiver import MediaStream, ingest_of
from pipeline.logs import ctx
from pipeline.media import g711
from pipeline.media.dtmf import DIGITS
from pipeline.services import Services

log = logging.getLogger(__name__)

TRANSPORT: Transport = "audiosocket"
HEADER = struct.Struct(">BH")
KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF
FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit audio
FRAME_S = 0.02


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket frame."""
    return HEADER.pack(kind, len(payload)) + payload


def canonical_uuid(raw: bytes | str) -> str:
    """A UUID in its usual text form (ValueError when it is none)."""
    u = uuid.UUID(bytes=raw) if isinstance(raw, bytes) else uuid.UUID(raw)
    return str(u)


class AudioSocketOutbound:
    """Audio back to Asterisk over one connection (see `receiver.Outbound`): 20 ms frames
    written at the pace they play, since Asterisk plays what it gets as it gets it."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        loop: asyncio.AbstractEventLoop,
        *,
        send_timeout_s: float,
        max_frames: int,
    ) -> None:
        self._writer = writer
        self._loop = loop
        self._send_timeout_s = send_timeout_s
        self._max_frames = max_frames
        self._queue: deque[bytes | int] = deque()  # frames, and marks (tokens)
        self._callbacks: list[Callable[[int], None]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self.overflow = 0  # frames refused past the playback limit

    def play(self, ulaw: bytes) -> None:
        """Queue mu-law 8 kHz audio (sent as signed linear)."""
        pcm = g711.ULAW_DECODE[np.frombuffer(ulaw, dtype=np.uint8)].astype("<i2").tobytes()
        frames: list[bytes | int] = [
            pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)
        ]
        self._loop.call_soon_threadsafe(self._put, frames)

    def mark(self, token: int) -> None:
        """Report `token` played once the audio queued before it has been sent."""
        items: list[bytes | int] = [token]
        self._loop.call_soon_threadsafe(self._put, items)

    def clear(self) -> None:
        """Drop the audio not sent yet."""
        self._loop.call_soon_threadsafe(self._clear)

    def on_played(self, callback: Callable[[int], None]) -> None:
        """`callback(token)` when the mark of `token` is reached."""
        self._callbacks.append(callback)

    def close(self) -> None:
        """Stop the pacer once what is queued is sent."""
        self._loop.call_soon_threadsafe(self._close)

    def _put(self, items: list[bytes | int]) -> None:
        if len(self._queue) + len(items) > self._max_frames:
            self.overflow += len(items)
            return
        self._queue.extend(items)
        self._wake.set()

    def _clear(self) -> None:
        self._queue.clear()

    def _close(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self) -> bool:
        """Write the queue at real-time pace; False when the peer stopped reading."""
        next_at = 0.0
        while True:
            if not self._queue:
                if self._closed:
                    return True
                self._wake.clear()
                await self._wake.wait()
                next_at = 0.0
                continue
            item = self._queue.popleft()
            if isinstance(item, int):
                for cb in self._callbacks:
                    cb(item)
                continue
            now = self._loop.time()
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at = max(next_at, now) + FRAME_S
            self._writer.write(frame(KIND_AUDIO, item))
            try:
                await asyncio.wait_for(self._writer.drain(), self._send_timeout_s)
            except TimeoutError:
                return False
            except (ConnectionError, OSError):
                return True


class AudioSocketServer:
    """The TCP listener, in a thread with its own event loop."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.audiosocket
        self.limits = services.settings.streams
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._stopped: asyncio.Event | None = None

    def start(self) -> threading.Thread:
        """Bind now (CliError when the port is taken), then serve in a daemon thread."""
        port = self.settings.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.settings.host, port))
        except OSError as exc:
            sock.close()
            raise CliError(
                f"AudioSocket cannot listen on {self.settings.host}:{port}"
                f" (CALLPIPE_AUDIOSOCKET__PORT): {exc.strerror}"
            ) from exc
        sock.listen(512)
        sock.setblocking(False)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="audiosocket", daemon=True
        )
        self._thread.start()
        ready.wait(5)
        log.info("AudioSocket listening on %s:%d", self.settings.host, self.port)
        return self._thread

    def stop(self) -> None:
        """Close the listener and every connection (their calls end)."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._serve, sock=self._sock)
        ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self.services, reader, writer)
        try:
            await conn.run()
        finally:
            writer.close()


class _Connection:
    """One AudioSocket connection, UUID first, until hang-up."""

    def __init__(
        self, services: Services, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.services = services
        self.reader = reader
        self.writer = writer
        self.limits = services.settings.streams
        self.stream: MediaStream | None = None
        self.leg = "customer"
        self.outbound: AudioSocketOutbound | None = None
        self.pacer: asyncio.Task[bool] | None = None
        self.where: dict[str, str] = {}

    async def run(self) -> None:
        reason = "disconnected"
        try:
            await self._open()
            reason = await self._receive()
        except StreamRejected as exc:
            rejected(self.services, TRANSPORT, exc, **self.where)
            reason = "protocol_error"
            await self._hang_up()
        except (asyncio.IncompleteReadError, ConnectionError):
            reason = "disconnected"
        except asyncio.CancelledError:
            reason = "shutdown"
        finally:
            if self.stream is not None:
                dropped = self.outbound.overflow if self.outbound is not None else 0
                stream_closed(self.services, TRANSPORT, self.stream, [self.leg], reason, dropped)
            if self.pacer is not None:
                self.pacer.cancel()

    async def _read(self, timeout_s: float | None) -> tuple[int, bytes]:
        try:
            head = await asyncio.wait_for(self.reader.readexactly(HEADER.size), timeout_s)
        except TimeoutError:
            raise StreamRejected(
                TIMEOUT, "no_start", f"no UUID within {self.limits.start_timeout_s:g} s"
            ) from None
        kind, length = HEADER.unpack(head)
        if length > self.limits.max_message_bytes:
            raise StreamRejected(PROTOCOL_ERROR, "oversized", f"a frame of {length} bytes")
        payload = await self.reader.readexactly(length) if length else b""
        return kind, payload

    async def _open(self) -> None:
        kind, payload = await self._read(self.limits.start_timeout_s)
        if kind != KIND_UUID:
            raise StreamRejected(PROTOCOL_ERROR, "order", f"frame kind {kind:#04x} before the UUID")
        try:
            sid = canonical_uuid(payload)
        except ValueError:
            raise StreamRejected(PROTOCOL_ERROR, "uuid", "a UUID frame of the wrong size") from None
        stream, self.leg = await asyncio.to_thread(self._join, sid)
        self.stream = stream
        loop = asyncio.get_running_loop()
        self.outbound = AudioSocketOutbound(
            self.writer,
            loop,
            send_timeout_s=self.limits.send_timeout_s,
            max_frames=int(self.limits.max_playback_s / FRAME_S) + 100,
        )
        self.pacer = asyncio.ensure_future(self._pace(self.outbound))

        def ended(reason: str) -> None:
            # The call ended elsewhere (hang-up over the API, timeout, the robot's goodbye):
            # what is queued plays out, then Asterisk is told to hang up.
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._finish()))

        stream.on_end(ended)
        stream.set_outbound(self.outbound)

    def _join(self, sid: str) -> tuple[MediaStream, str]:
        """The call and leg of this UUID (registered, or the configured tenant's), joined
        as every stream transport joins its call (`frontend.open_call`)."""
        got = ingest_of(self.services).stream_leg(sid)
        if got is not None:
            stream, leg = got
            tenant, call_id = stream.tenant, stream.call_id
        else:
            configured = self.services.settings.audiosocket.tenant
            if configured is None:
                raise StreamRejected(
                    PROTOCOL_ERROR,
                    "unknown_call",
                    f"UUID {sid} was not registered (POST /v1/calls with transport audiosocket)",
                )
            tenant, call_id, leg = configured, sid, "customer"
        self.where = {"tenant": tenant, "call_id": call_id}
        info = LegInfo(leg=leg, codec="L16", sample_rate=8000, stream_id=sid)  # type: ignore[arg-type]
        principal = Principal(tenant=tenant, role="pbx")
        return open_call(self.services, principal, TRANSPORT, call_id, (info,), {}), leg

    async def _finish(self) -> None:
        if self.outbound is not None and self.pacer is not None:
            self.outbound.close()
            try:
                await asyncio.wait_for(asyncio.shield(self.pacer), 10.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
        await self._hang_up()

    async def _pace(self, outbound: AudioSocketOutbound) -> bool:
        ok = await outbound.run()
        if not ok:
            exc = StreamRejected(PROTOCOL_ERROR, "slow_peer", "the peer took no audio back")
            rejected(self.services, TRANSPORT, exc, **self.where)
            self.writer.close()
        return ok

    async def _hang_up(self) -> None:
        if self.writer.is_closing():
            return
        try:
            self.writer.write(frame(KIND_HANGUP))
            await asyncio.wait_for(self.writer.drain(), 1.0)
        except (TimeoutError, ConnectionError, OSError):
            pass
        self.writer.close()

    async def _receive(self) -> str:
        stream, leg = self.stream, self.leg
        assert stream is not None
        while True:
            try:
                kind, payload = await self._read(None)
            except asyncio.IncompleteReadError:
                return "disconnected"
            if kind == KIND_AUDIO:
                if len(payload) % 2:
                    raise StreamRejected(
                        PROTOCOL_ERROR, "bad_frame", f"{len(payload)} bytes of 16-bit audio"
                    )
                if payload and stream.audio(leg, payload) == "ended":
                    return "ended"
            elif kind == KIND_DTMF:
                digit = payload[:1].decode("ascii", "replace")
                if len(payload) != 1 or digit not in DIGITS:
                    raise StreamRejected(PROTOCOL_ERROR, "dtmf", f"DTMF frame {payload!r}")
                stream.dtmf(leg, digit)
            elif kind == KIND_HANGUP:
                self.writer.close()
                return "hangup"
            elif kind == KIND_ERROR:
                log.warning(
                    "AudioSocket peer reported error %s",
                    payload.hex() or "-",
                    **ctx(self.where.get("tenant"), self.where.get("call_id")),
                )
                self.writer.close()
                return "error"
            elif kind == KIND_UUID:
                raise StreamRejected(PROTOCOL_ERROR, "order", "a second UUID")
            else:
                raise StreamRejected(
                    PROTOCOL_ERROR, "kind", f"frame kind {kind:#04x} (only 8 kHz audio is taken)"
                )


def audiosocket_of(services: Services) -> AudioSocketServer:
    """The process's AudioSocket listener (not started)."""
    return services.component("ingest.audiosocket", lambda: AudioSocketServer(services))
