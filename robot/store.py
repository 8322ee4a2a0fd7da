"""The robot's tables (`robot` in the deployment's database: `robot.sqlite` under the data
dir, or PostgreSQL): calls placed (for the 30-day cap), the opposition list, the guard's
audit trail, calling policies, scenarios, sessions and campaigns, all per tenant.

Not in the object store: the call counts and the audit must survive the bucket's 90-day
expiry rules, and the cap check needs a transaction (check and count in one step), which
on PostgreSQL holds across the robot workers of every host.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.database import Database, database_of
from pipeline.services import Services

NAME = "robot"

# Migrations, in order (pipeline/database.py applies the new ones on open).
SCHEMA = [
    """
CREATE TABLE IF NOT EXISTS placed_calls (
  tenant TEXT NOT NULL, callee TEXT NOT NULL, at REAL NOT NULL, call_id TEXT NOT NULL,
  campaign_id TEXT, PRIMARY KEY (tenant, call_id));
CREATE INDEX IF NOT EXISTS placed_callee ON placed_calls (tenant, callee, at);
CREATE TABLE IF NOT EXISTS opposition (
  tenant TEXT NOT NULL, number TEXT NOT NULL, PRIMARY KEY (tenant, number));
CREATE TABLE IF NOT EXISTS opposition_imports (
  tenant TEXT PRIMARY KEY, numbers INTEGER NOT NULL, rejected INTEGER NOT NULL,
  imported_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, decided_at TEXT NOT NULL,
  at TEXT NOT NULL, kind TEXT NOT NULL, callee TEXT, caller_id TEXT, sector TEXT,
  allowed INTEGER NOT NULL, rule TEXT, reason TEXT NOT NULL, call_id TEXT, campaign_id TEXT);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, id);
CREATE TABLE IF NOT EXISTS policies (tenant TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenarios (
  tenant TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS sessions (
  tenant TEXT NOT NULL, call_id TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant, call_id));
CREATE TABLE IF NOT EXISTS campaigns (
  tenant TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant, id))
