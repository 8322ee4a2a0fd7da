"""Simulated PBXs for the stream transports, written from each protocol's published
description (not from callpipe's server code), for tests and benchmarks:

- Twilio Media Streams (twilio.com/docs/voice/media-streams/websocket-messages): JSON text
  frames `connected`, `start`, `media` (base64 mu-law 8 kHz, 20 ms, `timestamp` in ms
  from the stream's start), `dtmf`, `stop`; on a bidirectional stream Twilio buffers the
  `media` it is sent, plays it in real time, echoes each `mark` once the audio before it
  has played, and on `clear` empties its buffer and echoes the marks that were in it.
- jambonz `listen` / mod_audio_fork: a JSON metadata text frame, then binary 16-bit
  little-endian PCM, channels interleaved.
- Asterisk AudioSocket (docs.asterisk.org, AudioSocket protocol): 3-byte header (kind,
  16-bit big-endian length); 0x01 UUID (16 bytes), 0x10 8 kHz signed linear audio,
  0x03 DTMF (one ASCII byte), 0x00 hang-up.
"""

from __future__ import annotations

import base64
import json
import queue
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from pipeline.media import g711
from pipeline.media.resample import float_to_int16
from sim.pbx import synthesize
from sim.phone import Heard, HeardLog, trim_silence

FRAME_S = 0.02
ULAW_FRAME = 160  # bytes of 20 ms mu-law
SLIN_FRAME = 320  # bytes of 20 ms 8 kHz 16-bit


def _pace(t0: float, k: int) -> None:
    delay = t0 + k * FRAME_S - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# --- Twilio -------------------------------------------------------------------------------


