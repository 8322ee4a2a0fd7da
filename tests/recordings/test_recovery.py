"""Embedded mode across a crash: `callpipe serve` is killed (SIGKILL) with three recordings
accepted and a live call in progress; after a restart on the same data folder the three
transcripts exist, and the live call is closed with its recording and transcript."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pipeline.auth import KEYS_SCHEMA, KeyStore
from pipeline.config import Settings
from pipeline.database import open_database
from pipeline.media.audio_file import write_wav
from pipeline.media.resample import float_to_int16

LINES = [
    "Hello, I am calling about my invoice from last month.",
    "Could you please send me a copy of my contract?",
    "I would like to change the date of my appointment.",
]


class Server:
    """`callpipe serve` in its own process, on a data folder that outlives it."""

    def __init__(self, data: Path, port: int, rtp_low: int, wait_port: Callable[..., None]) -> None:
        self.data, self.port, self._wait_port = data, port, wait_port
        self.env = {
            **os.environ,
            "CALLPIPE_PORT": str(port),
            "CALLPIPE_LIVE__RTP_PORT_MIN": str(rtp_low),
            "CALLPIPE_LIVE__RTP_PORT_MAX": str(rtp_low + 20),
            "CALLPIPE_LOG_LEVEL": "WARNING",
            "CALLPIPE_AUDIOSOCKET__PORT": "0",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--data", str(self.data)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_port(self.port, 90.0, self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def server(tmp_path: Path, unused_port: int, port_waiter: Callable[..., None]) -> Iterator[Server]:
    rtp_low = 40000 + 2 * int(np.random.default_rng().integers(0, 5000))
    s = Server(tmp_path / "data", unused_port, rtp_low, port_waiter)
    s.data.mkdir()
    try:
        yield s
    finally:
        s.stop()


def manifest(data: Path, call_id: str) -> dict[str, Any]:
    return json.loads((data / "objects" / "acme" / "calls" / f"{call_id}.json").read_text())


def wait_for(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    return False


def test_kill_9_loses_no_accepted_recording_and_closes_the_live_call(
    server: Server, speak: Callable[..., np.ndarray]
) -> None:
    from sim.pbx import send_leg

    server.start()
    keys = KeyStore(open_database(Settings(data_dir=server.data), "keys", KEYS_SCHEMA))
    pbx = keys.create("acme", "pbx")
    api = f"http://127.0.0.1:{server.port}"
    auth = {"Authorization": f"Bearer {pbx}"}
    pause = np.zeros(8000, np.float32)
    with httpx.Client(base_url=api, headers=auth, timeout=30) as http:
        # a live call: 14 s of speech, cut by the crash after 12 s (one 10 s part stored)
        r = http.post(
            "/v1/calls",
            json={
                "call_id": "live-1",
                "language": "en",
                "record": True,
                "legs": [{"leg": "customer"}],
            },
        )
        assert r.status_code == 201, r.text
        port = r.json()["legs"][0]["port"]
        speech = np.concatenate([pause, *(np.concatenate([speak(t, 8000), pause]) for t in LINES)])
        speech = np.concatenate([speech, np.zeros(max(0, 14 * 8000 - len(speech)), np.float32)])
        stop = threading.Event()
        sender = threading.Thread(
            target=send_leg,
            args=(float_to_int16(speech), "127.0.0.1", port),
            kwargs={"stop": stop},
            daemon=True,
        )
        sender.start()
        time.sleep(9.0)
        # three recordings accepted while the call goes on
        for i, text in enumerate(LINES):
            wav = write_wav([np.concatenate([pause, speak(text, 8000), pause])], 8000)
            r = http.post(
                "/v1/recordings",
                files={"file": ("r.wav", wav, "audio/wav")},
                data={"call_id": f"rec-{i}", "language": "en"},
            )
            assert r.status_code == 202, r.text
            body = r.json()
            assert body.pop("job_url") == f"/v1/jobs/rec-{i}"
            assert "/" not in json.dumps(body).replace("\\/", ""), body  # no store paths
        time.sleep(max(0.0, 12.0 - 9.0 - 0.5))
    server.kill()
    stop.set()
    sender.join(5)
    statuses = {f"rec-{i}": manifest(server.data, f"rec-{i}")["status"] for i in range(3)}
    assert manifest(server.data, "live-1")["status"] == "live"
    assert any(s != "transcribed" for s in statuses.values()), statuses  # killed mid-work

    server.start()
    assert wait_for(
        lambda: all(
            manifest(server.data, c)["status"] == "transcribed"
            for c in ["rec-0", "rec-1", "rec-2", "live-1"]
        ),
        120,
    ), {c: manifest(server.data, c) for c in ["rec-0", "rec-1", "rec-2", "live-1"]}
    analyst = keys.create("acme", "analyst")
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {analyst}"}) as http:
        for i, text in enumerate(LINES):
            r = http.get(f"/v1/calls/rec-{i}/transcript", params={"format": "txt"})
            assert r.status_code == 200 and text.split()[-1].strip(".?") in r.text, r.text
        r = http.get("/v1/calls/live-1/transcript")
        assert r.status_code == 200, r.text
        assert r.json()["utterances"], r.json()  # the finals emitted before the crash
    live = manifest(server.data, "live-1")
    assert live["end_reason"] == "restart" and live["recording_key"]
    recording = server.data / "objects" / live["recording_key"]
    assert recording.stat().st_size > 16000 * 2 * 2 * 9  # >= 9 s of 16 kHz stereo
    # the PBX's hang-up after the restart is answered, not refused
    r = httpx.post(f"{api}/v1/calls/live-1/hangup", headers=auth)
    assert r.status_code == 200 and r.json()["ended_by"] == "restart", r.text
