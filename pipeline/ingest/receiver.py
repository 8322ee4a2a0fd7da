"""The ingest: one UDP socket per RTP leg, all served by one selector loop in one
thread, and a `MediaStream` handle per call received over a stream transport (WebSocket,
AudioSocket: pipeline/ingest/frontend.py), whose frames take the same leg pipeline.

Calls are registered (HTTP, bus or a stream connecting) and ended (hang-up, RTP or
stream timeout, maximum length) here; each leg runs `LegPipeline` and what it yields goes
to the bus: MediaChunks on `media`, DtmfReceived / CallStarted / CallEnded on `calls`,
keyed by call id.
Bad packets are counted by cause (`rtp_dropped_total{cause}`), dropped, and logged once
per cause per call; one call's traffic never reaches another call's state.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pipeline.bus.base import Bus, BusError
from pipeline.config import Settings
from pipeline.events import CallEnded, CallStarted, LegInfo
from pipeline.ingest.leg import Emitted, LegPipeline
from pipeline.ingest.ports import NoFreePort, PortPool
from pipeline.logs import ctx
from pipeline.media.codec import LegCodec, make_codec
from pipeline.media.rtp import HEADER, MIN_HEADER, RtpError, is_rtcp, parse
from pipeline.metrics import Metrics
from pipeline.services import Services
from pipeline.topics import Topics

log = logging.getLogger(__name__)

__all__ = ["CallExists", "Endpoint", "MediaStream", "NoFreePort", "RtpIngest"]

_HOUSEKEEP_S = 0.02
_TIMERS_S = 0.25
# A telephony RTP datagram fits an Ethernet frame (PCMU at 60 ms ptime is 492 bytes, an Opus
# packet at most 1275 + header). Larger ones are refused (`oversized`), not cut and played;
# the receive buffer is bigger than the limit so that they are seen as such.
MAX_DATAGRAM = 1500
_RECV_BYTES = 2048
_NO_CALL_LOG_S = 60.0


class CallExists(ValueError):
    """A call with this id is already registered."""


@dataclass(frozen=True)
class Endpoint:
    """Where the PBX sends one leg's RTP."""

    leg: str
    codec: str
    payload_type: int
    host: str
    port: int


@dataclass
class _Call:
    started: CallStarted
    t0: float  # wall-clock time of call start (sample 0 of every leg's timeline)
    registered: float
    via: str  # api | bus
    source_host: str | None
    legs: dict[int, LegPipeline] = field(default_factory=dict)  # by port (RTP only)
    sockets: dict[int, socket.socket] = field(default_factory=dict)
    logged: set[str] = field(default_factory=set)
    drops: Counter[str] = field(default_factory=Counter)
    # Every leg by name: how a stream transport (no port) reaches it.
    by_leg: dict[str, LegPipeline] = field(default_factory=dict)
    stream: MediaStream | None = None  # the handle of a stream transport's call
    on_end: list[Callable[[str], None]] = field(default_factory=list)

    @property
    def tenant(self) -> str:
        return self.started.tenant

    @property
    def call_id(self) -> str:
        return self.started.call_id


