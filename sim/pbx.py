"""A simulated PBX: plays a two-party call from a YAML script as real RTP to callpipe.

Each script line is spoken by Piper on the agent or customer leg (the other leg carries
silence meanwhile, as a real fork does), or is a DTMF line sent as RFC 4733 events. The
call is registered over HTTP, both legs are sent as PCMU in 20 ms packets paced in real
time (optionally with loss, jitter and reordering), then the call is ended.

The pieces are importable for tests and benchmarks: `load_script`, `render_script`,
`packetize`, `impair`, `send_packets`, `send_leg`, `simulate_call`.

Script format::

    call_id: demo-1          # optional
    agent_id: agent-7        # optional; also direction, caller, callee
    lines:
      - {speaker: agent, text: "Hello, how can I help?", pause: 0.5}
      - {speaker: customer, dtmf: "42#"}
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import yaml

from models.piper import load_voice
from pipeline.config import Settings
from pipeline.errors import CliError
from pipeline.media import g711
from pipeline.media.dtmf import DIGITS, build_event
from pipeline.media.opus import OpusEncoder
from pipeline.media.resample import float_to_int16
from pipeline.media.rtp import build
from tts.synth import speak_at

log = logging.getLogger(__name__)

LEGS: tuple[Literal["agent", "customer"], ...] = ("agent", "customer")
RATE = 8000
DIGIT_S = 0.1  # tone length of one key press
DIGIT_GAP_S = 0.1  # silence between key presses


class ScriptError(ValueError):
    """A script that cannot be played; the message says where."""


@dataclass(frozen=True)
class ScriptLine:
    """One line: speech (`text`) or key presses (`dtmf`) on a leg, then a pause."""

    speaker: Literal["agent", "customer"]
    text: str | None = None
    dtmf: str | None = None
    pause: float = 0.5


@dataclass(frozen=True)
class Script:
    """A call to play: metadata for registration and the lines."""

    lines: tuple[ScriptLine, ...]
    call_id: str | None = None
    direction: str = "inbound"
    agent_id: str | None = None
    caller: str | None = None
    callee: str | None = None


def parse_script(raw: Any) -> Script:
    """Validate a script already read from YAML."""
    if not isinstance(raw, dict) or not isinstance(raw.get("lines"), list) or not raw["lines"]:
        raise ScriptError("a script is a mapping with a non-empty 'lines' list")
    lines: list[ScriptLine] = []
    for i, item in enumerate(raw["lines"], 1):
        if not isinstance(item, dict):
            raise ScriptError(f"line {i}: expected a mapping")
        speaker = item.get("speaker", "customer" if "dtmf" in item else None)
        if speaker not in LEGS:
            raise ScriptError(f"line {i}: speaker must be agent or customer")
        text, dtmf = item.get("text"), item.get("dtmf")
        if (text is None) == (dtmf is None):
            raise ScriptError(f"line {i}: give exactly one of text or dtmf")
        if dtmf is not None:
            dtmf = str(dtmf)
            if not dtmf or any(d not in DIGITS for d in dtmf):
                raise ScriptError(f"line {i}: dtmf may hold only 0-9 * # A-D")
        if text is not None and not str(text).strip():
            raise ScriptError(f"line {i}: empty text")
        try:
            pause = float(item.get("pause", 0.5))
        except (TypeError, ValueError):
            raise ScriptError(f"line {i}: pause must be a number of seconds") from None
        if not 0 <= pause <= 30:
            raise ScriptError(f"line {i}: pause must be 0-30 s")
        lines.append(ScriptLine(speaker, None if text is None else str(text), dtmf, pause))
    meta = {k: raw.get(k) for k in ("call_id", "agent_id", "caller", "callee")}
    return Script(
        tuple(lines),
        direction=str(raw.get("direction", "inbound")),
        **{k: None if v is None else str(v) for k, v in meta.items()},
    )


def load_script(path: Path) -> Script:
    """Read and validate a YAML script file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScriptError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path} is not valid YAML: {exc}") from exc
    return parse_script(raw)


@dataclass(frozen=True)
class DtmfMark:
    """Key presses to send on a leg from `sample` on (8 kHz)."""

    leg: str
    sample: int
    digits: str


@dataclass(frozen=True)
class SpokenLine:
    """Where a line landed: leg, text, first and end sample (8 kHz)."""

    leg: str
    text: str
    start: int
    end: int


