"""The transcript index interface: what the search API and the workers need of a backend.

SQLite FTS5 (`recordings.index.sqlite`) is the embedded backend, PostgreSQL full-text
search (`recordings.index.postgres`) the shared one; both compile the same query tree
(`recordings.index.query.Node`) and make snippets alike (`recordings.index.snippet`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from pipeline.events import CallDetails
from recordings.index.query import Node
from recordings.index.snippet import make_snippet

Interval = Literal["day", "week", "month"]
Sort = Literal["relevance", "time"]

# Snippets mark matches between these (the API turns them into what it serves).
HL_OPEN = "\x02"
HL_CLOSE = "\x03"
SNIPPET_TOKENS = 24


@dataclass(frozen=True)
class CallMeta:
    """What is known of a call; None fields leave the stored value as it is."""

    tenant: str
    call_id: str
    started_at: datetime | None = None
    agent_id: str | None = None
    direction: str | None = None
    caller: str | None = None
    callee: str | None = None
    prefix: str | None = None
    recording_key: str | None = None
    duration: float | None = None
    source: str | None = None

    @classmethod
    def of(cls, call: CallDetails, **fields: Any) -> CallMeta:
        """A call's details, and `fields` beyond them (prefix, recording_key ...)."""
        return cls(**indexed_details(call), **fields)


def indexed_details(call: CallDetails) -> dict[str, Any]:
    """The details of a call the index keeps (all but its language)."""
    return {k: v for k, v in call.details().items() if k != "language"}


@dataclass(frozen=True)
class CallRow:
    """One call as the index holds it."""

    tenant: str
    call_id: str
    started_at: datetime
    started_known: bool
    agent_id: str | None
    direction: str | None
    caller: str | None
    callee: str | None
    prefix: str | None
    recording_key: str | None
    duration: float | None
    source: str | None
    held: bool
    utterances: int


@dataclass(frozen=True)
class UtteranceRow:
    """One final utterance to index."""

    tenant: str
    call_id: str
    utterance_id: str
    leg: str
    start: float
    end: float
    text: str
    source: str = "batch"


FactOp = Literal[">", ">=", "<", "<=", "="]


@dataclass(frozen=True)
class FactFilter:
    """A call's statistic compared with a number (`longest_silence_s > 30`)."""

    name: str
    op: FactOp
    value: float


