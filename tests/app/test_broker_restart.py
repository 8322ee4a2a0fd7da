"""A Kafka broker that goes away mid-run and comes back: nothing accepted is lost.

The broker (tansu) keeps its log in an S3 bucket, so it can be stopped and started again
on the same port as a real cluster's broker restarts. A recording is accepted (202); the
broker is killed as soon as the batch worker starts transcribing it, so the finals it
emits meet no broker; an upload sent meanwhile is refused with 503 and Retry-After (not
accepted, nothing half-queued); the worker finishes and emits its finals into the outage;
the broker comes back; the producer's retries (or, past them, the workers' rejoin from
their last commit) deliver them: every final of the accepted recording is indexed.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio

from app.api import create_app
from app.roles import start_role
from app.services import build_services
from pipeline.auth import keys_of
from pipeline.catalog import load_manifest
from pipeline.config import Settings
from pipeline.services import Services
from recordings.index import index_of
from sim.tansu import start_tansu


class Broker:
    """A tansu broker on a fixed port whose log lives in an S3 bucket."""

    def __init__(self, port: int, s3_endpoint: str, bucket: str, log: Path) -> None:
        self.port, self.s3 = port, (s3_endpoint, bucket)
        self.log = log.open("ab")
        self.proc: Any = None

    def start(self, wait_port: Callable[..., None]) -> None:
        self.proc = start_tansu(self.port, self.log, s3=self.s3)
        wait_port(self.port, 30, self.proc)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        self.log.close()


@pytest.fixture
def broker(
    s3_endpoint: str, unused_port: int, tmp_path: Path, port_waiter: Callable[..., None]
) -> Iterator[Broker]:
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    Minio(s3_endpoint, access_key="test", secret_key="test", secure=False).make_bucket(bucket)
    b = Broker(unused_port, s3_endpoint, bucket, tmp_path / "tansu.log")
    b.start(port_waiter)
    yield b
    b.close()


@pytest.fixture
def restart_services(
    distributed_settings: Settings, broker: Broker, request: pytest.FixtureRequest
) -> Iterator[Services]:
    kafka = distributed_settings.kafka.model_copy(
        update={"bootstrap": f"127.0.0.1:{broker.port}", "publish_timeout_s": 3.0}
    )
    svc = build_services(distributed_settings.model_copy(update={"kafka": kafka}))
    # the session's models, as the other tests share them
    svc.component("whisper", lambda: request.getfixturevalue("whisper_model"))
    yield svc
    svc.close()


def test_a_broker_restart_loses_no_accepted_recording_and_no_final(
    restart_services: Services,
    broker: Broker,
    ulaw_stereo_wav: bytes,
    port_waiter: Callable[..., None],
    eventually: Callable[[Callable[[], bool], float, str], None],
) -> None:
    svc = restart_services
    stop = threading.Event()
    threads = start_role(svc, "batch", stop) + start_role(svc, "index", stop)
    key = keys_of(svc).create("acme", "admin")
    auth = {"Authorization": f"Bearer {key}"}
    form = {"channels": "agent,customer", "language": "en"}
    wav = ("call.wav", ulaw_stereo_wav, "audio/wav")

    def upload(client: TestClient, call_id: str) -> Any:
        data = {**form, "call_id": call_id}
        return client.post("/v1/recordings", files={"file": wav}, data=data, headers=auth)

    try:
        with TestClient(create_app(svc)) as client:
            r = client.post(
                "/v1/recordings",
                files={"file": wav},
                data={**form, "call_id": "kept"},
                headers=auth,
            )
            assert r.status_code == 202, r.text

            def status(call_id: str) -> str | None:
                m = load_manifest(svc.store, "acme", call_id)
                return None if m is None else m.status

            eventually(lambda: status("kept") == "running", 60, "the batch worker took the job")
            broker.kill()  # mid-transcription: its finals will meet no broker

            r = client.post(
                "/v1/recordings",
                files={"file": wav},
                data={**form, "call_id": "late"},
                headers=auth,
            )
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            health = client.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            assert health.json()["services"]["kafka"].startswith("down: ")
            assert health.json()["services"]["s3"] == "ok"
            assert "job queue (Kafka)" in r.json()["detail"]
            late = load_manifest(svc.store, "acme", "late")
            assert late is not None and late.status == "failed" and late.error

            def indexed() -> set[str]:
                return {u.utterance_id for u in index_of(svc).call_utterances("acme", "kept")}

            # The worker finishes the job while the broker is away: its finals go out into
            # the outage (sent, not yet acknowledged) and none can have been indexed.
            eventually(
                lambda: svc.metrics.value("events_out_total", worker="batch", type="utterance") > 0,
                120,
                "the batch worker emitted its finals",
            )
            assert indexed() == set()
            broker.start(port_waiter)

            eventually(lambda: status("kept") == "transcribed", 180, "the accepted recording done")
            manifest = load_manifest(svc.store, "acme", "kept")
            assert manifest is not None and manifest.transcript_key
            doc = json.loads(svc.store.get(manifest.transcript_key))
            emitted = {u["utterance_id"] for u in doc["utterances"]}
            assert emitted

            eventually(lambda: indexed() == emitted, 60, "every final of the call indexed")
            # the refused upload, sent again once the broker is back, is taken
            r = client.post(
                "/v1/recordings",
                files={"file": wav},
                data={**form, "call_id": "late"},
                headers=auth,
            )
            assert r.status_code == 202, r.text
    finally:
        stop.set()
        for t in threads:
            t.join(30)