@dataclass
class RenderedCall:
    """Both legs' audio (int16, 8 kHz, same length) and what was said where."""

    legs: dict[str, np.ndarray]
    lines: list[SpokenLine] = field(default_factory=list)
    dtmf: list[DtmfMark] = field(default_factory=list)
    rate: int = RATE

    def text_of(self, leg: str) -> str:
        """Everything one leg says, in order."""
        return " ".join(x.text for x in self.lines if x.leg == leg)

    @property
    def duration(self) -> float:
        """Seconds of audio per leg."""
        return len(self.legs["agent"]) / self.rate


def synthesize(voice: Any, text: str, rate: int = RATE) -> np.ndarray:
    """Piper speech for `text` as float32 at `rate`, the same audio every time."""
    return speak_at(voice, text, rate, steady=True)


def render_script(script: Script, voice: Any, *, lead_s: float = 0.3) -> RenderedCall:
    """Synthesise every line: one leg speaks while the other is silent, then both pause."""
    parts: dict[str, list[np.ndarray]] = {leg: [] for leg in LEGS}
    pos = int(lead_s * RATE)
    for leg in LEGS:
        parts[leg].append(np.zeros(pos, np.float32))
    call = RenderedCall(legs={})
    for line in script.lines:
        if line.text is not None:
            speech = synthesize(voice, line.text)
            call.lines.append(SpokenLine(line.speaker, line.text, pos, pos + len(speech)))
        else:
            assert line.dtmf is not None
            n = int(len(line.dtmf) * (DIGIT_S + DIGIT_GAP_S) * RATE)
            speech = np.zeros(n, np.float32)
            call.dtmf.append(DtmfMark(line.speaker, pos, line.dtmf))
        pause = np.zeros(int(line.pause * RATE), np.float32)
        for leg in LEGS:
            body = speech if leg == line.speaker else np.zeros(len(speech), np.float32)
            parts[leg] += [body, pause]
        pos += len(speech) + len(pause)
    call.legs = {leg: float_to_int16(np.concatenate(parts[leg])) for leg in LEGS}
    return call


# --- RTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    """One RTP datagram and when to send it, in seconds from the leg's start."""

    at: float
    data: bytes
    sequence: int


def packetize(
    pcm: np.ndarray,
    codec: str = "PCMU",
    *,
    ptime_ms: int = 20,
    payload_type: int | None = None,
    ssrc: int | None = None,
    seq0: int | None = None,
    ts0: int | None = None,
    dtmf: list[DtmfMark] | tuple[DtmfMark, ...] = (),
    dtmf_payload_type: int = 101,
    rate: int = RATE,
) -> list[Packet]:
    """RTP packets of a whole leg, at their nominal send times (no impairment).

    PCMU/PCMA take int16 at 8 kHz; opus takes int16 at 16 kHz (`rate`) and sends with
    the 48 kHz RTP clock. Key presses replace the audio packets they overlap, as PBXs do.
    """
    r = random.Random()
    ssrc = r.getrandbits(32) if ssrc is None else ssrc
    seq = r.getrandbits(16) if seq0 is None else seq0
    ts0 = r.getrandbits(32) if ts0 is None else ts0
    if codec == "opus":
        return _packetize_opus(pcm, ptime_ms, payload_type or 111, ssrc, seq, ts0, rate)
    encode = g711.ulaw_encode if codec == "PCMU" else g711.alaw_encode
    pt = {"PCMU": 0, "PCMA": 8}[codec] if payload_type is None else payload_type
    spp = RATE * ptime_ms // 1000
    wire = encode(pcm)
    events = _dtmf_slots(dtmf, spp)
    out: list[Packet] = []
    for k, start in enumerate(range(0, len(wire), spp)):
        at = k * ptime_ms / 1000
        ev = events.get(k)
        if ev is not None:
            ev_start, digit, elapsed, end = ev
            first = elapsed == spp
            payload = build_event(digit, elapsed, end=end)
            for _ in range(3 if end else 1):  # the end packet goes three times
                out.append(
                    Packet(
                        at,
                        build(dtmf_payload_type, seq, ts0 + ev_start, ssrc, payload, marker=first),
                        seq & 0xFFFF,
                    )
                )
                seq += 1
                at += 0.002
            continue
        payload = wire[start : start + spp]
        out.append(
            Packet(at, build(pt, seq, ts0 + start, ssrc, payload, marker=k == 0), seq & 0xFFFF)
        )
        seq += 1
    return out


