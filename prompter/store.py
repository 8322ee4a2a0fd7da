"""Playbooks, knowledge-base articles, fired hints and their feedback, per tenant, in SQLite
under the data dir (`prompter.sqlite`, beside the API keys; distributed deployments share
that directory as they share the keys).

Every change to a tenant's playbooks or articles bumps the tenant's version: workers
compare it when a call starts and reload, so an update applies to new calls without a
restart while calls in progress keep the rules they started with. Not in the object
store, because the bucket's retention rules would expire a playbook nobody edits.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.events import Hint
from pipeline.services import Services
from pipeline.sqlite_db import immediate, open_shared
from prompter.kb import Article
from prompter.playbook import Playbook

FILE_NAME = "prompter.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS playbooks (
  tenant TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, source TEXT NOT NULL,
  updated_at TEXT NOT NULL, PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS articles (
  tenant TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS versions (tenant TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hints (
  tenant TEXT NOT NULL, hint_id TEXT NOT NULL, rule TEXT NOT NULL, call_id TEXT NOT NULL,
  agent_id TEXT, kind TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (tenant, hint_id));
CREATE INDEX IF NOT EXISTS hints_rule ON hints (tenant, rule);
CREATE TABLE IF NOT EXISTS feedback (
  tenant TEXT NOT NULL, hint_id TEXT NOT NULL, useful INTEGER NOT NULL, agent_id TEXT,
  at TEXT NOT NULL, PRIMARY KEY (tenant, hint_id));
"""


@dataclass(frozen=True)
class StoredPlaybook:
    """A playbook as stored: its validated form, the text it was sent as, and when."""

    name: str
    playbook: Playbook
    source: str
    updated_at: str


@dataclass(frozen=True)
class FiredHint:
    """What the stats and the feedback need to know of a hint that was shown."""

    hint_id: str
    rule: str
    call_id: str
    agent_id: str | None
    kind: str


@dataclass(frozen=True)
class RuleStats:
    """Per rule: how often it fired, and what agents said of it."""

    rule: str
    fired: int
    useful: int
    not_useful: int


def _now() -> str:
    return datetime.now(UTC).isoformat()


