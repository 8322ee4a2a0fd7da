"""Soak: does `callpipe serve` give back what each call and upload takes?

Starts `callpipe serve` (embedded) in its own process on a fresh data folder, then runs
`--calls` simulated calls (`--concurrency` at a time: both legs as real RTP in real time, a
short two-line script, registered and hung up over HTTP) and `--uploads` recordings
(5 s WAVs, POST /v1/recordings, each waited for until transcribed). After `--warmup` of
each, it reads the server's resident memory, open file descriptors and threads from
/proc, and again at the end after the server went idle; prints the growth. The issue's
target: RSS after warm-up grows < 20 MB in all, no descriptor or thread growth.

    python bench/soak.py [--calls 200] [--uploads 200] [--concurrency 2] [--warmup 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from models.piper import load_voice
from pipeline.auth import KEYS_SCHEMA, KeyStore
from pipeline.config import Settings
from pipeline.database import open_database
from pipeline.media.audio_file import write_wav
from sim.pbx import parse_script, render_script, simulate_call

SCRIPT = {
    "agent_id": "agent-1",
    "lines": [
        {"speaker": "agent", "text": "Good morning, how can I help you?", "pause": 0.4},
        {"speaker": "customer", "text": "I would like to check my last invoice.", "pause": 0.4},
    ],
}


def proc_stats(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, open descriptors, threads) of a process."""
    rss_kb = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_transcribed(http: httpx.Client, call_id: str, timeout_s: float = 120.0) -> None:
    """Until the recording's transcript can be read (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http.get(f"/v1/calls/{call_id}/transcript").status_code == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{call_id} was not transcribed in {timeout_s} s")


def settle(pid: int, seconds: float = 35.0) -> tuple[float, int, int]:
    """The server's figures once it has been idle for `seconds`: past the 30 s for which
    a finished call's RTP sockets stay bound (pipeline/ingest/ports.py)."""
    time.sleep(seconds)
    return proc_stats(pid)


def main() -> None:
    """Run the soak and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20, help="calls and uploads before the baseline")
    args = ap.parse_args()

    data = Path(tempfile.mkdtemp(prefix="soak-")) / "data"
    data.mkdir()
    port = free_port()
    env = {**os.environ, "CALLPIPE_PORT": str(port), "CALLPIPE_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--data", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        keys = KeyStore(open_database(Settings(data_dir=data), "keys", KEYS_SCHEMA))
        pbx, analyst = keys.create("soak", "pbx"), keys.create("soak", "analyst")
        voice = load_voice(None)
        rendered = render_script(parse_script(SCRIPT), voice)
        pause = np.zeros(8000, np.float32)
        speech = np.concatenate([pause, rendered.legs["customer"].astype(np.float32) / 32768])
        wav = write_wav([speech[: 5 * 8000]], 8000)
        uploads = 0
        up_lock = threading.Lock()

        def upload_some(n: int) -> None:
            nonlocal uploads
            with (
                httpx.Client(base_url=api, headers={"Authorization": f"Bearer {pbx}"}) as up,
                httpx.Client(base_url=api, headers={"Authorization": f"Bearer {analyst}"}) as rd,
            ):
                for _ in range(n):
                    with up_lock:
                        uploads += 1
                        call_id = f"up-{uploads}"
                    r = up.post(
                        "/v1/recordings",
                        files={"file": ("r.wav", wav, "audio/wav")},
                        data={"call_id": call_id, "language": "en"},
                    )
                    r.raise_for_status()
                    wait_transcribed(rd, call_id)

        def call_some(n: int) -> None:
            for _ in range(n):
                simulate_call(api, parse_script(SCRIPT), rendered=rendered, key=pbx)

        def run(calls: int, ups: int) -> float:
            began = time.monotonic()
            per = [
                calls // args.concurrency + (i < calls % args.concurrency)
                for i in range(args.concurrency)
            ]
            threads = [threading.Thread(target=call_some, args=(k,)) for k in per]
            threads.append(threading.Thread(target=upload_some, args=(ups,)))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.monotonic() - began

        first = proc_stats(server.pid)
        took = run(args.warmup, args.warmup)
        base = settle(server.pid)
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(f"# {now}; start: RSS {first[0]:.0f} MB, {first[1]} fds, {first[2]} threads")
        print(
            f"after warm-up ({args.warmup} calls + {args.warmup} uploads, {took:.0f} s): "
            f"RSS {base[0]:.1f} MB, {base[1]} fds, {base[2]} threads",
            flush=True,
        )
        took = run(args.calls - args.warmup, args.uploads - args.warmup)
        end = settle(server.pid)
        print(
            f"after {args.calls} calls + {args.uploads} uploads ({took:.0f} s more): RSS "
            f"{end[0]:.1f} MB, {end[1]} fds, {end[2]} threads"
        )
        print(
            f"growth after warm-up: RSS {end[0] - base[0]:+.1f} MB "
            f"({(end[0] - base[0]) / max(1, args.calls - args.warmup) * 1000:+.0f} kB per call "
            f"and upload), fds {end[1] - base[1]:+d}, threads {end[2] - base[2]:+d}"
        )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