def _dtmf_slots(
    marks: list[DtmfMark] | tuple[DtmfMark, ...], spp: int
) -> dict[int, tuple[int, str, int, bool]]:
    """Packet slot -> (event start sample, digit, duration so far, end)."""
    slots: dict[int, tuple[int, str, int, bool]] = {}
    per_digit = max(1, int(DIGIT_S * RATE) // spp)
    step = int((DIGIT_S + DIGIT_GAP_S) * RATE)
    for mark in marks:
        for i, digit in enumerate(mark.digits):
            first_slot = -(-(mark.sample + i * step) // spp)
            for j in range(per_digit):
                slots[first_slot + j] = (first_slot * spp, digit, (j + 1) * spp, j == per_digit - 1)
    return slots


def _packetize_opus(
    pcm: np.ndarray, ptime_ms: int, pt: int, ssrc: int, seq: int, ts0: int, rate: int
) -> list[Packet]:
    enc = OpusEncoder(input_rate=rate, frame_ms=ptime_ms)
    frames = enc.encode(pcm)
    step = 48 * ptime_ms
    return [
        Packet(
            k * ptime_ms / 1000,
            build(pt, seq + k, ts0 + k * step, ssrc, p, marker=k == 0),
            (seq + k) & 0xFFFF,
        )
        for k, p in enumerate(frames)
    ]


def impair(
    packets: list[Packet],
    *,
    loss: float = 0.0,
    jitter_ms: float = 0.0,
    reorder: float = 0.0,
    seed: int | None = None,
) -> list[Packet]:
    """Network trouble: drop `loss` % of packets, delay each by 0..`jitter_ms`, and swap
    `reorder` % of neighbours; returns the packets in the order they will leave."""
    r = random.Random(seed)
    kept = [p for p in packets if r.random() * 100 >= loss]
    timed = [Packet(p.at + r.uniform(0, jitter_ms) / 1000, p.data, p.sequence) for p in kept]
    for i in range(len(timed) - 1):
        if r.random() * 100 < reorder:
            a, b = timed[i], timed[i + 1]
            timed[i], timed[i + 1] = (
                Packet(a.at, b.data, b.sequence),
                Packet(b.at, a.data, a.sequence),
            )
    return sorted(timed, key=lambda p: p.at)


def send_packets(
    packets: list[Packet],
    host: str,
    port: int,
    *,
    realtime: bool = True,
    start: float | None = None,
    stop: threading.Event | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Send datagrams at their times from `start` (monotonic; now by default)."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic() if start is None else start
    sent = 0
    try:
        for p in packets:
            if stop is not None and stop.is_set():
                break
            if realtime:
                delay = t0 + p.at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            s.sendto(p.data, (host, port))
            sent += 1
    finally:
        if own:
            s.close()
    return sent


def send_leg(
    pcm: np.ndarray,
    host: str,
    port: int,
    *,
    codec: str = "PCMU",
    loss: float = 0.0,
    jitter_ms: float = 0.0,
    reorder: float = 0.0,
    seed: int | None = None,
    dtmf: list[DtmfMark] | tuple[DtmfMark, ...] = (),
    dtmf_payload_type: int = 101,
    realtime: bool = True,
    start: float | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Packetize, impair and send one leg; returns the datagrams sent."""
    packets = packetize(pcm, codec, dtmf=dtmf, dtmf_payload_type=dtmf_payload_type)
    packets = impair(packets, loss=loss, jitter_ms=jitter_ms, reorder=reorder, seed=seed)
    return send_packets(packets, host, port, realtime=realtime, start=start, stop=stop)


# --- the whole call over HTTP ---------------------------------------------------------


@dataclass
class SimulationResult:
    """What a simulated call did: its id, ports, audio and the API's closing summary."""

    call_id: str
    tenant: str
    endpoints: dict[str, tuple[str, int]]
    rendered: RenderedCall
    sent: dict[str, int]
    summary: dict[str, Any] = field(default_factory=dict)


class SimulationError(RuntimeError):
    """The API refused the call or could not be reached."""


def simulate_call(
    api: str,
    script: Script,
    *,
    voice: Any = None,
    rendered: RenderedCall | None = None,
    key: str | None = None,
    tenant: str | None = None,
    loss: float = 0.0,
    jitter_ms: float = 0.0,
    reorder: float = 0.0,
    seed: int | None = None,
    realtime: bool = True,
    end_call: bool = True,
    tail_s: float = 0.3,
    stop: threading.Event | None = None,
) -> SimulationResult:
    """Register over HTTP at `api` (http://host:port), send both legs, then hang up."""
    if rendered is None:
        if voice is None:
            raise SimulationError("simulate_call needs a Piper voice or rendered audio")
        rendered = render_script(script, voice)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: dict[str, Any] = {
        "call_id": script.call_id or f"sim-{uuid.uuid4().hex[:12]}",
        "direction": script.direction,
        "agent_id": script.agent_id,
        "caller": script.caller,
        "callee": script.callee,
        "legs": [{"leg": leg, "codec": "PCMU"} for leg in LEGS],
    }
    if tenant:
        body["tenant"] = tenant
    with httpx.Client(base_url=api, headers=headers, timeout=10.0) as client:
        try:
            resp = client.post("/v1/calls", json=body)
        except httpx.HTTPError as exc:
            raise SimulationError(f"cannot reach {api}: {exc}") from exc
        if resp.status_code != 201:
            raise SimulationError(f"POST /v1/calls: {resp.status_code} {resp.text}")
        reg = resp.json()
        api_host = httpx.URL(api).host
        dtmf_pt = int(reg.get("dtmf_payload_type", 101))
        endpoints: dict[str, tuple[str, int]] = {}
        for leg in reg["legs"]:
            host = leg["host"] if leg["host"] not in ("0.0.0.0", "") else api_host
            endpoints[leg["leg"]] = (host, int(leg["port"]))
        sent: dict[str, int] = {}
        start = time.monotonic() + 0.05
        threads = []
        for i, leg in enumerate(LEGS):
            host, port = endpoints[leg]
            marks = [m for m in rendered.dtmf if m.leg == leg]

            def run(
                leg: str = leg,
                host: str = host,
                port: int = port,
                marks: list[DtmfMark] = marks,
                i: int = i,
            ) -> None:
                sent[leg] = send_leg(
                    rendered.legs[leg],
                    host,
                    port,
                    loss=loss,
                    jitter_ms=jitter_ms,
                    reorder=reorder,
                    seed=None if seed is None else seed + i,
                    dtmf=marks,
                    dtmf_payload_type=dtmf_pt,
                    realtime=realtime,
                    start=start,
                    stop=stop,
                )

            t = threading.Thread(target=run, name=f"simulate-{leg}", daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        result = SimulationResult(reg["call_id"], reg["tenant"], endpoints, rendered, sent)
        if end_call:
            time.sleep(tail_s)  # let the last packets in before the hang-up
            resp = client.post(f"/v1/calls/{reg['call_id']}/hangup")
            if resp.status_code != 200:
                raise SimulationError(
                    f"POST /v1/calls/{{id}}/hangup: {resp.status_code} {resp.text}"
                )
            result.summary = resp.json()
    return result


# --- CLI --------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add `simulate-call`."""
    p = sub.add_parser("simulate-call", help="play a two-party call as RTP against callpipe")
    p.add_argument(
        "--to", required=True, metavar="URL", help="the callpipe API: http://HOST:PORT or HOST:PORT"
    )
    p.add_argument("--script", required=True, type=Path, help="YAML call script")
    p.add_argument("--loss", type=float, default=0.0, help="packet loss in percent")
    p.add_argument("--jitter", type=float, default=0.0, help="extra delay up to MS")
    p.add_argument("--reorder", type=float, default=0.0, help="neighbour swaps in percent")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--tenant", default=None, help="must match the key's tenant")
    p.add_argument("--key", default=None, help="PBX API key (default $CALLPIPE_API_KEY)")
    p.set_defaults(func=cmd_simulate_call)


def cmd_simulate_call(args: argparse.Namespace) -> int:
    """Play the script and print what happened."""
    for name in ("loss", "reorder"):
        if not 0 <= getattr(args, name) <= 100:
            raise CliError(f"--{name} must be 0-100 (percent)")
    if not 0 <= args.jitter <= 2000:
        raise CliError("--jitter must be 0-2000 ms")
    host, _, port = args.to.removeprefix("http://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise CliError("--to must be http://HOST:PORT or HOST:PORT")
    try:
        script = load_script(args.script)
    except ScriptError as exc:
        raise CliError(str(exc)) from exc
    voice = load_voice(Settings().tts.voice)
    rendered = render_script(script, voice)
    sys.stdout.write(f"playing {rendered.duration:.1f} s of call to {args.to}\n")
    try:
        result = simulate_call(
            f"http://{host}:{port}",
            script,
            rendered=rendered,
            key=args.key or os.environ.get("CALLPIPE_API_KEY"),
            tenant=args.tenant,
            loss=args.loss,
            jitter_ms=args.jitter,
            reorder=args.reorder,
            seed=args.seed,
        )
    except SimulationError as exc:
        raise CliError(str(exc)) from exc
    sys.stdout.write(f"call {result.call_id} (tenant {result.tenant})\n")
    for leg, (h, p) in result.endpoints.items():
        sys.stdout.write(f"  {leg}: {result.sent.get(leg, 0)} packets to {h}:{p}\n")
    for leg, stats in result.summary.get("legs", {}).items():
        sys.stdout.write(f"  {leg} received: {stats}\n")
    return 0