@dataclass(frozen=True)
class Filters:
    """Filters shared by search, call lists and term counts (all optional); `facts` and
    `tags` must all hold."""

    since: datetime | None = None
    until: datetime | None = None
    agent_id: str | None = None
    leg: str | None = None
    direction: str | None = None
    call_id: str | None = None
    facts: tuple[FactFilter, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One matching utterance; `snippet` marks matches with \\x02 ... \\x03.

    `score`: higher is more relevant; compare scores within one result list only.
    """

    call_id: str
    utterance_id: str
    leg: str
    start: float
    end: float
    text: str
    snippet: str
    call_started_at: datetime
    agent_id: str | None
    direction: str | None
    score: float


@dataclass(frozen=True)
class Page:
    """A page of results and the total count behind it (`exact` False: at least `total`)."""

    total: int
    items: list[Hit] | list[CallRow] = field(default_factory=list)
    exact: bool = True


@dataclass(frozen=True)
class FactRow:
    """One statistic over the calls of one agent in one period."""

    period: str
    agent_id: str | None
    name: str
    calls: int
    mean: float
    total: float


@dataclass(frozen=True)
class TagRow:
    """Calls of one period tagged with one category."""

    period: str
    tag: str
    calls: int


@dataclass(frozen=True)
class Bucket:
    """Matches of one period."""

    period: str
    utterances: int
    calls: int


class TranscriptIndex(Protocol):
    """Every row carries its tenant; every read is scoped to one tenant."""

    def upsert_call(self, meta: CallMeta) -> None:
        """Create or update a call row (idempotent)."""
        ...

    def upsert_utterances(self, rows: list[UtteranceRow]) -> None:
        """Index utterances; the same utterance id overwrites (idempotent)."""
        ...

    def search(
        self, tenant: str, query: Node, filters: Filters, sort: Sort, offset: int, limit: int
    ) -> Page:
        """Matching utterances of one tenant."""
        ...

    def list_calls(self, tenant: str, filters: Filters, offset: int, limit: int) -> Page:
        """Calls of one tenant, newest first."""
        ...

    def get_call(self, tenant: str, call_id: str) -> CallRow | None:
        """One call of one tenant, or None (also for another tenant's call)."""
        ...

    def call_utterances(self, tenant: str, call_id: str) -> list[UtteranceRow]:
        """A call's indexed utterances in speaking order."""
        ...

    def term_counts(
        self, tenant: str, query: Node, filters: Filters, interval: Interval
    ) -> list[Bucket]:
        """Matching utterances and calls per period of the call start time."""
        ...

    def set_hold(self, tenant: str, call_id: str, held: bool) -> bool:
        """Set or lift a legal hold; False when the call is unknown."""
        ...

    def set_analysis(
        self, tenant: str, call_id: str, facts: dict[str, float], tags: Sequence[str]
    ) -> None:
        """Replace a call's statistics and categories (its transcript was made again)."""
        ...

    def call_tags(self, tenant: str, call_ids: Sequence[str]) -> dict[str, list[str]]:
        """The categories of these calls of one tenant (calls without any are left out)."""
        ...

    def fact_summary(
        self, tenant: str, filters: Filters, interval: Interval, names: Sequence[str]
    ) -> list[FactRow]:
        """These statistics per period of the call start and per agent: calls, mean, total."""
        ...

    def tag_counts(self, tenant: str, filters: Filters, interval: Interval) -> list[TagRow]:
        """Calls per period and category."""
        ...

    def held_calls(self, tenant: str) -> set[str]:
        """Ids of the tenant's calls under legal hold."""
        ...

    def expired_calls(self, tenant: str, cutoff: datetime) -> list[CallRow]:
        """Calls started before `cutoff` and not held."""
        ...

    def delete_call(self, tenant: str, call_id: str) -> int:
        """Remove a call and its utterances; returns utterance rows removed."""
        ...

    def delete_calls(self, tenant: str, call_ids: list[str]) -> int:
        """Remove many calls of one tenant together; returns utterance rows removed."""
        ...

    def tenants(self) -> list[str]:
        """Every tenant with a call row."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def filter_terms(f: Filters, *, utterances: bool) -> list[tuple[str, Any]]:
    """The set filters as ("column op", value), for a backend to add its placeholder and
    table alias: on utterances (which carry their call's start as `call_started`, and a
    leg) or on calls (`started_at`)."""
    started = "call_started" if utterances else "started_at"
    terms: list[tuple[str, Any]] = [
        (f"{started} >=", to_ts(f.since) if f.since else None),
        (f"{started} <", to_ts(f.until) if f.until else None),
        ("agent_id =", f.agent_id),
        ("direction =", f.direction),
        ("call_id =", f.call_id),
    ]
    if utterances:
        terms.append(("leg =", f.leg))
    return [(column, value) for column, value in terms if value is not None]


def analysis_clauses(
    f: Filters, alias: str, facts_table: str, tags_table: str
) -> tuple[list[str], list[Any]]:
    """The statistics and category filters as SQL on the row `alias` (which has tenant and
    call_id), with `?` placeholders, and their values (each op is one of FactOp)."""
    clauses: list[str] = []
    args: list[Any] = []
    of_call = f"x.tenant = {alias}.tenant AND x.call_id = {alias}.call_id"
    for fact in f.facts:
        if fact.op not in get_args(FactOp):
            raise ValueError(f"not a comparison: {fact.op!r}")
        clauses.append(
            f"EXISTS (SELECT 1 FROM {facts_table} x WHERE {of_call}"
            f" AND x.name = ? AND x.value {fact.op} ?)"
        )
        args += [fact.name, fact.value]
    for tag in f.tags:
        clauses.append(f"EXISTS (SELECT 1 FROM {tags_table} x WHERE {of_call} AND x.tag = ?)")
        args.append(tag)
    return clauses, args


def to_ts(dt: datetime) -> float:
    """UNIX time of a datetime (a naive one is UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def from_ts(ts: float) -> datetime:
    """The UTC datetime of a UNIX time."""
    return datetime.fromtimestamp(ts, UTC)


# The columns both back-ends select for a call row (alias c) and a hit (alias u), in the
# order `call_row` and `hit_of` read them.
CALL_COLUMNS = (
    "c.tenant, c.call_id, c.started_at, c.started_known, c.agent_id, c.direction, c.caller,"
    " c.callee, c.prefix, c.recording_key, c.duration, c.source, c.held"
)
HIT_COLUMNS = (
    'u.id, u.call_id, u.utterance_id, u.leg, u.start, u."end", u.text, u.call_started,'
    " u.agent_id, u.direction"
)


def call_params(meta: CallMeta) -> dict[str, Any]:
    """The named parameters of a call upsert; a call of unknown start gets now, marked
    provisional (`started_known` False) until its call.started or manifest arrives."""
    return {
        "tenant": meta.tenant,
        "call_id": meta.call_id,
        "started_at": to_ts(meta.started_at) if meta.started_at else time.time(),
        "started_known": meta.started_at is not None,
        "agent_id": meta.agent_id,
        "direction": meta.direction,
        "caller": meta.caller,
        "callee": meta.callee,
        "prefix": meta.prefix,
        "recording_key": meta.recording_key,
        "duration": meta.duration,
        "source": meta.source,
    }


def hit_of(r: tuple[Any, ...], query: Node, score: float) -> Hit:
    """A hit from a row of HIT_COLUMNS, its snippet marked from the query."""
    return Hit(
        call_id=r[1],
        utterance_id=r[2],
        leg=r[3],
        start=r[4],
        end=r[5],
        text=r[6],
        snippet=make_snippet(r[6], query, HL_OPEN, HL_CLOSE, SNIPPET_TOKENS),
        call_started_at=from_ts(r[7]),
        agent_id=r[8],
        direction=r[9],
        score=score,
    )


def call_row(r: tuple[Any, ...], utterances: int) -> CallRow:
    """A call row from a row of CALL_COLUMNS."""
    return CallRow(
        tenant=r[0],
        call_id=r[1],
        started_at=from_ts(r[2]),
        started_known=bool(r[3]),
        agent_id=r[4],
        direction=r[5],
        caller=r[6],
        callee=r[7],
        prefix=r[8],
        recording_key=r[9],
        duration=r[10],
        source=r[11],
        held=bool(r[12]),
        utterances=utterances,
    )
