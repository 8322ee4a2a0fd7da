"""Playbooks, knowledge-base articles, fired hints and their feedback, per tenant, in the
deployment's database (`prompter.sqlite` under the data dir, or PostgreSQL shared by every
host).

Every change to a tenant's playbooks or articles bumps the tenant's version: workers
compare it when a call starts and reload, so an update applies to new calls without a
restart while calls in progress keep the rules they started with. Not in the object
store, because the bucket's retention rules would expire a playbook nobody edits.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.database import Database, database_of
from pipeline.events import Hint
from pipeline.services import Services
from prompter.kb import Article
from prompter.playbook import Playbook

NAME = "prompter"

# Migrations, in order (pipeline/database.py applies the new ones on open).
SCHEMA = [
    """
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
  at TEXT NOT NULL, PRIMARY KEY (tenant, hint_id))
"""
]


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
    """The souffleur's tables; safe to share between threads, processes and hosts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _tx(self) -> AbstractContextManager[None]:
        return self._db.transaction("prompter")

    def _bump(self, tenant: str) -> None:
        self._db.execute(
            "INSERT INTO versions (tenant, version) VALUES (?, 1)"
            " ON CONFLICT (tenant) DO UPDATE SET version = versions.version + 1",
            (tenant,),
        )

    def version(self, tenant: str) -> int:
        """The tenant's playbooks-and-articles version (0 before any)."""
        row = self._db.fetchone("SELECT version FROM versions WHERE tenant = ?", (tenant,))
        return int(row[0]) if row else 0

    # -- playbooks ------------------------------------------------------------------------
    def put_playbook(self, tenant: str, name: str, playbook: Playbook, source: str) -> bool:
        """Create or replace; True when it was created."""
        body = playbook.model_dump_json()
        with self._tx():
            existed = self._db.fetchone(
                "SELECT 1 FROM playbooks WHERE tenant = ? AND name = ?", (tenant, name)
            )
            self._db.execute(
                "INSERT INTO playbooks (tenant, name, body, source, updated_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT (tenant, name) DO UPDATE SET"
                " body = excluded.body, source = excluded.source,"
                " updated_at = excluded.updated_at",
                (tenant, name, body, source, _now()),
            )
            self._bump(tenant)
        return existed is None

    def get_playbook(self, tenant: str, name: str) -> StoredPlaybook | None:
        """One playbook, or None."""
        row = self._db.fetchone(
            "SELECT name, body, source, updated_at FROM playbooks WHERE tenant = ? AND name = ?",
            (tenant, name),
        )
        return _playbook(row) if row else None

    def playbooks(self, tenant: str) -> list[StoredPlaybook]:
        """Every playbook of a tenant, by name."""
        rows = self._db.fetchall(
            "SELECT name, body, source, updated_at FROM playbooks WHERE tenant = ? ORDER BY name",
            (tenant,),
        )
        return [_playbook(r) for r in rows]

    def delete_playbook(self, tenant: str, name: str) -> bool:
        """True when one was deleted."""
        with self._tx():
            changed = self._db.execute(
                "DELETE FROM playbooks WHERE tenant = ? AND name = ?", (tenant, name)
            )
            if changed:
                self._bump(tenant)
        return changed > 0

    # -- knowledge base -------------------------------------------------------------------
    def put_article(self, tenant: str, article: Article) -> bool:
        """Create or replace; True when it was created."""
        with self._tx():
            existed = self._db.fetchone(
                "SELECT 1 FROM articles WHERE tenant = ? AND id = ?", (tenant, article.id)
            )
            self._db.execute(
                "INSERT INTO articles (tenant, id, body, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT (tenant, id) DO UPDATE SET body = excluded.body,"
                " updated_at = excluded.updated_at",
                (tenant, article.id, article.model_dump_json(), _now()),
            )
            self._bump(tenant)
        return existed is None

    def get_article(self, tenant: str, article_id: str) -> Article | None:
        """One article, or None."""
        row = self._db.fetchone(
            "SELECT body FROM articles WHERE tenant = ? AND id = ?", (tenant, article_id)
        )
        return Article.model_validate_json(row[0]) if row else None

    def articles(self, tenant: str) -> list[Article]:
        """Every article of a tenant, by id."""
        rows = self._db.fetchall(
            "SELECT body FROM articles WHERE tenant = ? ORDER BY id", (tenant,)
        )
        return [Article.model_validate_json(r[0]) for r in rows]

    def delete_article(self, tenant: str, article_id: str) -> bool:
        """True when one was deleted."""
        with self._tx():
            changed = self._db.execute(
                "DELETE FROM articles WHERE tenant = ? AND id = ?", (tenant, article_id)
            )
            if changed:
                self._bump(tenant)
        return changed > 0

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
        with self._tx():
            self._db.executemany(
                "INSERT INTO hints (tenant, hint_id, rule, call_id, agent_id, kind,"
                " created_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                rows,
            )

    def fired_hint(self, tenant: str, hint_id: str) -> FiredHint | None:
        """A hint this tenant was shown, or None."""
        row = self._db.fetchone(
            "SELECT hint_id, rule, call_id, agent_id, kind FROM hints"
            " WHERE tenant = ? AND hint_id = ?",
            (tenant, hint_id),
        )
        return FiredHint(*row) if row else None

    def record_feedback(
        self, tenant: str, hint_id: str, useful: bool, agent_id: str | None
    ) -> None:
        """An agent's verdict on a hint (a second verdict replaces the first)."""
        with self._tx():
            self._db.execute(
                "INSERT INTO feedback (tenant, hint_id, useful, agent_id, at)"
                " VALUES (?,?,?,?,?) ON CONFLICT (tenant, hint_id) DO UPDATE SET"
                " useful = excluded.useful, agent_id = excluded.agent_id, at = excluded.at",
                (tenant, hint_id, int(useful), agent_id, _now()),
            )

    def stats(self, tenant: str) -> list[RuleStats]:
        """Fired / useful / not useful per rule of a tenant."""
        rows = self._db.fetchall(
            "SELECT h.rule, COUNT(*), COUNT(CASE WHEN f.useful = 1 THEN 1 END),"
            " COUNT(CASE WHEN f.useful = 0 THEN 1 END) FROM hints h LEFT JOIN feedback f"
            " ON f.tenant = h.tenant AND f.hint_id = h.hint_id WHERE h.tenant = ?"
            " GROUP BY h.rule ORDER BY h.rule",
            (tenant,),
        )
        return [RuleStats(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _playbook(row: tuple[str, str, str, str]) -> StoredPlaybook:
    return StoredPlaybook(row[0], Playbook.model_validate_json(row[1]), row[2], row[3])


def prompter_store(services: Services) -> PrompterStore:
    """The process's store (one connection shared by the worker and the API)."""
    return services.component(
        "prompter.store", lambda: PrompterStore(database_of(services, NAME, SCHEMA))
    )
