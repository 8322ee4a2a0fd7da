"""Webhooks end to end on the embedded app: registered through the API, events from the
bus written as deliveries by the `webhooks` stage, posted by the sender to a real HTTP
endpoint, signed, retried with backoff, and logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.config import Settings
from pipeline.events import CallEnded, Hint, HintTrigger, TranscriptReady
from pipeline.services import Services
from pipeline.webhooks.delivery import Sender, WebhookStage, sign, url_refusal
from pipeline.worker import WorkerRunner


class Endpoint:
    """A receiver on 127.0.0.1 that records each POST and answers the next status of
    `answers[event type]` (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.times: list[float] = []
        self.answers: dict[str, list[int]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                outer.times.append(time.monotonic())
                queued = outer.answers.get(self.headers["Callpipe-Event"], [])
                status = queued.pop(0) if queued else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < n:
            assert time.monotonic() < deadline, f"{len(self.received)} of {n} deliveries came"
            time.sleep(0.05)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Quick retries, and the test's endpoint on loopback allowed."""
    return settings.model_copy(
        update={
            "webhooks": settings.webhooks.model_copy(
                update={"allow_private": True, "base_delay_s": 0.2, "max_attempts": 3}
            )
        }
    )


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.server.shutdown()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services))


@pytest.fixture
def admin(services: Services) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys_of(services).create('acme', 'admin')}"}


