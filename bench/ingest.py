"""Ingest capacity per transport: how many legs at 50 frames/s one core forwards to the bus.

RTP (default): for each leg count N, a sender process (pinned to the other core) sends
20 ms PCMU packets to N registered legs on loopback, paced in real time; the ingest (this
process, pinned to one core, its UDP loop in one thread) parses, jitter-buffers, batches
and publishes MediaChunks to the in-process bus, where a tailing consumer reads them.

Stream transports (`--transport twilio|l16|audiosocket`): N streams, one leg each, opened
by an asyncio sender process (the other core) written from each protocol's description:
Twilio JSON `media` messages (base64 mu-law), L16 binary WebSocket frames (8 kHz 16-bit),
AudioSocket 0x10 frames; the server is this process: the app under uvicorn (the
WebSockets) or the AudioSocket listener, and the ingest behind them.

Loss = 1 - frames the ingest took in (each then published in a chunk) / frames sent;
"on bus" is the audio published, in 20 ms frames; "behind" is how long after the last
frame was sent the ingest took it in (a server that keeps up: a few ms; one that falls
behind: its backlog, growing with the run).
Run:

    python bench/ingest.py --legs 250,500,750,1000,1250 --seconds 10
    python bench/ingest.py --transport twilio --legs 100,200,300 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import socket
import struct
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from app.services import build_services
from pipeline.config import Settings
from pipeline.events import CallStarted, LegInfo
from pipeline.ingest.receiver import RtpIngest

PORT_MIN = 40000


class BusDrain:
    """A tailing consumer of the media topic in a thread: the audio published (samples)
    and when the ingest took the newest frame of it (the chunks' `arrival`)."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.samples = 0
        self.taken_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        topics = self.services.topics
        c = self.services.bus.consumer([topics.media], "bench", from_beginning=False)
        while True:
            msgs = c.poll(0.05, 100_000)
            for m in msgs:
                n = int.from_bytes(m.value[:4], "big")
                self.samples += (len(m.value) - 4 - n) // 2
                self.taken_at = max(self.taken_at, json.loads(m.value[4 : 4 + n])["arrival"])
            if self._stop.is_set() and not msgs:
                break
        c.close()

    def stop(self) -> None:
        """Read what is left, then stop."""
        self._stop.set()
        self._thread.join(10)


def sender(ports: list[int], seconds: float, cpu: int | None, start_at: float, q: mp.Queue) -> None:
    """Send one 160-byte PCMU packet per leg every 20 ms for `seconds`."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    hdr = struct.Struct("!BBHII")
    payload = bytes(random.getrandbits(8) for _ in range(160))
    ssrcs = [random.getrandbits(32) for _ in ports]
    ticks = int(seconds * 50)
    sent = 0
    late = 0.0
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.monotonic()
    for k in range(ticks):
        due = t0 + k * 0.02
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        for port, ssrc in zip(ports, ssrcs, strict=True):
            s.sendto(hdr.pack(0x80, 0, k & 0xFFFF, k * 160, ssrc) + payload, ("127.0.0.1", port))
        sent += len(ports)
    q.put((sent, late))


def run(n: int, seconds: float, pin: bool) -> dict[str, Any]:
    """One measurement with n legs."""
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="bench-ingest-")),
        live={
            "rtp_port_min": PORT_MIN,
            "rtp_port_max": PORT_MIN + 2 * n + 200,
            "rtp_timeout_s": 600,
        },
    )
    services = build_services(settings)
    ingest = RtpIngest(settings, services.bus, services.metrics)
    ports: list[int] = []
    for i in range(n):
        eps = ingest.register(
            CallStarted(tenant="bench", call_id=f"c{i}", legs=(LegInfo(leg="agent"),)),
            publish=False,
        )
        ports.append(eps[0].port)
    ingest.start()
    drain = BusDrain(services)
    q: mp.Queue = mp.Queue()
    start_at = time.time() + 0.5
    p = mp.Process(target=sender, args=(ports, seconds, 1 if pin else None, start_at, q))
    p.start()
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    sent, late = q.get()
    p.join()
    time.sleep(0.5)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    accepted = services.metrics.total("rtp_packets_total")
    drops = [
        line
        for line in services.metrics.render().splitlines()
        if line.startswith("callpipe_rtp_dropped_total")
    ]
    for i in range(n):
        ingest.end("bench", f"c{i}", publish=False)
    drain.stop()
    ingest.close()
    services.close()
    published_packets = drain.samples / 160
    return {  # loss counts packets the ingest never took (the bus side adds concealment)
        "legs": n,
        "sent": sent,
        "accepted": accepted,
        "published_packets": published_packets,
        "loss_pct": 100 * (1 - accepted / sent) if sent else 0.0,
        "cpu_pct": 100 * cpu / wall,
        "cpu_us_per_packet": 1e6 * cpu / max(accepted, 1),
        "sender_late_ms": late * 1000,
        "drops": drops,
    }


# --- stream transports ----------------------------------------------------------------


async def _open_streams(transport: str, target: Any, n: int) -> list[Any]:
    """N connections, each past its protocol's opening (start / metadata / UUID)."""
    from websockets.asyncio.client import connect

    conns: list[Any] = []
    for i in range(n):
        if transport == "audiosocket":
            reader, writer = await asyncio.open_connection("127.0.0.1", target)
            writer.write(struct.pack(">BH", 0x01, 16) + uuid.UUID(int=i + 1).bytes)
            conns.append(writer)
            continue
        ws = await connect(f"{target}/v1/media/{transport}", max_size=None, compression=None)
        if transport == "twilio":
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
            start = {
                "callSid": f"c{i}",
                "streamSid": f"MZ{i}",
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            await ws.send(json.dumps({"event": "start", "start": start, "streamSid": f"MZ{i}"}))
        else:
            await ws.send(json.dumps({"call_id": f"c{i}", "sampleRate": 8000}))
        conns.append(ws)
    return conns


async def _stream_sender(transport: str, target: Any, n: int, seconds: float, q: Any) -> None:
    conns = await _open_streams(transport, target, n)
    payload = base64.b64encode(bytes(random.getrandbits(8) for _ in range(160))).decode()
    pcm = bytes(random.getrandbits(8) for _ in range(320))
    frame = struct.pack(">BH", 0x10, 320) + pcm
    start_at = time.time() + 1.0
    q.put(("ready", start_at))
    await asyncio.sleep(start_at - time.time())
    t0 = time.monotonic()
    sent = 0
    late = 0.0
    for k in range(int(seconds * 50)):
        delay = t0 + k * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        if transport == "twilio":
            msg = (
                f'{{"event":"media","streamSid":"MZ","media":{{"track":"inbound","chunk":"{k}",'
                f'"timestamp":"{k * 20}","payload":"{payload}"}}}}'
            )
            for ws in conns:
                await ws.send(msg)
        elif transport == "l16":
            for ws in conns:
                await ws.send(pcm)
        else:
            for w in conns:
                w.write(frame)
            await asyncio.gather(*(w.drain() for w in conns))
        sent += n
    q.put(("done", sent, late, time.time()))
    await asyncio.sleep(1.5)  # the server counts what it took before the streams close
    for c in conns:
        if transport == "audiosocket":
            c.write(struct.pack(">BH", 0x00, 0))
            c.close()
        else:
            await c.close()


def stream_sender(
    transport: str, target: Any, n: int, seconds: float, cpu: int | None, q: Any
) -> None:
    """The PBX side: n streams of one leg each, a frame per stream every 20 ms."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    asyncio.run(_stream_sender(transport, target, n, seconds, q))


def run_stream(transport: str, n: int, seconds: float, pin: bool) -> dict[str, Any]:
    """One measurement with n streams of `transport`."""
    import uvicorn

    from app.api import create_app
    from pipeline.ingest import l16, twilio
    from pipeline.ingest.audiosocket import audiosocket_of
    from pipeline.ingest.receiver import ingest_of

    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="bench-ingest-")),
        auth_enabled=False,
        live={"rtp_timeout_s": 600},
        audiosocket={"port": 0, "tenant": "bench"},
    )
    services = build_services(settings)
    ingest_of(services)
    server = None
    if transport == "audiosocket":
        listener = audiosocket_of(services)
        listener.start()
        target: Any = listener.port
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        app = create_app(services, [twilio.router, l16.router])
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        target = f"ws://127.0.0.1:{port}"
    drain = BusDrain(services)
    q: mp.Queue = mp.Queue()
    p = mp.Process(
        target=stream_sender, args=(transport, target, n, seconds, 1 if pin else None, q)
    )
    p.start()
    _, start_at = q.get(timeout=120)
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    accepted0 = services.metrics.total("rtp_packets_total")
    _, sent, late, last_sent = q.get(timeout=seconds + 120)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    time.sleep(1.0)
    accepted = services.metrics.total("rtp_packets_total") - accepted0
    p.join(60)
    drain.stop()
    if server is not None:
        server.should_exit = True
    services.close()
    return {
        "legs": n,
        "sent": sent,
        "accepted": accepted,
        "published_packets": drain.samples / 160,
        "loss_pct": 100 * (1 - accepted / sent) if sent else 0.0,
        "cpu_pct": 100 * cpu / wall,
        "cpu_us_per_packet": 1e6 * cpu / max(accepted, 1),
        "sender_late_ms": late * 1000,
        "behind_ms": max(0.0, drain.taken_at - last_sent) * 1000,
        "drops": [],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--transport", default="rtp", choices=("rtp", "twilio", "l16", "audiosocket"))
    ap.add_argument("--legs", default="250,500,750,1000,1250")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-pin", action="store_true", help="do not pin to cores 0 and 1")
    args = ap.parse_args()
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {0})
    print(f"transport {args.transport}, {args.seconds:g} s per run")
    print(
        f"{'legs':>6} {'sent':>9} {'accepted':>9} {'on bus':>9} {'loss %':>7} "
        f"{'ingest CPU %':>12} {'CPU us/pkt':>10} {'sender late ms':>14} {'behind ms':>9}"
    )
    best = 0
    for n in [int(x) for x in args.legs.split(",")]:
        if args.transport == "rtp":
            r = {**run(n, args.seconds, pin), "behind_ms": float("nan")}
        else:
            r = run_stream(args.transport, n, args.seconds, pin)
        print(
            f"{r['legs']:>6} {r['sent']:>9.0f} {r['accepted']:>9.0f} "
            f"{r['published_packets']:>9.0f} {r['loss_pct']:>7.3f} {r['cpu_pct']:>12.1f} "
            f"{r['cpu_us_per_packet']:>10.1f} "
            f"{r['sender_late_ms']:>14.1f} {r['behind_ms']:>9.0f}  {' '.join(r['drops'])}",
            flush=True,
        )
        if r["loss_pct"] < 0.1:
            best = max(best, n)
    print(f"largest leg count forwarded with < 0.1% loss: {best}")


if __name__ == "__main__":
    main()
