"""Two API processes and two index workers, each with a data dir of its own (as on separate
hosts), on one PostgreSQL, one Kafka broker and one S3 server: they agree.

A key made by the CLI on a third "host" works on both APIs; a call registered with the
ingest host streams the same line to live-view WebSockets on both APIs; a policy and
scenario put through one API are read by the other; final utterances published once are
indexed by the index workers and found through both APIs; robot calls placed alternately
through the two APIs stop at the fourth to one callee (one transaction in PostgreSQL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from app.cli import main
from pipeline.bus.kafka import KafkaBus
from pipeline.config import Settings
from pipeline.events import Event, Hint, Utterance
from pipeline.topics import Topics

ALWAYS = {"weekdays": [0, 1, 2, 3, 4, 5, 6], "windows": ["00:00-24:00"], "public_holidays": False}
SCENARIO = """
name: quick
steps:
  - {id: bye, say: "Goodbye.", hangup: done}
"""
CALLEE = "+33611111111"


@pytest.fixture
def cluster_env(
    distributed_settings: Settings, postgres_url: str, tmp_path: Path
) -> dict[str, str]:
    """The environment every process of the cluster shares (no data dir: each has its own)."""
    s = distributed_settings
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CALLPIPE_")},
        "CALLPIPE_TOPIC_PREFIX": s.topic_prefix,
        "CALLPIPE_KAFKA__BOOTSTRAP": s.kafka.bootstrap,
        "CALLPIPE_KAFKA__SESSION_TIMEOUT_MS": "2000",
        "CALLPIPE_KAFKA__HEARTBEAT_INTERVAL_MS": "300",
        "CALLPIPE_KAFKA__PARTITIONS": "3",
        "CALLPIPE_S3__ENDPOINT": s.s3.endpoint,
        "CALLPIPE_S3__BUCKET": s.s3.bucket,
        "CALLPIPE_S3__ACCESS_KEY": "test",
        "CALLPIPE_S3__SECRET_KEY": "test",
        "CALLPIPE_DATABASE__URL": postgres_url,
        "CALLPIPE_LIVE__RTP_PORT_MIN": "31000",
        "CALLPIPE_LIVE__RTP_PORT_MAX": "31999",
    }


@pytest.fixture
def start(
    cluster_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[Any]]]:
    """`start(name, *worker_args)`: `callpipe worker ...` as a process with its own data dir."""
    procs: list[subprocess.Popen[Any]] = []

    def run(name: str, *args: str) -> subprocess.Popen[Any]:
        data = tmp_path / name
        data.mkdir()
        env = {**cluster_env, "CALLPIPE_DATA_DIR": str(data), "CALLPIPE_AUDIOSOCKET__PORT": "0"}
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        procs.append(proc)
        return proc

    yield run
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports nobody listens on (all bound at once, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def heard_on_both(
    urls: list[str], producer: Any, topic: str, event: Callable[[int], Event]
) -> list[set[str]]:
    """The `text` of every message each WebSocket receives while events are published.

    Each replica's hub reads only new records, from when it has joined: an event a second
    until every socket has heard one."""
    heard: list[set[str]] = [set() for _ in urls]
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(url, open_timeout=30)) for url in urls]
        deadline = time.monotonic() + 30
        k = 0
        while not all(heard) and time.monotonic() < deadline:
            ev = event(k)
            producer.send(topic, ev.key, ev.encode())
            producer.flush(10)
            k += 1
            for i, ws in enumerate(sockets):
                with contextlib.suppress(TimeoutError):
                    while True:
                        msg = json.loads(ws.recv(timeout=0.5))
                        if "text" in msg:  # not the hint stream's hello
                            heard[i].add(msg["text"])
    return heard


def test_two_apis_and_two_workers_agree(
    start: Callable[..., subprocess.Popen[Any]],
    cluster_env: dict[str, str],
    distributed_settings: Settings,
    port_waiter: Callable[..., None],
    eventually: Callable[[Callable[[], bool], float, str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    *ports, ingest_port = free_ports(3)
    apis = [start(f"api{i}", "api", "--port", str(p)) for i, p in enumerate(ports)]
    ingest = start("ingest", "ingest", "--port", str(ingest_port))
    for i in range(2):
        start(f"index{i}", "index")
    for proc, port in [*zip(apis, ports, strict=True), (ingest, ingest_port)]:
        port_waiter(port, 60, proc)
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    # The ingest says where each transport reaches it (AudioSocket on the free port it got).
    started = (tmp_path / "ingest.log").read_text()
    assert re.search(r"RTP on UDP \d+-\d+, AudioSocket on TCP 127\.0\.0\.1:[1-9]\d*", started)

    # A key made on a third host (the CLI, with its own data dir) works on both APIs.
    for name, value in cluster_env.items():
        if name.startswith("CALLPIPE_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("CALLPIPE_DATA_DIR", str(tmp_path / "cli"))
    capsys.readouterr()
    assert main(["keys", "create", "--tenant", "acme", "--role", "admin"]) == 0
    auth = {"Authorization": f"Bearer {capsys.readouterr().out.strip()}"}
    for base in bases:
        assert httpx.get(f"{base}/v1/calls", headers=auth).status_code == 200
        health = httpx.get(f"{base}/healthz").json()
        assert health["services"] == {"kafka": "ok", "s3": "ok", "database": "ok"}

    bus = KafkaBus(distributed_settings.kafka)
    producer = bus.producer()
    topic = Topics(distributed_settings.topic_prefix).transcripts

    # A call registered with the ingest host (its RTP ports); its live view on either API
    # replica streams the same lines (each replica's hub reads every transcript line).
    legs = [{"leg": "agent"}, {"leg": "customer"}]
    r = httpx.post(
        f"http://127.0.0.1:{ingest_port}/v1/calls",
        json={"call_id": "live-call", "legs": legs},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert all(31000 <= leg["port"] <= 31999 for leg in r.json()["legs"])
    r = httpx.post(f"{bases[0]}/v1/calls", json={"legs": legs}, headers=auth)
    assert r.status_code == 421 and "ingest host" in r.json()["detail"]
    key = auth["Authorization"].split()[1]
    topics = Topics(distributed_settings.topic_prefix)

    def line(k: int) -> Event:
        return Utterance(
            tenant="acme",
            call_id="live-call",
            leg="agent",
            utterance_id=f"live-{k}",
            start=float(k),
            end=k + 0.5,
            text="Bonjour, je vous écoute",
            source="live",
        )

    def hint(k: int) -> Event:
        return Hint(
            tenant="acme",
            call_id="live-call",
            agent_id="a-1",
            hint_id=f"h-{k}",
            kind="script",
            title="Accueil",
            text="Proposez le rappel",
        )

    heard = heard_on_both(
        [f"ws://127.0.0.1:{p}/v1/calls/live-call/live?key={key}" for p in ports],
        producer,
        topics.transcripts,
        line,
    )
    assert heard == [{"Bonjour, je vous écoute"}] * 2
    heard = heard_on_both(
        [f"ws://127.0.0.1:{p}/v1/agents/a-1/hints?key={key}" for p in ports],
        producer,
        topics.hints,
        hint,
    )
    assert heard == [{"Proposez le rappel"}] * 2

    # Final utterances, published once as the live worker does, are indexed by the workers
    # and found through either API.
    for i, text in enumerate(["Je voudrais résilier mon contrat", "Bien sûr, je regarde"]):
        utt = Utterance(
            tenant="acme",
            call_id="shared-call",
            leg="customer" if i == 0 else "agent",
            utterance_id=f"u{i}",
            start=float(i),
            end=float(i) + 1,
            text=text,
            source="live",
        )
        producer.send(topic, utt.call_id, utt.encode())
    producer.flush(10)
    bus.close()

    def found_on(base: str) -> bool:
        r = httpx.get(f"{base}/v1/search", params={"q": "resilier contrat"}, headers=auth)
        return r.status_code == 200 and [h["utterance_id"] for h in r.json()["hits"]] == ["u0"]

    for base in bases:
        eventually(partial(found_on, base), 60, f"the utterance found through {base}")

    # Policy and scenario put through one API; robot calls placed alternately through both:
    # the fifth to one callee is refused whichever API it reaches.
    assert httpx.put(f"{bases[0]}/v1/robot/policy", json=ALWAYS, headers=auth).status_code == 200
    r = httpx.put(f"{bases[1]}/v1/robot/scenarios/quick", content=SCENARIO, headers=auth)
    assert r.status_code in (200, 201), r.text
    media = {"host": "127.0.0.1", "port": 9}  # the discard port: nobody answers
    body = {
        "scenario": "quick",
        "media": media,
        "callee": CALLEE,
        "caller_id": "+33123456789",
        "sector": "insurance",
    }
    statuses = [
        httpx.post(f"{bases[i % 2]}/v1/robot/calls", json=body, headers=auth, timeout=60)
        for i in range(5)
    ]
    assert [s.status_code for s in statuses] == [201, 201, 201, 201, 403], statuses[-1].text
    assert statuses[-1].json()["detail"]["rule"] == "frequency"
    audit = httpx.get(f"{bases[1]}/v1/robot/audit", headers=auth).json()
    assert sum(1 for e in audit if e["kind"] == "call" and not e["allowed"]) == 1