class RtpIngest:
    """Registry of live calls plus the UDP loop; thread-safe, startable without an API."""

    def __init__(self, settings: Settings, bus: Bus, metrics: Metrics) -> None:
        self.settings = settings
        self.live = settings.live
        self.topics = Topics(settings.topic_prefix)
        self.metrics = metrics
        self._bus = bus
        self._producer = bus.producer()
        self.host = self.live.advertise_host or self.live.rtp_host
        self.pool = PortPool(self.live.rtp_host, self.live.rtp_port_min, self.live.rtp_port_max)
        self._sel = selectors.DefaultSelector()
        self._lock = threading.RLock()
        # Calls are a tenant's: two tenants may use the same call id, and neither learns of
        # the other's (a registration never answers "already live" for another tenant).
        self._calls: dict[tuple[str, str], _Call] = {}
        self._by_port: dict[int, tuple[_Call, LegPipeline]] = {}
        self._by_stream_id: dict[str, tuple[_Call, str]] = {}  # a leg's transport id
        self._ended: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._holding: set[LegPipeline] = set()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._accepted = 0  # packets taken since the last metrics flush
        self._no_call_logged_at = 0.0
        self._no_call_since = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._external_stop: threading.Event | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)  # a full pipe already means "wake up"
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> threading.Thread:
        """Run the UDP loop in a daemon thread (once; later calls return the same thread)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self._thread
            self._stop.clear()
            self._external_stop = stop
            self._thread = threading.Thread(target=self._run, name="rtp-ingest", daemon=True)
            self._thread.start()
            return self._thread

    @property
    def running(self) -> bool:
        """The UDP loop is alive."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End every call (reason `shutdown`) and stop the loop."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            for tenant, call_id in list(self._calls):
                self.end(tenant, call_id, "shutdown")
            self._flush_counts()

    def close(self) -> None:
        """Stop, then release every socket."""
        self.stop()
        with self._lock:
            for s in self.pool.idle_sockets():
                self._unregister(s)
            self.pool.close()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            self._producer.close()

    # -- registry -----------------------------------------------------------------------
    def register(
        self,
        started: CallStarted,
        *,
        via: str = "api",
        source_host: str | None = None,
        publish: bool = True,
    ) -> list[Endpoint]:
        """Allocate a port per leg and start receiving; publishes CallStarted if `publish`."""
        key = (started.tenant, started.call_id)
        with self._lock:
            if key in self._calls:
                raise CallExists(f"call {started.call_id!r} is already registered")
            codecs = [
                make_codec(leg.codec, leg.payload_type, leg.sample_rate or 8000)
                for leg in started.legs
            ]
            now = time.time()
            t0 = started.started_at.timestamp()
            call = _Call(started, t0 if now - 60 < t0 <= now else now, now, via, source_host)
            endpoints: list[Endpoint] = []
            rtp = started.transport == "rtp"
            try:
                for info, codec in zip(started.legs, codecs, strict=True):
                    lp = call.by_leg[info.leg] = self._leg(call, info, codec)
                    if not rtp:
                        continue
                    port, sock = self.pool.acquire()
                    call.sockets[port] = sock
                    call.legs[port] = lp
                    endpoints.append(
                        Endpoint(info.leg, codec.name, codec.payload_type, self.host, port)
                    )
            except NoFreePort:
                for port, sock in call.sockets.items():
                    self._release(port, sock)
                raise
            for port, sock in call.sockets.items():
                self._by_port[port] = (call, call.legs[port])
                self._register_socket(sock, port)
            if not rtp:
                ids = [i.stream_id for i in started.legs if i.stream_id]
                if any(i in self._by_stream_id for i in ids):
                    raise CallExists("a leg's stream id is already registered")
                call.stream = MediaStream(self, call)
                for info in started.legs:
                    if info.stream_id:
                        self._by_stream_id[info.stream_id] = (call, info.leg)
            self._calls[key] = call
            self.metrics.inc("calls_started_total", via=via)
            self.metrics.set("calls_active", len(self._calls))
            log.info(
                "call registered via %s: %s",
                via,
                ", ".join(f"{e.leg} {e.codec} on {e.host}:{e.port}" for e in endpoints)
                or f"{', '.join(call.by_leg)} over {started.transport}",
                **ctx(started.tenant, started.call_id),
            )
            if publish:
                self._send([started])
        self._wake()
        return endpoints

    def end(
        self, tenant: str, call_id: str, reason: str = "hangup", *, publish: bool = True
    ) -> dict[str, Any] | None:
        """End a call: flush its legs, publish CallEnded (if `publish`); None if unknown."""
        with self._lock:
            call = self._calls.pop((tenant, call_id), None)
            if call is None:
                return None
            out: list[Emitted] = []
            for lp in call.by_leg.values():
                lp.finish(out)
                self._holding.discard(lp)
                j = lp.jitter.stats
                for cause, n in (
                    ("late", j.late),
                    ("duplicate", j.duplicate),
                    ("stale_ssrc", j.stale_ssrc),
                ):
                    if n:
                        self.metrics.inc("rtp_dropped_total", n, cause=cause)
                        call.drops[cause] += n
                if j.lost:
                    self.metrics.inc("rtp_lost_packets_total", j.lost)
            for port, sock in call.sockets.items():
                self._by_port.pop(port, None)
                self._release(port, sock)
            for info in call.started.legs:
                if info.stream_id and self._by_stream_id.get(info.stream_id, (None,))[0] is call:
                    del self._by_stream_id[info.stream_id]
            ended = CallEnded(tenant=call.tenant, call_id=call_id, reason=reason)
            self._send([*out, ended] if publish else out)
            self._ended[(tenant, call_id)] = time.time()
            while len(self._ended) > 10_000:
                self._ended.popitem(last=False)
            self.metrics.inc("calls_ended_total", reason=reason)
            self.metrics.set("calls_active", len(self._calls))
            summary = self._summary(call)
            log.info("call ended (%s): %s", reason, summary["legs"], **ctx(call.tenant, call_id))
        for notify in call.on_end:  # outside the lock: a transport closes its connection
            try:
                notify(reason)
            except Exception:
                log.exception("a call-end listener failed", **ctx(call.tenant, call_id))
        return summary

    def stream(self, tenant: str, call_id: str) -> MediaStream | None:
        """The handle a stream transport feeds a registered call through (None: no such
        call, or one received over RTP)."""
        with self._lock:
            c = self._calls.get((tenant, call_id))
            return c.stream if c else None

    def stream_leg(self, stream_id: str) -> tuple[MediaStream, str] | None:
        """The call and leg a transport's own id (AudioSocket's UUID) was registered for."""
        with self._lock:
            got = self._by_stream_id.get(stream_id)
            if got is None or got[0].stream is None:
                return None
            return got[0].stream, got[1]

    def call(self, tenant: str, call_id: str) -> CallStarted | None:
        """The CallStarted of a registered call of this tenant, or None."""
        with self._lock:
            c = self._calls.get((tenant, call_id))
            return c.started if c else None

    def recently_ended(self, tenant: str, call_id: str) -> bool:
        """This process ended the call (it must not come back from a replayed call.started)."""
        with self._lock:
            return (tenant, call_id) in self._ended

    def active_calls(self) -> list[tuple[str, str]]:
        """(tenant, call id) of the registered calls."""
        with self._lock:
            return list(self._calls)

    def stats(self, tenant: str, call_id: str) -> dict[str, Any] | None:
        """Per-leg counters of a registered call."""
        with self._lock:
            c = self._calls.get((tenant, call_id))
            return self._summary(c) if c else None

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        last_house = last_timers = 0.0
        try:
            while not self._stop.is_set():
                if self._external_stop is not None and self._external_stop.is_set():
                    break
                events = self._sel.select(_HOUSEKEEP_S)
                now = time.time()
                out: list[Emitted] = []
                with self._lock:
                    for key, _ in events:
                        port = key.data
                        if port is None:
                            self._drain_wake()
                            continue
                        try:
                            data, addr = key.fileobj.recvfrom(_RECV_BYTES)  # type: ignore[union-attr]
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError:  # an ICMP error queued on the socket
                            continue
                        self._datagram(port, data, addr, now, out)
                    if now - last_house >= _HOUSEKEEP_S:
                        last_house = now
                        for lp in list(self._holding):
                            lp.poll(now, out)
                            if not lp.jitter.has_pending:
                                self._holding.discard(lp)
                    if now - last_timers >= _TIMERS_S:
                        last_timers = now
                        self._timers(now, out)
                    if out:
                        self._send(out)
        except Exception:  # the loop must not die silently: every call would go quiet
            log.exception("RTP ingest loop failed")
            self.metrics.inc("ingest_errors_total")
            raise

    def _datagram(
        self, port: int, data: bytes, addr: tuple[str, int], now: float, out: list[Emitted]
    ) -> None:
        entry = self._by_port.get(port)
        if entry is None:
            self._counts[("rtp_dropped_total", "no_call")] += 1
            self._no_call_since += 1
            # No call to log it against: at most one line a minute for all such ports.
            if now - self._no_call_logged_at >= _NO_CALL_LOG_S:
                log.warning(
                    "RTP to ports without a call (last: %d): %d packets dropped since the"
                    " last report",
                    port,
                    self._no_call_since,
                )
                self._no_call_logged_at = now
                self._no_call_since = 0
            return
        call, lp = entry
        if len(data) > MAX_DATAGRAM:
            self._drop(call, lp, "oversized", f"{len(data)}-byte datagram")
            return
        if lp.source is not None and addr != lp.source:
            self._drop(call, lp, "foreign_source", f"packets from {addr[0]}:{addr[1]}")
            return
        if self._flooded(call, lp, now):
            return
        if len(data) >= MIN_HEADER and data[0] == 0x80 and not 192 <= data[1] <= 223:
            # Hot path: version 2, no padding, extension or CSRCs (what PBXs send).
            _, b1, seq, ts, ssrc = HEADER.unpack_from(data)
            pt = b1 & 0x7F
            payload = data[MIN_HEADER:]
        else:
            if is_rtcp(data):
                self._counts[("rtp_dropped_total", "rtcp")] += 1
                return
            try:
                pkt = parse(data)
            except RtpError as exc:
                self._drop(call, lp, exc.cause, str(exc))
                return
            pt, seq, ts, ssrc, payload = (
                pkt.payload_type,
                pkt.sequence,
                pkt.timestamp,
                pkt.ssrc,
                pkt.payload,
            )
        if lp.source is None:
            if call.source_host is not None and addr[0] != call.source_host:
                self._drop(call, lp, "foreign_source", f"packets from {addr[0]}")
                return
            lp.source = addr
        cause = lp.packet(pt, seq, ts, ssrc, payload, now, out)
        if cause is not None:
            self._drop(call, lp, cause, f"payload type {pt}")
            return
        self._accepted += 1
        if lp.jitter.has_pending:
            self._holding.add(lp)

    def _flooded(self, call: _Call, lp: LegPipeline, now: float) -> bool:
        """The leg's rate guard: over `live.max_packets_per_s` packets (or stream frames)
        in the current second, the rest of the second is dropped (`flood`)."""
        if now - lp.window_start >= 1.0:
            lp.window_start = now
            lp.window_count = 0
        lp.window_count += 1
        if lp.window_count > self.live.max_packets_per_s:
            self._drop(call, lp, "flood", f"over {self.live.max_packets_per_s} packets/s")
            return True
        return False

    def _drop(self, call: _Call, lp: LegPipeline, cause: str, detail: str) -> None:
        self._counts[("rtp_dropped_total", cause)] += 1
        call.drops[cause] += 1
        if cause not in call.logged:
            call.logged.add(cause)
            log.warning(
                "%s leg: dropping RTP (%s): %s; further drops of this kind are only counted",
                lp.leg,
                cause,
                detail,
                **ctx(call.tenant, call.call_id),
            )

    def _timers(self, now: float, out: list[Emitted]) -> None:
        self._close_idle(self.pool.expired())
        timeout = self.live.rtp_timeout_s
        ending: list[tuple[str, str, str]] = []
        for call in self._calls.values():
            last = call.registered
            for lp in call.by_leg.values():
                lp.poll(now, out)
                last = max(last, lp.last_arrival)
            if now - call.t0 > self.live.max_call_s:
                ending.append((call.tenant, call.call_id, "max_duration"))
            elif now - last > timeout:
                ending.append((call.tenant, call.call_id, "rtp_timeout"))
            else:
                for lp in call.by_leg.values():
                    self._leg_silence(call, lp, now, timeout)
        if out:
            self._send(out)
            out.clear()
        for tenant, call_id, reason in ending:
            self.end(tenant, call_id, reason)
        self._flush_counts()

    def _leg_silence(self, call: _Call, lp: LegPipeline, now: float, timeout: float) -> None:
        # One leg quiet for long while the other talks (mute, one-way audio, a broken fork):
        # it costs nothing (no concealment is made for it) and the call goes on, but the
        # operator should hear of it, once per leg and call.
        cause = f"silent:{lp.leg}"
        quiet_s = now - max(lp.last_arrival, call.registered)
        if cause in call.logged or quiet_s <= timeout:
            return
        call.logged.add(cause)
        self._counts[("rtp_leg_silent_total", "")] += 1
        log.warning(
            "%s leg: no RTP for %.0f s while the call goes on",
            lp.leg,
            quiet_s,
            **ctx(call.tenant, call.call_id),
        )

    def _flush_counts(self) -> None:
        if self._accepted:
            self.metrics.inc("rtp_packets_total", self._accepted)
            self._accepted = 0
        counts, self._counts = self._counts, Counter()
        for (name, cause), n in counts.items():
            if cause:
                self.metrics.inc(name, n, cause=cause)
            else:
                self.metrics.inc(name, n)

    # -- helpers ------------------------------------------------------------------------
    def _leg(self, call: _Call, info: LegInfo, codec: LegCodec) -> LegPipeline:
        return LegPipeline(
            call.tenant,
            call.call_id,
            call.t0,
            info,
            codec,
            dtmf_payload_type=info.dtmf_payload_type or self.live.dtmf_payload_type,
            batch_ms=self.live.batch_ms,
            jitter_ms=self.live.jitter_ms,
        )

    def _send(self, items: Sequence[Emitted | CallStarted | CallEnded]) -> None:
        media = self.topics.media
        calls = self.topics.calls
        chunks = 0
        for ev in items:
            topic = media if ev.type == "media" else calls
            try:
                self._producer.send(topic, ev.call_id, ev.encode())
            except BusError as exc:
                self.metrics.inc("ingest_publish_errors_total")
                log.warning("publishing %s failed: %s", ev.type, exc, **ctx(ev.tenant, ev.call_id))
                continue
            if topic is media:
                chunks += 1
            elif ev.type == "dtmf":
                self.metrics.inc("dtmf_total")
        if chunks:
            self.metrics.inc("media_chunks_total", chunks)

    def _register_socket(self, sock: socket.socket, port: int) -> None:
        try:
            self._sel.register(sock, selectors.EVENT_READ, port)
        except KeyError:  # an idle socket taken again: still registered
            self._sel.modify(sock, selectors.EVENT_READ, port)

    def _unregister(self, sock: socket.socket) -> None:
        try:
            self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _release(self, port: int, sock: socket.socket) -> None:
        self._close_idle(self.pool.release(port, sock))

    def _close_idle(self, sockets: list[socket.socket]) -> None:
        for old in sockets:
            self._unregister(old)
            old.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except OSError:
            pass

    @staticmethod
    def _summary(call: _Call) -> dict[str, Any]:
        legs: dict[str, dict[str, Any]] = {}
        for lp in call.by_leg.values():
            c, j = lp.counters, lp.jitter.stats
            legs[lp.leg] = {
                "packets": c.packets,
                "chunks": c.chunks,
                "seconds": round(c.samples / lp.rate, 3),
                "lost": j.lost,
                "concealed": c.concealed,
                "late": j.late,
                "duplicate": j.duplicate,
                "ssrc_changes": j.ssrc_changes,
                "dtmf": c.dtmf,
            }
        return {
            "call_id": call.call_id,
            "tenant": call.tenant,
            "transport": call.started.transport,
            "legs": legs,
            "dropped": dict(call.drops),
        }


