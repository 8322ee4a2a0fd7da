"""A simulated caller for tests and benchmarks: the far end of a robot call, over real RTP.

It binds a UDP port (the robot's media peer), records every packet the robot sends, and
keeps a continuous 20 ms PCMU/PCMA stream towards the ingest, as a phone does: silence,
or Piper speech when it has something to say, or RFC 4733 key presses. It can wait
until the robot has finished speaking before it answers.
"""

from __future__ import annotations

import queue
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.media import g711
from pipeline.media.dtmf import build_event
from pipeline.media.level import frame_power
from pipeline.media.resample import float_to_int16
from pipeline.media.rtp import build, parse
from sim.pbx import synthesize

RATE = 8000
SAMPLES = 160  # 20 ms
DTMF_PT = 101
_SILENCE_DBFS = -45.0


@dataclass(frozen=True)
class Heard:
    """One packet from the robot: arrival time (UNIX), sequence, marker, payload bytes."""

    at: float
    sequence: int
    marker: bool
    size: int


def trim_silence(pcm: np.ndarray, floor_dbfs: float = _SILENCE_DBFS) -> np.ndarray:
    """Speech without its leading and trailing silence (so "end of answer" is exact)."""
    frame = 80
    if len(pcm) < frame:
        return pcm
    rms = np.sqrt(frame_power(pcm, frame))
    loud = np.flatnonzero(rms > 32768 * 10 ** (floor_dbfs / 20))
    if not len(loud):
        return pcm[:0]
    return pcm[loud[0] * frame : (loud[-1] + 1) * frame]


class HeardLog:
    """What a simulated far end heard of the robot (`heard`, under `_lock`) and the waits
    on it; shared by the RTP phone and the Twilio stream (sim/streams.py)."""

    heard: list[Heard]
    _lock: threading.Lock

    def packets_since(self, t: float) -> list[Heard]:
        """Robot packets that arrived (or frames that played) after `t`."""
        with self._lock:
            return [h for h in self.heard if h.at > t]

    def last_heard(self) -> float:
        """Arrival time of the robot's latest packet (0 if none)."""
        with self._lock:
            return self.heard[-1].at if self.heard else 0.0

    def wait_robot_done(self, since: float, quiet_s: float = 0.6, timeout_s: float = 60.0) -> float:
        """Wait until the robot spoke after `since` and then went quiet; its last packet time."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            last = self.last_heard()
            if last > since and time.time() - last >= quiet_s:
                return last
            time.sleep(0.02)
        raise TimeoutError("the robot did not speak and stop")


class SimCaller(HeardLog):
    """One simulated phone: `connect(host, port)`, then `say`, `press`, `wait_robot_done`."""

    def __init__(self, voice: Any = None, codec: str = "PCMU", host: str = "127.0.0.1") -> None:
        self.voice = voice
        self.codec = codec
        self.pt = 0 if codec == "PCMU" else 8
        self._encode = g711.ulaw_encode if codec == "PCMU" else g711.alaw_encode
        self._silence = self._encode(np.zeros(SAMPLES, np.int16))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.heard: list[Heard] = []
        self._lock = threading.Lock()
        self._out: deque[tuple[str, Any]] = deque()  # ("pcm", wire bytes) | ("dtmf", digit)
        self._marks: queue.Queue[float] = queue.Queue()
        self._target: tuple[str, int] | None = None
        self._stop = threading.Event()
        r = random.Random()
        self._seq, self._ts, self.ssrc = r.getrandbits(16), r.getrandbits(32), r.getrandbits(32)
        self.speech_ends: list[float] = []  # UNIX time the last voiced packet of each answer left
        self._rx = threading.Thread(target=self._receive, daemon=True, name="simcaller-rx")
        self._tx = threading.Thread(target=self._send, daemon=True, name="simcaller-tx")
        self._rx.start()

    # -- control ---------------------------------------------------------------------------
    def connect(self, host: str, port: int) -> None:
        """Start streaming to the ingest's port for this call."""
        self._target = (host, port)
        self._tx.start()

    def speech(self, text: str) -> np.ndarray:
        """Piper speech for `text`, 8 kHz int16, silence trimmed."""
        if self.voice is None:
            raise ValueError("SimCaller needs a Piper voice to speak")
        return trim_silence(float_to_int16(synthesize(self.voice, text, RATE)))

    def say(self, text: str | np.ndarray, wait: bool = True) -> float:
        """Queue speech (text or 8 kHz int16); with `wait`, return when its last packet left."""
        pcm = self.speech(text) if isinstance(text, str) else text
        with self._lock:
            self._out.append(("pcm", self._encode(pcm)))
        if not wait:
            return 0.0
        return self._marks.get(timeout=60.0)

    def press(self, digits: str, wait: bool = True) -> float:
        """Key presses as RFC 4733 events (100 ms each, 100 ms apart)."""
        with self._lock:
            for d in digits:
                self._out.append(("dtmf", d))
        if not wait:
            return 0.0
        t = 0.0
        for _ in digits:
            t = self._marks.get(timeout=30.0)
        return t

    def close(self) -> None:
        """Stop both threads and release the port."""
        self._stop.set()
        if self._tx.is_alive():
            self._tx.join(2.0)
        self._rx.join(2.0)
        self.sock.close()

    # -- threads ----------------------------------------------------------------------------
    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.time()
            try:
                pkt = parse(data)
            except ValueError:
                continue
            with self._lock:
                self.heard.append(Heard(now, pkt.sequence, pkt.marker, len(pkt.payload)))

    def _packet(self, payload: bytes, pt: int, ts: int, marker: bool = False) -> bytes:
        data = build(pt, self._seq, ts, self.ssrc, payload, marker=marker)
        self._seq = (self._seq + 1) & 0xFFFF
        return data

    def _send(self) -> None:
        assert self._target is not None
        t0 = time.monotonic()
        k = 0
        wire = b""
        pos = 0
        dtmf: list[bytes] = []
        while not self._stop.is_set():
            due = t0 + k * 0.02
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ts = self._ts + k * SAMPLES
            k += 1
            if pos >= len(wire) and not dtmf:
                with self._lock:
                    item = self._out.popleft() if self._out else None
                if item is not None and item[0] == "pcm":
                    wire, pos = item[1], 0
                elif item is not None:
                    dtmf = self._dtmf_packets(item[1], ts)
            if dtmf:
                for pkt in dtmf[:1]:
                    self.sock.sendto(pkt, self._target)
                dtmf = dtmf[1:]
                if not dtmf:
                    self._marks.put(time.time())
                continue
            if pos < len(wire):
                payload = wire[pos : pos + SAMPLES].ljust(SAMPLES, self._silence[:1])
                pos += SAMPLES
                self.sock.sendto(self._packet(payload, self.pt, ts), self._target)
                if pos >= len(wire):
                    self.speech_ends.append(time.time())
                    self._marks.put(time.time())
                continue
            self.sock.sendto(self._packet(self._silence, self.pt, ts), self._target)

    def _dtmf_packets(self, digit: str, ts: int) -> list[bytes]:
        """One key press: four packets of tone, then the end packet three times (140 ms)."""
        out = []
        for j in range(1, 6):
            end = j == 5
            ev = build_event(digit, j * SAMPLES, end=end)
            for _ in range(3 if end else 1):
                out.append(self._packet(ev, DTMF_PT, ts, marker=j == 1))
        return out