@pytest.fixture
def senders(services: Services) -> Iterator[None]:
    """Two senders on the one database, as two hosts would run."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=Sender(services).run, args=(stop,), daemon=True) for _ in range(2)
    ]
    for t in threads:
        t.start()
    yield
    stop.set()
    for t in threads:
        t.join(10)


def _ready(tenant: str = "acme", call_id: str = "c-1") -> TranscriptReady:
    return TranscriptReady(
        tenant=tenant,
        call_id=call_id,
        json_uri="file:///secret/path.json",
        vtt_uri="file:///secret/path.vtt",
        utterances=12,
        duration=61.5,
        language="fr",
    )


def _deliver(services: Services, publish: Callable[..., None], *events: Any) -> None:
    runner = WorkerRunner(WebhookStage(services), services.bus, services.topics, services.metrics)
    publish(services, *events)
    runner.run_once()


def _settled_log(client: TestClient, admin: dict[str, str], webhook_id: str) -> list[Any]:
    """The webhook's delivery log once nothing in it is pending (the endpoint sees an
    attempt just before the sender records it)."""
    deadline = time.monotonic() + 10
    while True:
        log = client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=admin).json()
        if log and all(d["status"] != "pending" for d in log):
            return list(log)
        assert time.monotonic() < deadline, log
        time.sleep(0.05)


def test_events_reach_the_endpoint_signed_after_retries_and_are_logged(
    services: Services,
    client: TestClient,
    admin: dict[str, str],
    endpoint: Endpoint,
    senders: None,
    publish_events: Callable[..., None],
) -> None:
    r = client.post(
        "/v1/webhooks",
        json={"url": endpoint.url, "events": ["transcript.ready", "hint"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    # another tenant's webhook hears nothing of acme's calls
    rival_key = keys_of(services).create("rival", "admin")
    other = Endpoint()
    client.post(
        "/v1/webhooks",
        json={"url": other.url, "events": ["transcript.ready", "call.ended", "hint"]},
        headers={"Authorization": f"Bearer {rival_key}"},
    )
    endpoint.answers = {"transcript.ready": [500, 503]}  # its first two attempts fail
    hint = Hint(
        tenant="acme",
        call_id="c-1",
        agent_id="a-7",
        hint_id="h-1",
        kind="compliance",
        title="Mention the recording",
        text="Say the call is recorded.",
        trigger=HintTrigger(rule="recording-notice"),
    )
    ended = CallEnded(tenant="acme", call_id="c-1", reason="hangup")
    _deliver(services, publish_events, _ready(), ended, hint, _ready())  # one given twice
    endpoint.wait_for(4)  # 3 attempts of the transcript, 1 of the hint
    time.sleep(0.5)  # nothing more comes: the duplicate and call.ended are not sent
    assert len(endpoint.received) == 4 and other.received == []

    by_type: dict[str, list[tuple[dict[str, str], bytes]]] = {}
    for headers, body in endpoint.received:
        by_type.setdefault(headers["callpipe-event"], []).append((headers, body))
    assert sorted(by_type) == ["hint", "transcript.ready"]
    for headers, body in endpoint.received:
        # the receiver's check: HMAC-SHA256 of "<t>.<body>" with the secret
        fields = dict(part.split("=", 1) for part in headers["callpipe-signature"].split(","))
        expected = hmac.new(
            secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(fields["v1"], expected)
        assert abs(int(fields["t"]) - time.time()) < 60
    attempts = by_type["transcript.ready"]
    assert len({h["callpipe-delivery"] for h, _ in attempts}) == 1  # one delivery, retried
    doc = json.loads(attempts[-1][1])
    assert (doc["type"], doc["tenant"], doc["call_id"]) == ("transcript.ready", "acme", "c-1")
    assert doc["data"]["transcript_url"] == "/v1/calls/c-1/transcript"
    assert doc["data"]["utterances"] == 12 and "secret" not in attempts[-1][1].decode()
    hint_doc = json.loads(by_type["hint"][0][1])
    assert hint_doc["data"]["trigger"]["rule"] == "recording-notice"

    log = _settled_log(client, admin, hook["webhook_id"])
    by_event = {d["event_type"]: d for d in log}
    assert set(by_event) == {"transcript.ready", "hint"}
    assert by_event["transcript.ready"]["status"] == "delivered"
    assert by_event["transcript.ready"]["attempts"] == 3
    assert by_event["transcript.ready"]["last_status"] == 200
    assert by_event["hint"]["attempts"] == 1
    other.server.shutdown()


def test_an_endpoint_that_keeps_failing_is_given_up_with_the_reason(
    services: Services,
    client: TestClient,
    admin: dict[str, str],
    endpoint: Endpoint,
    senders: None,
    publish_events: Callable[..., None],
) -> None:
    hook = client.post(
        "/v1/webhooks", json={"url": endpoint.url, "events": ["call.ended"]}, headers=admin
    ).json()
    endpoint.answers = {"call.ended": [500, 500, 500, 500]}
    _deliver(services, publish_events, CallEnded(tenant="acme", call_id="c-9"))
    endpoint.wait_for(3)
    (d,) = _settled_log(client, admin, hook["webhook_id"])
    assert (d["status"], d["attempts"], d["last_error"]) == ("failed", 3, "HTTP 500")
    assert d["next_attempt_at"] is None and len(endpoint.received) == 3
    # the backoff doubles: 0.2 s before the second attempt, 0.4 s before the third
    first, second, third = endpoint.times
    assert second - first >= 0.2 and third - second >= 0.4


def test_registration_is_checked(
    services: Services, client: TestClient, admin: dict[str, str]
) -> None:
    pbx = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    body = {"url": "https://example.com/hook", "events": ["hint"]}
    assert client.post("/v1/webhooks", json=body, headers=pbx).status_code == 403
    r = client.post("/v1/webhooks", json={**body, "events": ["everything"]}, headers=admin)
    assert r.status_code == 422
    r = client.post("/v1/webhooks", json={**body, "url": "ftp://example.com/x"}, headers=admin)
    assert r.status_code == 422 and "http:// or https://" in r.json()["detail"]
    services.settings.webhooks.allow_private = False
    strict = TestClient(create_app(services))
    r = strict.post("/v1/webhooks", json={**body, "url": "http://10.0.0.5/x"}, headers=admin)
    assert r.status_code == 422 and "inside the deployment's network" in r.json()["detail"]
    assert client.delete("/v1/webhooks/wh_nope", headers=admin).status_code == 404
    assert client.get("/v1/webhooks/wh_nope/deliveries", headers=admin).status_code == 404


def test_private_addresses_are_refused_unless_allowed() -> None:
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest"):
        reason = url_refusal(url, allow_private=False)
        assert reason and "inside the deployment's network" in reason, url
        assert url_refusal(url, allow_private=True) is None
    assert "cannot resolve" in (url_refusal("https://no-such-host.invalid/x", False) or "")
    # registering checks only what the URL says (a name is resolved at each delivery)
    assert url_refusal("https://no-such-host.invalid/x", False, resolve=False) is None
    assert url_refusal("http://127.0.0.1/x", False, resolve=False)


def test_signature_is_stripes_scheme() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("whsec_k", 1_700_000_000, body) == f"t=1700000000,v1={expected}"