def twilio_start(
    call_sid: str,
    stream_sid: str,
    tracks: Sequence[str],
    custom: dict[str, str],
    sequence: int = 1,
) -> dict[str, Any]:
    """The `start` message Twilio sends."""
    return {
        "event": "start",
        "sequenceNumber": str(sequence),
        "start": {
            "accountSid": "AC" + "0" * 32,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": list(tracks),
            "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": stream_sid,
    }


def twilio_call(
    url: str,
    tracks: dict[str, np.ndarray],
    custom: dict[str, str],
    *,
    call_sid: str | None = None,
    dtmf: Sequence[tuple[float, str]] = (),
    realtime: bool = True,
    headers: dict[str, str] | None = None,
) -> None:
    """One unidirectional stream: `tracks` (inbound/outbound -> 8 kHz int16) sent as 20 ms
    media messages, in real time, key presses (`(seconds, digit)`, inbound) between
    them, then `stop`."""
    call_sid = call_sid or "CA" + uuid.uuid4().hex
    stream_sid = "MZ" + uuid.uuid4().hex
    wires = {t: g711.ulaw_encode(pcm) for t, pcm in tracks.items()}
    frames = max((len(w) + ULAW_FRAME - 1) // ULAW_FRAME for w in wires.values())
    presses = sorted(dtmf)
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        seq = 1
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(json.dumps(twilio_start(call_sid, stream_sid, list(tracks), custom, seq)))
        t0 = time.monotonic()
        for k in range(frames):
            if realtime:
                _pace(t0, k)
            while presses and presses[0][0] <= k * FRAME_S:
                seq += 1
                ws.send(
                    json.dumps(
                        {
                            "event": "dtmf",
                            "streamSid": stream_sid,
                            "sequenceNumber": str(seq),
                            "dtmf": {"track": "inbound_track", "digit": presses.pop(0)[1]},
                        }
                    )
                )
            for track, wire in wires.items():
                chunk = wire[k * ULAW_FRAME : (k + 1) * ULAW_FRAME]
                if not chunk:
                    continue
                seq += 1
                ws.send(
                    json.dumps(
                        {
                            "event": "media",
                            "sequenceNumber": str(seq),
                            "media": {
                                "track": track,
                                "chunk": str(k + 1),
                                "timestamp": str(k * 20),
                                "payload": base64.b64encode(chunk).decode(),
                            },
                            "streamSid": stream_sid,
                        }
                    )
                )
        seq += 1
        ws.send(
            json.dumps(
                {
                    "event": "stop",
                    "sequenceNumber": str(seq),
                    "streamSid": stream_sid,
                    "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid},
                }
            )
        )
        try:
            while True:  # until the server closes
                ws.recv(timeout=5)
        except (ConnectionClosed, TimeoutError):
            pass


class TwilioCaller(HeardLog):
    """The far end of a bidirectional Twilio stream (`<Connect><Stream>`), as SimCaller is
    of an RTP call: a continuous inbound track (silence, Piper speech, key presses) and
    Twilio's playback of what the server sends back, in real time, with marks and clear.

    `heard` holds one entry per 20 ms frame played to the caller."""

    def __init__(self, voice: Any = None) -> None:
        self.voice = voice
        self.heard: list[Heard] = []
        self.speech_ends: list[float] = []
        self.marks_echoed: list[str] = []
        self.clears = 0
        self._lock = threading.Lock()
        self._out: deque[tuple[str, Any]] = deque()
        self._done: queue.Queue[float] = queue.Queue()
        self._playback: deque[tuple[str, bytes | str]] = deque()  # ("media", bytes)|("mark", n)
        self._stop = threading.Event()
        self._ws: ClientConnection | None = None
        self._sid = "MZ" + uuid.uuid4().hex
        self._seq = 0
        self._played = 0
        self.closed_code: int | None = None

    def connect(self, url: str, custom: dict[str, str], call_sid: str | None = None) -> None:
        """Open the stream (`connected`, `start`) and start sending and playing."""
        # Entered by hand: the stream lives across calls of this object, not one block.
        self._ws = connect(url, open_timeout=10).__enter__()
        self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self._send(
            twilio_start(call_sid or "CA" + uuid.uuid4().hex, self._sid, ["inbound"], custom)
        )
        for target, name in ((self._receive, "twilio-rx"), (self._tick, "twilio-tx")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def speech(self, text: str) -> np.ndarray:
        """Piper speech for `text`, 8 kHz int16, silence trimmed."""
        return trim_silence(float_to_int16(synthesize(self.voice, text, 8000)))

    def say(self, text: str | np.ndarray, wait: bool = True) -> float:
        """Queue speech on the inbound track; with `wait`, when its last frame left."""
        pcm = self.speech(text) if isinstance(text, str) else text
        with self._lock:
            self._out.append(("pcm", g711.ulaw_encode(pcm)))
        return self._done.get(timeout=60.0) if wait else 0.0

    def press(self, digits: str, wait: bool = True) -> float:
        """Key presses, as Twilio reports them (`dtmf` messages, 200 ms apart)."""
        with self._lock:
            for d in digits:
                self._out.append(("dtmf", d))
        t = 0.0
        if wait:
            for _ in digits:
                t = self._done.get(timeout=30.0)
        return t

    def close(self) -> None:
        """Send `stop` and close."""
        if self._ws is not None and not self._stop.is_set():
            try:
                self._send({"event": "stop", "streamSid": self._sid, "stop": {}})
            except ConnectionClosed:
                pass
        self._stop.set()
        if self._ws is not None:
            self._ws.close()

    # -- threads ----------------------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> None:
        assert self._ws is not None
        self._seq += 1
        self._ws.send(json.dumps({**msg, "sequenceNumber": str(self._seq)}))

    def _receive(self) -> None:
        assert self._ws is not None
        try:
            for raw in self._ws:
                msg = json.loads(raw)
                with self._lock:
                    if msg["event"] == "media":
                        self._playback.append(("media", base64.b64decode(msg["media"]["payload"])))
                    elif msg["event"] == "mark":
                        self._playback.append(("mark", msg["mark"]["name"]))
                    elif msg["event"] == "clear":
                        self.clears += 1
                        marks = [v for k, v in self._playback if k == "mark"]
                        self._playback.clear()
                        for name in marks:
                            self._echo(str(name))
        except ConnectionClosed:
            pass
        self.closed_code = self._ws.close_code
        self._stop.set()

    def _echo(self, name: str) -> None:
        self.marks_echoed.append(name)
        self._send({"event": "mark", "streamSid": self._sid, "mark": {"name": name}})

    def _tick(self) -> None:
        silence = g711.ulaw_encode(np.zeros(ULAW_FRAME, np.int16))
        t0 = time.monotonic()
        k = 0
        wire, pos = b"", 0
        while not self._stop.is_set():
            _pace(t0, k)
            now = time.time()
            try:
                self._play(now)
                if pos >= len(wire):
                    with self._lock:
                        item = self._out.popleft() if self._out else None
                    if item is not None and item[0] == "dtmf":
                        self._send(
                            {
                                "event": "dtmf",
                                "streamSid": self._sid,
                                "dtmf": {"track": "inbound_track", "digit": item[1]},
                            }
                        )
                        self._done.put(now)
                        k += 10  # 200 ms to the next key
                        continue
                    if item is not None:
                        wire, pos = item[1], 0
                chunk = wire[pos : pos + ULAW_FRAME] if pos < len(wire) else silence
                if pos < len(wire):
                    pos += ULAW_FRAME
                    if pos >= len(wire):
                        self.speech_ends.append(now)
                        self._done.put(now)
                self._send(
                    {
                        "event": "media",
                        "streamSid": self._sid,
                        "media": {
                            "track": "inbound",
                            "chunk": str(k + 1),
                            "timestamp": str(k * 20),
                            "payload": base64.b64encode(chunk.ljust(ULAW_FRAME, b"\xff")).decode(),
                        },
                    }
                )
            except ConnectionClosed:
                self._stop.set()
                return
            k += 1

    def _play(self, now: float) -> None:
        """Twilio plays one 20 ms frame of its buffer per tick; marks as they are reached."""
        with self._lock:
            while self._playback and self._playback[0][0] == "mark":
                self._echo(str(self._playback.popleft()[1]))
            if self._playback:
                _, data = self._playback.popleft()
                self._played += 1
                # the first frame after a pause starts a talk spurt (RTP's marker bit)
                spurt = not self.heard or now - self.heard[-1].at > 0.1
                self.heard.append(Heard(now, self._played, spurt, len(data)))
                while self._playback and self._playback[0][0] == "mark":
                    self._echo(str(self._playback.popleft()[1]))


# --- L16 WebSocket (jambonz listen, mod_audio_fork) --------------------------------------


def l16_call(
    url: str,
    channels: Sequence[np.ndarray],
    rate: int,
    metadata: dict[str, Any],
    *,
    frame_ms: int = 20,
    realtime: bool = True,
    dtmf: Sequence[tuple[float, str]] = (),
) -> None:
    """Metadata, then the channels (int16 at `rate`) interleaved in binary frames of
    `frame_ms`, in real time; key presses as jambonz sends them; then close."""
    n = max(len(c) for c in channels)
    both = np.zeros((n, len(channels)), dtype="<i2")
    for i, c in enumerate(channels):
        both[: len(c), i] = c
    data = both.tobytes()
    step = rate * frame_ms // 1000 * 2 * len(channels)
    presses = sorted(dtmf)
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps(metadata))
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(data), step)):
            if realtime:
                delay = t0 + k * frame_ms / 1000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            while presses and presses[0][0] <= k * frame_ms / 1000:
                ws.send(
                    json.dumps({"event": "dtmf", "dtmf": presses.pop(0)[1], "duration": "1600"})
                )
            ws.send(data[i : i + step])


