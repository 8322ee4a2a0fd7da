"""RTP ingest capacity: how many PCMU legs at 50 packets/s one core forwards to the bus.

For each leg count N, a sender process (pinned to the other core) sends 20 ms PCMU
packets to N registered legs on loopback, paced in real time; the ingest (this process,
pinned to one core, its UDP loop in one thread) parses, jitter-buffers, batches and
publishes MediaChunks to the in-process bus, where a tailing consumer reads them.
Loss = 1 - packets the ingest took in (each then published in a chunk) / packets sent;
"on bus" is the audio published, in 20 ms packets (concealment included). Run:

    python bench/ingest.py --legs 250,500,750,1000,1250 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from app.services import build_services
from pipeline.config import Settings
from pipeline.events import CallStarted, LegInfo
from pipeline.ingest.receiver import RtpIngest

PORT_MIN = 40000


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
    stop = threading.Event()
    samples = [0]

    def drain() -> None:
        c = services.bus.consumer([services.topics.media], "bench", from_beginning=False)
        while True:
            msgs = c.poll(0.2, 100_000)
            for m in msgs:
                samples[0] += (len(m.value) - 4 - int.from_bytes(m.value[:4], "big")) // 2
            if stop.is_set() and not msgs:
                break
        c.close()

    d = threading.Thread(target=drain, daemon=True)
    d.start()
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
    stop.set()
    d.join(10)
    ingest.close()
    services.close()
    published_packets = samples[0] / 160
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--legs", default="250,500,750,1000,1250")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-pin", action="store_true", help="do not pin to cores 0 and 1")
    args = ap.parse_args()
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {0})
    print(
        f"{'legs':>6} {'sent':>9} {'accepted':>9} {'on bus':>9} {'loss %':>7} "
        f"{'ingest CPU %':>12} {'CPU us/pkt':>10} {'sender late ms':>14}"
    )
    best = 0
    for n in [int(x) for x in args.legs.split(",")]:
        r = run(n, args.seconds, pin)
        print(
            f"{r['legs']:>6} {r['sent']:>9.0f} {r['accepted']:>9.0f} "
            f"{r['published_packets']:>9.0f} {r['loss_pct']:>7.3f} {r['cpu_pct']:>12.1f} "
            f"{r['cpu_us_per_packet']:>10.1f} "
            f"{r['sender_late_ms']:>14.1f}  {' '.join(r['drops'])}",
            flush=True,
        )
        if r["loss_pct"] < 0.1:
            best = max(best, n)
    print(f"largest leg count forwarded with < 0.1% loss: {best}")


if __name__ == "__main__":
    main()