class Outbound(Protocol):
    """Audio back to the caller over a bidirectional stream: G.711 u-law 8 kHz bytes
    queued to play in order; `clear` drops what is not yet played; `on_played(token)` is
    called once the audio queued before `mark(token)` has played (or was cleared)."""

    def play(self, ulaw: bytes) -> None: ...

    def mark(self, token: int) -> None: ...

    def clear(self) -> None: ...

    def on_played(self, callback: Callable[[int], None]) -> None: ...


class MediaStream:
    """A call received over an ordered stream transport (WebSocket, AudioSocket): frames
    of one leg go in as they come, through the same leg pipeline as RTP packets.

    The transport numbers the frames (sequence, timestamp) as an RTP sender would; a
    frame that says where it belongs (Twilio's `timestamp`) is placed there when that is
    further on than the audio so far, so a sender's pause stays a pause.
    """

    _SSRC = 1

    def __init__(self, ingest: RtpIngest, call: _Call) -> None:
        self._ingest = ingest
        self._call = call
        self.tenant, self.call_id = call.tenant, call.call_id
        self.started = call.started
        self._next: dict[str, tuple[int, int]] = {leg: (0, 0) for leg in call.by_leg}
        self.frames: Counter[str] = Counter()  # taken, per leg
        self._attached: set[str] = set()
        # What a bidirectional transport plays back through (set by it once connected),
        # and who waits for it (a robot session started before the stream connected).
        self.outbound: Outbound | None = None
        self._outbound_ready = threading.Event()

    def attach(self, legs: Sequence[str]) -> bool:
        """A connection claims these legs; False when one is already claimed by another
        (a second stream for the same call and leg)."""
        with self._ingest._lock:
            if self._attached & set(legs):
                return False
            self._attached.update(legs)
            return True

    def detach(self, legs: Sequence[str], reason: str) -> None:
        """A connection carrying these legs is gone: the call ends (`reason`) once no
        connection carries any of its legs (two AudioSockets, one per leg, end together)."""
        with self._ingest._lock:
            self._attached.difference_update(legs)
            last = not self._attached
        if last:
            self.end(reason)

    def set_outbound(self, outbound: Outbound) -> None:
        """The connection can play audio back to the caller."""
        self.outbound = outbound
        self._outbound_ready.set()

    def wait_outbound(self, timeout_s: float) -> Outbound | None:
        """The way back to the caller, once a bidirectional connection is up (None when
        none came within `timeout_s`)."""
        self._outbound_ready.wait(timeout_s)
        return self.outbound

    @property
    def legs(self) -> tuple[str, ...]:
        """The legs this call receives."""
        return tuple(self._call.by_leg)

    def on_end(self, notify: Callable[[str], None]) -> None:
        """Call `notify(reason)` when the ingest ends the call, whoever ends it."""
        self._call.on_end.append(notify)

    def audio(self, leg: str, payload: bytes, at: int | None = None) -> str | None:
        """One frame of a leg's audio (the codec's bytes); `at` is where the sender says
        it starts, in clock units. Returns a drop cause, or None when taken."""
        ingest = self._ingest
        call = self._call
        now = time.time()
        with ingest._lock:
            lp = self._live_leg(leg)
            if isinstance(lp, str):
                return lp
            if ingest._flooded(call, lp, now):
                return "flood"
            seq, ts = self._next[leg]
            if at is not None and at - ts > 2 * len(payload) // lp.codec.width:
                ts = at
            out: list[Emitted] = []
            cause = lp.packet(
                lp.codec.payload_type, seq & 0xFFFF, ts, self._SSRC, payload, now, out
            )
            if cause is not None:
                ingest._drop(call, lp, cause, f"a {len(payload)}-byte frame")
                return cause
            self._next[leg] = (seq + 1, ts + len(payload) // lp.codec.width)
            self.frames[leg] += 1
            ingest._accepted += 1
            if lp.jitter.has_pending:
                ingest._holding.add(lp)
            if out:
                ingest._send(out)
        return None

    def dtmf(self, leg: str, digit: str) -> str | None:
        """A key press the transport reports; returns a drop cause, or None."""
        ingest = self._ingest
        with ingest._lock:
            lp = self._live_leg(leg)
            if isinstance(lp, str):
                return lp
            out: list[Emitted] = []
            lp.key_press(digit, time.time(), out)
            ingest._send(out)
        return None

    def _live_leg(self, leg: str) -> LegPipeline | str:
        """The leg's pipeline, or why a frame for it is dropped (`unknown_leg`, or `ended`
        when the ingest already ended the call). Under the ingest's lock."""
        lp = self._call.by_leg.get(leg)
        if lp is None:
            return "unknown_leg"
        if self._ingest._calls.get((self.tenant, self.call_id)) is not self._call:
            return "ended"
        return lp

    def end(self, reason: str = "hangup") -> dict[str, Any] | None:
        """The transport's peer ended the stream."""
        return self._ingest.end(self.tenant, self.call_id, reason)


def ingest_of(services: Services) -> RtpIngest:
    """The process's one ingest (shared by the calls API and the bus stage), started."""
    ingest = services.component(
        "ingest", lambda: RtpIngest(services.settings, services.bus, services.metrics)
    )
    if not ingest.running:
        ingest.start()
    return ingest


def started_at_ok(started_at: datetime, max_age_s: float) -> bool:
    """A bus call.started newer than `max_age_s` (older ones are replays, not new calls)."""
    return time.time() - started_at.timestamp() <= max_age_s
