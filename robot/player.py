"""The robot's voice on the wire: prompts sent as RTP, 20 ms G.711 packets paced in real
time by a dedicated thread (one per session), or queued on the call's own bidirectional
stream (`StreamPlayer`).

Between prompts nothing is sent (as with silence suppression); the RTP timestamp keeps
running with the wall clock and the first packet of each prompt carries the marker bit
(RFC 3550). A stop takes effect before the next packet: the sender waits on an event,
not a sleep, so stopping costs at most the packet being sent.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.ingest.receiver import Outbound
from pipeline.media.rtp import build

log = logging.getLogger(__name__)

PTIME_MS = 20
SAMPLES = 8 * PTIME_MS  # per packet at 8 kHz
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}


@dataclass(frozen=True)
class _Job:
    token: int
    wire: bytes


class PromptPlayer:
    """Sends prompts to one peer; `on_finished(token, at)` when a prompt played to its end."""

    def __init__(
        self,
        host: str,
        port: int,
        codec: str,
        on_finished: Callable[[int, float], None],
        *,
        on_packet: Callable[[int, float], None] | None = None,
    ) -> None:
        self.peer = (host, port)
        self.payload_type = PAYLOAD_TYPES[codec]
        self.on_finished = on_finished
        self.on_packet = on_packet  # (token, time sent): for metrics and benchmarks
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._stop_token = 0  # prompts with a token up to this one are cancelled
        self._wake = threading.Event()
        self._closed = False
        r = random.Random()
        self.ssrc = r.getrandbits(32)
        self._seq = r.getrandbits(16)
        self._ts0 = r.getrandbits(32)
        self._t0 = time.monotonic()
        self.packets = 0
        self._thread = threading.Thread(target=self._run, name="robot-rtp-out", daemon=True)
        self._thread.start()

    @property
    def local_port(self) -> int:
        """The UDP port prompts leave from."""
        return int(self._sock.getsockname()[1]) if self.packets else 0

    def play(self, token: int, wire: bytes) -> None:
        """Queue a prompt (G.711 bytes)."""
        self._jobs.put(_Job(token, wire))

    def stop(self, token: int) -> None:
        """Cancel prompt `token` (and any queued before it) now."""
        self._stop_token = max(self._stop_token, token)
        self._wake.set()

    def close(self) -> None:
        """Stop sending and release the socket."""
        self._closed = True
        self._stop_token = 1 << 62
        self._wake.set()
        self._jobs.put(None)
        self._thread.join(2.0)
        self._sock.close()

    def _timestamp(self, now: float) -> int:
        return (self._ts0 + int((now - self._t0) * 8000)) & 0xFFFFFFFF

    def _run(self) -> None:
        while not self._closed:
            job = self._jobs.get()
            if job is None:
                return
            if job.token <= self._stop_token:
                continue
            try:
                self._send(job)
            except OSError as exc:  # the peer's network is gone: stop talking, keep the thread
                log.warning("sending RTP to %s:%d failed: %s", *self.peer, exc)

    def _send(self, job: _Job) -> None:
        self._wake.clear()
        start = time.monotonic()
        ts = self._timestamp(start)
        n = (len(job.wire) + SAMPLES - 1) // SAMPLES
        for k in range(n):
            due = start + k * PTIME_MS / 1000
            delay = due - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)
            if job.token <= self._stop_token:
                return
            payload = job.wire[k * SAMPLES : (k + 1) * SAMPLES]
            pkt = build(
                self.payload_type, self._seq, ts + k * SAMPLES, self.ssrc, payload, marker=k == 0
            )
            self._sock.sendto(pkt, self.peer)
            self._seq = (self._seq + 1) & 0xFFFF
            self.packets += 1
            if self.on_packet is not None:
                self.on_packet(job.token, time.time())
        # the last packet's 20 ms must play out before the prompt counts as heard
        end = start + n * PTIME_MS / 1000
        delay = end - time.monotonic()
        if delay > 0:
            self._wake.wait(delay)
        if job.token > self._stop_token:
            self.on_finished(job.token, time.time())


class StreamPlayer:
    """Prompts back over the call's own bidirectional stream (Twilio, AudioSocket): each
    prompt is queued whole with a mark after it, and has played when the mark comes back
    (the transport paces it, or the PBX plays its buffer). A stop clears what is queued."""

    def __init__(self, outbound: Outbound, on_finished: Callable[[int, float], None]) -> None:
        self._outbound = outbound
        self.on_finished = on_finished
        self._stop_token = 0
        self.packets = 0  # 20 ms frames queued
        outbound.on_played(self._played)

    def play(self, token: int, wire: bytes) -> None:
        """Queue a prompt (mu-law bytes) and its mark."""
        if token <= self._stop_token:
            return
        self._outbound.play(wire)
        self._outbound.mark(token)
        self.packets += (len(wire) + SAMPLES - 1) // SAMPLES

    def stop(self, token: int) -> None:
        """Cancel prompt `token` (and whatever is queued with it) now."""
        self._stop_token = max(self._stop_token, token)
        self._outbound.clear()

    def close(self) -> None:
        """Nothing more is reported (the stream itself ends with the call)."""
        self._stop_token = 1 << 62

    def _played(self, token: int) -> None:
        if token > self._stop_token:
            self.on_finished(token, time.time())
