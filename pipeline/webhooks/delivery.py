"""From the bus to the tenants' endpoints: the `webhooks` stage writes a pending delivery
per event and webhook; the sender thread posts the due ones, signed, and retries a
failure with exponential backoff until `webhooks.max_attempts`.

The signature is Stripe's scheme, which receivers' libraries already know how to check:
`Callpipe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`.
A receiver recomputes it and refuses a stale `t` (a replayed delivery)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from pipeline.events import CallEnded, Event, Hint, MediaChunk, TranscriptReady
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.webhooks.store import Delivery, Webhook, webhooks_of
from pipeline.worker import Output, Stage

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Callpipe-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def url_refusal(url: str, allow_private: bool, *, resolve: bool = True) -> str | None:
    """Why callpipe will not post to `url`, or None. Addresses inside the deployment's
    network (loopback, private, link-local) are refused unless allowed: a tenant's admin
    must not make callpipe's hosts call their neighbours. Without `resolve` (at
    registration, where DNS may be down for a moment) only an address written in the URL
    is checked; every delivery resolves the name again (it may have moved)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"bad port: {exc}"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "the URL must be http:// or https:// with a host"
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return None
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            return f"cannot resolve {host}: {exc}"
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if allow_private:
        return None
    for ip in addresses:
        if not ip.is_global:
            return (
                f"{host} is {ip}, inside the deployment's network"
                " (CALLPIPE_WEBHOOKS__ALLOW_PRIVATE=true allows it)"
            )
    return None


def payload(event: Event) -> dict[str, Any] | None:
    """What a webhook receives of an event (no store paths), or None for other events."""
    data: dict[str, Any]
    if isinstance(event, TranscriptReady):
        data = {
            "utterances": event.utterances,
            "duration": event.duration,
            "language": event.language,
            "source": event.source,
            "transcript_url": f"/v1/calls/{event.call_id}/transcript",
        }
    elif isinstance(event, CallEnded):
        data = {"ended_at": event.ended_at.isoformat(), "reason": event.reason}
    elif isinstance(event, Hint):
        data = event.model_dump(
            mode="json",
            include={"hint_id", "agent_id", "kind", "title", "text", "priority", "trigger"},
        )
        data["created_at"] = event.created_at.isoformat()
    else:
        return None
    return {"type": event.type, "tenant": event.tenant, "call_id": event.call_id, "data": data}


class WebhookStage(Stage):
    """Writes a pending delivery for each event a tenant's webhooks asked for."""

    name = "webhooks"
    topics = ("calls", "transcripts", "hints")

    def __init__(self, services: Services) -> None:
        self.services = services

    def process(self, event: Event | MediaChunk) -> Iterator[Output]:
        """One event -> its deliveries (nothing on the bus)."""
        body = None if isinstance(event, MediaChunk) else payload(event)
        if body is None:
            return
        # The same event given twice by the bus has the same id: delivered once.
        event_id = hashlib.sha1(event.encode()).hexdigest()[:20]
        body = {"id": f"evt_{event_id}", **body, "sent": datetime.now(UTC).isoformat()}
        queued = webhooks_of(self.services).enqueue(
            event.tenant, event.type, event_id, event.call_id, json.dumps(body)
        )
        if queued:
            self.services.metrics.inc("webhook_deliveries_queued_total", queued)
        yield from ()


class Sender:
    """Posts due deliveries from a few threads; one stuck endpoint does not hold the rest."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.webhooks
        self.store = webhooks_of(services)
        self.client = httpx.Client(timeout=self.settings.timeout_s, follow_redirects=False)
        self.pool = ThreadPoolExecutor(self.settings.senders, thread_name_prefix="webhook-send")

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: claim what is due, send it, wait a little when nothing is."""
        try:
            while not stop.is_set():
                try:
                    due = self.store.claim_due(self.settings.senders * 4, self._lease_s())
                except Exception:  # the database is down: try again, never die
                    log.exception("webhooks: cannot read the due deliveries")
                    due = []
                list(self.pool.map(lambda pair: self.send(*pair), due))
                if not due:
                    stop.wait(self.settings.poll_s)
        finally:
            self.pool.shutdown(wait=False)
            self.client.close()

    def _lease_s(self) -> float:
        return self.settings.timeout_s * 2 + 5

    def send(self, delivery: Delivery, hook: Webhook) -> None:
        """One attempt, recorded with its outcome."""
        metrics = self.services.metrics
        body = delivery.body.encode()
        status: int | None = None
        error = url_refusal(hook.url, self.settings.allow_private)
        if error is None:
            now = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "callpipe-webhooks",
                SIGNATURE_HEADER: sign(hook.secret, now, body),
                "Callpipe-Event": delivery.event_type,
                "Callpipe-Delivery": delivery.delivery_id,
            }
            try:
                status = self.client.post(hook.url, content=body, headers=headers).status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = delivery.attempts + 1
        retry_at = None
        if error is not None and attempts < self.settings.max_attempts:
            delay = min(self.settings.max_delay_s, self.settings.base_delay_s * 2 ** (attempts - 1))
            retry_at = time.time() + delay
        self.store.record(
            delivery.delivery_id,
            delivered=error is None,
            http_status=status,
            error=error,
            retry_at=retry_at,
        )
        outcome = "delivered" if error is None else ("retry" if retry_at else "failed")
        metrics.inc("webhook_attempts_total", outcome=outcome)
        log.info(
            "webhook %s %s to %s: %s (attempt %d)",
            delivery.event_type,
            delivery.delivery_id,
            hook.url,
            outcome if error is None else f"{outcome}, {error}",
            attempts,
            **ctx(delivery.tenant, delivery.call_id),
        )


def stages(services: Services) -> list[Stage]:
    """Consumers of the `webhooks` role."""
    return [WebhookStage(services)]


def background(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """The `webhooks` role's sender."""
    sender = Sender(services)
    t = threading.Thread(target=sender.run, args=(stop,), name="webhook-sender", daemon=True)
    t.start()
    return [t]
