"""Webhooks and their deliveries, in the deployment's database (`webhooks.sqlite`, or the
PostgreSQL every host shares): a delivery is written before it is tried, so one that a
restart interrupts is tried again, by whichever host claims it first."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pipeline.database import Database, database_of
from pipeline.services import Services

NAME = "webhooks"

# The events a webhook may ask for.
EventType = Literal["transcript.ready", "call.ended", "hint"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

SCHEMA = [
    """
CREATE TABLE IF NOT EXISTS webhooks (
  webhook_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL,
  events TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS webhooks_tenant ON webhooks (tenant);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  delivery_id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, tenant TEXT NOT NULL,
  event_type TEXT NOT NULL, call_id TEXT, body TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL, next_attempt_at REAL NOT NULL, claimed_until REAL,
  last_status INTEGER, last_error TEXT, created_at REAL NOT NULL, delivered_at REAL);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at)
"""
]


@dataclass(frozen=True)
class Webhook:
    """One registered endpoint (its secret is only shown when it is created)."""

    webhook_id: str
    tenant: str
    url: str
    secret: str
    events: tuple[str, ...]
    created_at: float


@dataclass(frozen=True)
class Delivery:
    """One event for one webhook, as tried so far."""

    delivery_id: str
    webhook_id: str
    tenant: str
    event_type: str
    call_id: str | None
    body: str
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


_HOOK = "webhook_id, tenant, url, secret, events, created_at"
_DELIVERY = (
    "delivery_id, webhook_id, tenant, event_type, call_id, body, status, attempts,"
    " next_attempt_at, last_status, last_error, created_at, delivered_at"
)


def _hook(row: tuple[Any, ...]) -> Webhook:
    return Webhook(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5])


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(*row)


class WebhookStore:
    """The tables of webhooks; safe to share between threads, processes and hosts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- webhooks ---------------------------------------------------------------------
    def register(self, tenant: str, url: str, events: tuple[str, ...]) -> Webhook:
        """A new webhook with a new secret."""
        hook = Webhook(
            webhook_id="wh_" + uuid.uuid4().hex[:16],
            tenant=tenant,
            url=url,
            secret="whsec_" + secrets.token_urlsafe(24),
            events=events,
            created_at=time.time(),
        )
        self._db.execute(
            f"INSERT INTO webhooks ({_HOOK}) VALUES (?,?,?,?,?,?)",
            (hook.webhook_id, tenant, url, hook.secret, json.dumps(events), hook.created_at),
        )
        return hook

    def webhooks(self, tenant: str) -> list[Webhook]:
        """A tenant's webhooks, oldest first."""
        rows = self._db.fetchall(
            f"SELECT {_HOOK} FROM webhooks WHERE tenant = ? ORDER BY created_at", (tenant,)
        )
        return [_hook(r) for r in rows]

    def webhook(self, tenant: str, webhook_id: str) -> Webhook | None:
        """One of the tenant's webhooks (None for another tenant's)."""
        row = self._db.fetchone(
            f"SELECT {_HOOK} FROM webhooks WHERE tenant = ? AND webhook_id = ?",
            (tenant, webhook_id),
        )
        return _hook(row) if row else None

    def delete(self, tenant: str, webhook_id: str) -> bool:
        """Remove a webhook and what it still had to deliver; True when it existed."""
        gone = self._db.execute(
            "DELETE FROM webhooks WHERE tenant = ? AND webhook_id = ?", (tenant, webhook_id)
        )
        if gone:
            self._db.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending'",
                (webhook_id,),
            )
        return gone > 0

    # -- deliveries -------------------------------------------------------------------
    def enqueue(
        self, tenant: str, event_type: str, event_id: str, call_id: str | None, body: str
    ) -> int:
        """A pending delivery of `body` to each of the tenant's webhooks that asked for
        `event_type`; how many. The delivery id is the event's and the webhook's, so an
        event the bus gives twice is delivered once."""
        hooks = [h for h in self.webhooks(tenant) if event_type in h.events]
        now = time.time()
        for h in hooks:
            self._db.execute(
                f"INSERT INTO webhook_deliveries ({_DELIVERY}, claimed_until)"
                " VALUES (?,?,?,?,?,?,'pending',0,?,NULL,NULL,?,NULL,NULL)"
                " ON CONFLICT (delivery_id) DO NOTHING",
                (f"{event_id}.{h.webhook_id}", h.webhook_id, tenant, event_type, call_id)
                + (body, now, now),
            )
        return len(hooks)

    def claim_due(self, limit: int, lease_s: float) -> list[tuple[Delivery, Webhook]]:
        """Pending deliveries whose time has come, each claimed for `lease_s` (another
        host skips it meanwhile; one whose claimant died is due again after it)."""
        now = time.time()
        rows = self._db.fetchall(
            f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE status = 'pending'"
            " AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)"
            " ORDER BY next_attempt_at LIMIT ?",
            (now, now, limit),
        )
        claimed = []
        for row in rows:
            d = _delivery(row)
            won = self._db.execute(
                "UPDATE webhook_deliveries SET claimed_until = ? WHERE delivery_id = ?"
                " AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < ?)",
                (now + lease_s, d.delivery_id, now),
            )
            hook = self.webhook(d.tenant, d.webhook_id) if won else None
            if hook is not None:
                claimed.append((d, hook))
        return claimed

    def record(
        self,
        delivery_id: str,
        *,
        delivered: bool,
        http_status: int | None,
        error: str | None,
        retry_at: float | None,
    ) -> None:
        """One attempt's outcome: delivered, to be tried again at `retry_at`, or (no
        `retry_at`) given up."""
        status = "delivered" if delivered else ("pending" if retry_at is not None else "failed")
        self._db.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,"
            " last_status = ?, last_error = ?, next_attempt_at = ?, claimed_until = NULL,"
            " delivered_at = ? WHERE delivery_id = ?",
            (
                status,
                http_status,
                error,
                retry_at if retry_at is not None else time.time(),
                time.time() if delivered else None,
                delivery_id,
            ),
        )

    def deliveries(self, tenant: str, webhook_id: str, limit: int) -> list[Delivery]:
        """A webhook's latest deliveries, newest first."""
        rows = self._db.fetchall(
            f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE tenant = ? AND webhook_id = ?"
            " ORDER BY created_at DESC LIMIT ?",
            (tenant, webhook_id, limit),
        )
        return [_delivery(r) for r in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def webhooks_of(services: Services) -> WebhookStore:
    """This deployment's webhooks, opened on first use."""
    return services.component("webhooks", lambda: WebhookStore(database_of(services, NAME, SCHEMA)))
