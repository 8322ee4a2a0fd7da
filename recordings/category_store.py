"""Each tenant's call categories (recordings/categories.py), in the deployment's database
(`categories.sqlite` under the data dir, or the shared PostgreSQL): one document per
tenant, the text it was sent as kept beside its validated form."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.database import Database, database_of
from pipeline.events import Utterance
from pipeline.logs import ctx
from pipeline.services import Services
from recordings.categories import Categories, Tagger

log = logging.getLogger(__name__)

NAME = "categories"
SCHEMA = [
    """
CREATE TABLE IF NOT EXISTS categories (
  tenant TEXT PRIMARY KEY, body TEXT NOT NULL, source TEXT NOT NULL, updated_at TEXT NOT NULL)
"""
]


@dataclass(frozen=True)
class StoredCategories:
    """A tenant's categories as stored."""

    categories: Categories
    source: str
    updated_at: str


class CategoryStore:
    """Safe to share between threads, processes and hosts."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._taggers: dict[str, tuple[str, Tagger]] = {}  # tenant -> (updated_at, tagger)

    def put(self, tenant: str, categories: Categories, source: str) -> None:
        """Replace the tenant's categories (calls ending from now on are tagged by them)."""
        self._db.execute(
            "INSERT INTO categories (tenant, body, source, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT (tenant) DO UPDATE SET body = excluded.body,"
            " source = excluded.source, updated_at = excluded.updated_at",
            (tenant, categories.model_dump_json(), source, datetime.now(UTC).isoformat()),
        )

    def get(self, tenant: str) -> StoredCategories | None:
        """The tenant's categories, or None when it has none."""
        row = self._db.fetchone(
            "SELECT body, source, updated_at FROM categories WHERE tenant = ?", (tenant,)
        )
        if row is None:
            return None
        return StoredCategories(Categories.model_validate_json(row[0]), row[1], row[2])

    def delete(self, tenant: str) -> bool:
        """Drop the tenant's categories; False when it had none."""
        return self._db.execute("DELETE FROM categories WHERE tenant = ?", (tenant,)) > 0

    def tagger(self, tenant: str, regex_timeout_ms: int) -> Tagger | None:
        """The tenant's categories compiled (again only when they changed), or None. A call's
        end reads only when they changed; the document is read and compiled after a change."""
        row = self._db.fetchone("SELECT updated_at FROM categories WHERE tenant = ?", (tenant,))
        if row is None:
            return None
        cached = self._taggers.get(tenant)
        if cached is not None and cached[0] == row[0]:
            return cached[1]
        stored = self.get(tenant)
        if stored is None:  # dropped in between
            return None
        self._taggers[tenant] = (stored.updated_at, Tagger(stored.categories, regex_timeout_ms))
        return self._taggers[tenant][1]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def category_store(services: Services) -> CategoryStore:
    """The process's store."""
    return services.component(
        "categories.store", lambda: CategoryStore(database_of(services, NAME, SCHEMA))
    )


def call_tags(
    services: Services, tenant: str, call_id: str, utterances: Sequence[Utterance], duration: float
) -> list[str]:
    """The categories a finished call meets, by its tenant's rules (none without rules, or
    when the rules cannot be read: the call is stored untagged and the error counted)."""
    try:
        tagger = category_store(services).tagger(
            tenant, services.settings.prompter.regex_timeout_ms
        )
        tags = tagger.tags(utterances, duration) if tagger is not None else []
    except Exception:  # the transcript matters more than its tags: store it without them
        log.exception("tagging the call failed", **ctx(tenant, call_id))
        services.metrics.inc("call_tags_errors_total")
        return []
    if tags:
        # Not labelled by category: the tenants name them, the label set would be theirs.
        services.metrics.inc("call_tags_total", len(tags))
        log.info("tagged %s", ",".join(tags), **ctx(tenant, call_id))
    return tags