"""
]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class AuditEntry:
    """One guard decision as logged."""

    tenant: str
    at: datetime
    kind: str  # check | call | campaign
    callee: str | None
    caller_id: str | None
    sector: str | None
    allowed: bool
    rule: str | None
    reason: str
    call_id: str | None = None
    campaign_id: str | None = None


class RobotStore:
    """All robot tables; thread-safe, and on PostgreSQL shared by every host."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def transaction(self) -> AbstractContextManager[None]:
        """Check-then-record steps (the guard's cap) cannot interleave, on any host."""
        return self._db.transaction("robot.guard")

    # -- calls placed ---------------------------------------------------------------------
    def count_calls(self, tenant: str, callee: str, since: float, until: float) -> int:
        """Automated calls to `callee` placed in (since, until] (UNIX times)."""
        row = self._db.fetchone(
            "SELECT COUNT(*) FROM placed_calls WHERE tenant=? AND callee=? AND at>? AND at<=?",
            (tenant, callee, since, until),
        )
        return int(row[0]) if row else 0

    def record_call(
        self, tenant: str, callee: str, at: float, call_id: str, campaign_id: str | None = None
    ) -> None:
        """Count a placed call (idempotent per call id)."""
        self._db.execute(
            "INSERT INTO placed_calls VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            (tenant, callee, at, call_id, campaign_id),
        )

    # -- opposition list ------------------------------------------------------------------
    def replace_opposition(self, tenant: str, numbers: Iterable[str], rejected: int) -> int:
        """Replace a tenant's whole list (a re-import refreshes it); returns its size."""
        unique = sorted(set(numbers))
        with self.transaction():
            self._db.execute("DELETE FROM opposition WHERE tenant=?", (tenant,))
            self._db.executemany(
                "INSERT INTO opposition VALUES (?,?)", [(tenant, n) for n in unique]
            )
            self._db.execute(
                "INSERT INTO opposition_imports VALUES (?,?,?,?) ON CONFLICT (tenant) DO UPDATE"
                " SET numbers = excluded.numbers, rejected = excluded.rejected,"
                " imported_at = excluded.imported_at",
                (tenant, len(unique), rejected, _now()),
            )
        return len(unique)

    def is_opposed(self, tenant: str, number: str) -> bool:
        """The (E.164) number is on the tenant's opposition list."""
        row = self._db.fetchone(
            "SELECT 1 FROM opposition WHERE tenant=? AND number=?", (tenant, number)
        )
        return row is not None

    def opposition_info(self, tenant: str) -> dict[str, Any]:
        """Size and date of the tenant's last import."""
        row = self._db.fetchone(
            "SELECT numbers, rejected, imported_at FROM opposition_imports WHERE tenant=?",
            (tenant,),
        )
        if row is None:
            return {"numbers": 0, "rejected": 0, "imported_at": None}
        return {"numbers": row[0], "rejected": row[1], "imported_at": row[2]}

    # -- audit ----------------------------------------------------------------------------
    def audit(self, e: AuditEntry) -> None:
        """Log one guard decision."""
        self._db.execute(
            "INSERT INTO audit (tenant, decided_at, at, kind, callee, caller_id, sector,"
            " allowed, rule, reason, call_id, campaign_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                e.tenant,
                _now(),
                e.at.isoformat(),
                e.kind,
                e.callee,
                e.caller_id,
                e.sector,
                int(e.allowed),
                e.rule,
                e.reason,
                e.call_id,
                e.campaign_id,
            ),
        )

    def audit_entries(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        """The tenant's latest decisions, newest first."""
        names = (
            "id decided_at at kind callee caller_id sector allowed rule reason call_id campaign_id"
        ).split()
        rows = self._db.fetchall(
            f"SELECT {', '.join(names)} FROM audit WHERE tenant=? ORDER BY id DESC LIMIT ?",
            (tenant, limit),
        )
        return [{**dict(zip(names, r, strict=True)), "allowed": bool(r[7])} for r in rows]

    # -- JSON documents ---------------------------------------------------------------------
    def _put(self, table: str, key: str, tenant: str, name: str, body: Any) -> None:
        self._db.execute(
            f"INSERT INTO {table} (tenant, {key}, body, updated_at) VALUES (?,?,?,?)"
            f" ON CONFLICT (tenant, {key}) DO UPDATE SET body = excluded.body,"
            " updated_at = excluded.updated_at",
            (tenant, name, json.dumps(body, default=str), _now()),
        )

    def _get(self, table: str, key: str, tenant: str, name: str) -> Any:
        row = self._db.fetchone(
            f"SELECT body FROM {table} WHERE tenant=? AND {key}=?", (tenant, name)
        )
        return None if row is None else json.loads(row[0])

    def put_policy(self, tenant: str, body: dict[str, Any]) -> None:
        """Store a tenant's calling policy."""
        self._db.execute(
            "INSERT INTO policies VALUES (?,?) ON CONFLICT (tenant) DO UPDATE"
            " SET body = excluded.body",
            (tenant, json.dumps(body)),
        )

    def policy(self, tenant: str) -> dict[str, Any] | None:
        """A tenant's calling policy, or None for the default."""
        row = self._db.fetchone("SELECT body FROM policies WHERE tenant=?", (tenant,))
        return None if row is None else dict(json.loads(row[0]))

    def put_scenario(self, tenant: str, name: str, source: str) -> None:
        """Store a validated scenario's text."""
        self._put("scenarios", "name", tenant, name, source)

    def scenario(self, tenant: str, name: str) -> str | None:
        """A scenario's text, or None."""
        v = self._get("scenarios", "name", tenant, name)
        return None if v is None else str(v)

    def put_session(self, tenant: str, call_id: str, body: dict[str, Any]) -> None:
        """Store a session's state (status, steps, outcome)."""
        self._put("sessions", "call_id", tenant, call_id, body)

    def session(self, tenant: str, call_id: str) -> dict[str, Any] | None:
        """A session's stored state, or None."""
        v = self._get("sessions", "call_id", tenant, call_id)
        return None if v is None else dict(v)

    def put_campaign(self, tenant: str, campaign_id: str, body: dict[str, Any]) -> None:
        """Store a campaign's state."""
        self._put("campaigns", "id", tenant, campaign_id, body)

    def campaign(self, tenant: str, campaign_id: str) -> dict[str, Any] | None:
        """A campaign's stored state, or None."""
        v = self._get("campaigns", "id", tenant, campaign_id)
        return None if v is None else dict(v)

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def robot_store(services: Services) -> RobotStore:
    """The process's robot store."""
    return services.component(
        "robot.store", lambda: RobotStore(database_of(services, NAME, SCHEMA))
    )