# --- AudioSocket ---------------------------------------------------------------------------


def audiosocket_frame(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket frame."""
    return struct.pack(">BH", kind, len(payload)) + payload


class AudioSocketCall:
    """Asterisk's side of one AudioSocket connection."""

    def __init__(self, host: str, port: int, stream_uuid: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(audiosocket_frame(0x01, uuid.UUID(stream_uuid).bytes))
        self.received = bytearray()  # audio the server sent back
        self.hung_up = threading.Event()
        self._rx = threading.Thread(target=self._receive, daemon=True, name="audiosocket-rx")
        self._rx.start()

    def send(
        self,
        pcm: np.ndarray,
        *,
        realtime: bool = True,
        dtmf: Sequence[tuple[float, str]] = (),
        hang_up: bool = True,
    ) -> None:
        """8 kHz int16 audio in 20 ms frames (key presses between them), then hang-up;
        stops early, as Asterisk does, once the other side hung up."""
        data = np.asarray(pcm, dtype="<i2").tobytes()
        presses = sorted(dtmf)
        t0 = time.monotonic()
        try:
            for k, i in enumerate(range(0, len(data), SLIN_FRAME)):
                if realtime:
                    _pace(t0, k)
                if self.hung_up.is_set():
                    return
                while presses and presses[0][0] <= k * FRAME_S:
                    self.sock.sendall(audiosocket_frame(0x03, presses.pop(0)[1].encode()))
                self.sock.sendall(audiosocket_frame(0x10, data[i : i + SLIN_FRAME]))
            if hang_up:
                self.sock.sendall(audiosocket_frame(0x00))
        except OSError:
            if not self.hung_up.wait(1.0):  # broken without a hang-up frame: a real error
                raise

    def close(self) -> None:
        """Close the connection."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the receiving thread
        except OSError:
            pass
        try:
            self.sock.close()
        finally:
            self._rx.join(2.0)

    def _receive(self) -> None:
        buf = b""
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:  # nothing sent back for a while: still connected
                    continue
                if not data:
                    break
                buf += data
                while len(buf) >= 3:
                    kind, length = struct.unpack(">BH", buf[:3])
                    if len(buf) < 3 + length:
                        break
                    payload, buf = buf[3 : 3 + length], buf[3 + length :]
                    if kind == 0x10:
                        self.received += payload
                    elif kind == 0x00:
                        self.hung_up.set()
        except OSError:
            pass
        self.hung_up.set()