class PrompterStore:
    """The souffleur's SQLite database; safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self._db = open_shared(path, _SCHEMA, busy_timeout_s=5.0)
        self._lock = threading.Lock()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._db, self._lock)

    @staticmethod
    def _bump(db: sqlite3.Connection, tenant: str) -> None:
        db.execute(
            "INSERT INTO versions (tenant, version) VALUES (?, 1)"
            " ON CONFLICT(tenant) DO UPDATE SET version = version + 1",
            (tenant,),
        )

    def version(self, tenant: str) -> int:
        """The tenant's playbooks-and-articles version (0 before any)."""
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM versions WHERE tenant = ?", (tenant,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- playbooks ------------------------------------------------------------------------
    def put_playbook(self, tenant: str, name: str, playbook: Playbook, source: str) -> bool:
        """Create or replace; True when it was created."""
        body = playbook.model_dump_json()
        with self._tx() as db:
            existed = db.execute(
                "SELECT 1 FROM playbooks WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO playbooks (tenant, name, body, source, updated_at)"
                " VALUES (?,?,?,?,?)",
                (tenant, name, body, source, _now()),
            )
            self._bump(db, tenant)
        return existed is None

    def get_playbook(self, tenant: str, name: str) -> StoredPlaybook | None:
        """One playbook, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, body, source, updated_at FROM playbooks"
                " WHERE tenant = ? AND name = ?",
                (tenant, name),
            ).fetchone()
        return _playbook(row) if row else None

    def playbooks(self, tenant: str) -> list[StoredPlaybook]:
        """Every playbook of a tenant, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, body, source, updated_at FROM playbooks WHERE tenant = ?"
                " ORDER BY name",
                (tenant,),
            ).fetchall()
        return [_playbook(r) for r in rows]

    def delete_playbook(self, tenant: str, name: str) -> bool:
        """True when one was deleted."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM playbooks WHERE tenant = ? AND name = ?", (tenant, name))
            if cur.rowcount:
                self._bump(db, tenant)
        return cur.rowcount > 0

    # -- knowledge base -------------------------------------------------------------------
    def put_article(self, tenant: str, article: Article) -> bool:
        """Create or replace; True when it was created."""
        with self._tx() as db:
            existed = db.execute(
                "SELECT 1 FROM articles WHERE tenant = ? AND id = ?", (tenant, article.id)
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO articles (tenant, id, body, updated_at) VALUES (?,?,?,?)",
                (tenant, article.id, article.model_dump_json(), _now()),
            )
            self._bump(db, tenant)
        return existed is None

    def get_article(self, tenant: str, article_id: str) -> Article | None:
        """One article, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM articles WHERE tenant = ? AND id = ?", (tenant, article_id)
            ).fetchone()
        return Article.model_validate_json(row[0]) if row else None

    def articles(self, tenant: str) -> list[Article]:
        """Every article of a tenant, by id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM articles WHERE tenant = ? ORDER BY id", (tenant,)
            ).fetchall()
        return [Article.model_validate_json(r[0]) for r in rows]

    def delete_article(self, tenant: str, article_id: str) -> bool:
        """True when one was deleted."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM articles WHERE tenant = ? AND id = ?", (tenant, article_id)
            )
            if cur.rowcount:
                self._bump(db, tenant)
        return cur.rowcount > 0

    # -- hints and feedback ---------------------------------------------------------------
    def record_hints(self, hints: list[Hint]) -> None:
        """Remember fired hints (a replayed hint, same id, is recorded once)."""
        if not hints:
            return
        rows = [
            (
                h.tenant,
                h.hint_id,
                h.trigger.rule or "",
                h.call_id,
                h.agent_id,
                h.kind,
                h.created_at.isoformat(),
            )
            for h in hints
        ]
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO hints (tenant, hint_id, rule, call_id, agent_id, kind,"
                " created_at) VALUES (?,?,?,?,?,?,?)",
                rows,
            )

    def fired_hint(self, tenant: str, hint_id: str) -> FiredHint | None:
        """A hint this tenant was shown, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT hint_id, rule, call_id, agent_id, kind FROM hints"
                " WHERE tenant = ? AND hint_id = ?",
                (tenant, hint_id),
            ).fetchone()
        return FiredHint(*row) if row else None

    def record_feedback(
        self, tenant: str, hint_id: str, useful: bool, agent_id: str | None
    ) -> None:
        """An agent's verdict on a hint (a second verdict replaces the first)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO feedback (tenant, hint_id, useful, agent_id, at)"
                " VALUES (?,?,?,?,?)",
                (tenant, hint_id, int(useful), agent_id, _now()),
            )

    def stats(self, tenant: str) -> list[RuleStats]:
        """Fired / useful / not useful per rule of a tenant."""
        with self._lock:
            rows = self._db.execute(
                "SELECT h.rule, COUNT(*), COALESCE(SUM(f.useful = 1), 0),"
                " COALESCE(SUM(f.useful = 0), 0) FROM hints h LEFT JOIN feedback f"
                " ON f.tenant = h.tenant AND f.hint_id = h.hint_id WHERE h.tenant = ?"
                " GROUP BY h.rule ORDER BY h.rule",
                (tenant,),
            ).fetchall()
        return [RuleStats(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _playbook(row: tuple[str, str, str, str]) -> StoredPlaybook:
    return StoredPlaybook(row[0], Playbook.model_validate_json(row[1]), row[2], row[3])


def prompter_store(services: Services) -> PrompterStore:
    """The process's store (one connection shared by the worker and the API)."""
    return services.component(
        "prompter.store", lambda: PrompterStore(services.settings.data_dir / FILE_NAME)
    )
