"""Fixtures of the search tests: a small French corpus over two tenants, keys, a client.

Fixture names carry a `search_` prefix so they never shadow other recordings tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.database import PostgresPool
from pipeline.ids import call_prefix
from pipeline.services import Services
from recordings.index import index_of
from recordings.index.base import CallMeta, TranscriptIndex, UtteranceRow
from recordings.index.postgres import PostgresIndex
from recordings.index.sqlite import SqliteIndex


@dataclass(frozen=True)
class CorpusCall:
    """One call of the corpus: metadata and (leg, start, end, text) utterances."""

    tenant: str
    call_id: str
    started_at: datetime
    agent_id: str
    direction: str
    lines: tuple[tuple[str, float, float, str], ...]


CORPUS = (
    CorpusCall(
        "acme",
        "c1",
        datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
        "a-1",
        "inbound",
        (
            ("agent", 1.0, 3.0, "Bonjour, que puis-je faire pour vous ?"),
            ("customer", 3.5, 6.0, "Je voudrais résilier mon contrat d'électricité"),
            ("agent", 6.5, 9.0, "Je comprends, quel est votre numéro client ?"),
        ),
    ),
    CorpusCall(
        "acme",
        "c2",
        datetime(2024, 5, 2, 14, 0, tzinfo=UTC),
        "a-2",
        "outbound",
        (
            ("agent", 0.5, 2.5, "Nous proposons une offre de remboursement"),
            ("customer", 3.0, 4.5, "Je ne veux pas RÉSILIER, merci"),
        ),
    ),
    CorpusCall(
        "acme",
        "c3",
        datetime(2024, 5, 9, 16, 30, tzinfo=UTC),
        "a-1",
        "inbound",
        (
            ("customer", 0.8, 2.0, "Mon contrat est trop cher"),
            ("agent", 2.4, 4.0, "Le remboursement arrive sous huit jours"),
        ),
    ),
    CorpusCall(
        "rival",
        "r1",
        datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        "b-1",
        "inbound",
        (("customer", 1.0, 3.0, "Je voudrais résilier mon contrat secret chez rival"),),
    ),
)


def index_corpus(index: TranscriptIndex) -> None:
    """Put the corpus into an index through its public interface."""
    for call in CORPUS:
        index.upsert_call(
            CallMeta(
                tenant=call.tenant,
                call_id=call.call_id,
                started_at=call.started_at,
                agent_id=call.agent_id,
                direction=call.direction,
                prefix=call_prefix(call.tenant, call.call_id, call.started_at),
                source="batch",
            )
        )
        index.upsert_utterances(
            [
                UtteranceRow(call.tenant, call.call_id, f"u-{call.call_id}-{i}", leg, s, e, text)
                for i, (leg, s, e, text) in enumerate(call.lines)
            ]
        )


@pytest.fixture(params=["sqlite", "postgres"])
def new_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], TranscriptIndex]]:
    """`new_index()`: an empty index, once on SQLite and once on a fresh PostgreSQL
    database, so the index's tests hold for both back-ends."""
    opened: list[TranscriptIndex] = []
    pools: list[PostgresPool] = []

    def make() -> TranscriptIndex:
        if request.param == "sqlite":
            opened.append(SqliteIndex(tmp_path / f"i{len(opened)}.sqlite"))
        else:
            if not pools:
                pools.append(PostgresPool(request.getfixturevalue("postgres_url")))
            opened.append(PostgresIndex(pools[0]))
        return opened[-1]

    yield make
    for index in opened:
        index.close()
    for pool in pools:
        pool.close()


@pytest.fixture
def corpus_index(new_index: Callable[[], TranscriptIndex]) -> TranscriptIndex:
    """The corpus in an index of each back-end."""
    index = new_index()
    index_corpus(index)
    return index


@pytest.fixture
def search_index(services: Services) -> TranscriptIndex:
    """The services' index holding the corpus."""
    index = index_of(services)
    index_corpus(index)
    return index


@pytest.fixture
def search_client(services: Services, search_index: TranscriptIndex) -> TestClient:
    """The full app over the corpus."""
    return TestClient(create_app(services))


@pytest.fixture
def search_keys(services: Services) -> dict[str, str]:
    """Keys of both tenants in every role."""
    k = keys_of(services)
    return {
        "analyst": k.create("acme", "analyst"),
        "admin": k.create("acme", "admin"),
        "agent": k.create("acme", "agent", agent_id="a-1"),
        "pbx": k.create("acme", "pbx"),
        "rival": k.create("rival", "analyst"),
        "rival_admin": k.create("rival", "admin"),
    }
