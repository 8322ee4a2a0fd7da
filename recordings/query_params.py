"""The query strings the search, call list and analytics routes read by hand (they take
repeated and compared parameters FastAPI's own parsing does not): each checked, with a
400 reason, and declared for the OpenAPI (`documented`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

from fastapi import Request

from pipeline.events import Direction, Leg
from pipeline.ids import check_id
from prompter.playbook import RULE_ID
from recordings.call_stats import FACT_NAMES
from recordings.index.base import FactFilter, Filters
from recordings.index.query import Node, QueryError, parse_query

MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000
LEGS: tuple[str, ...] = get_args(Leg)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
MAX_FILTERS = 10  # stat= and tag= each
_STAT = re.compile(r"^([a-z_.]{1,64})\s*(>=|<=|>|<|=)\s*(-?\d{1,9}(?:\.\d{1,6})?)$")

# The query parameters of the routes that read their query by hand, for the OpenAPI (a
# client generator and schemathesis see them; the parsing above is what checks them).
_STRING = {"type": "string"}
PARAM_DOCS: dict[str, tuple[dict[str, Any], str]] = {
    "q": (
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 500,
            "example": 'résilier OR "mon contrat"',
        },
        "words to find: phrases in quotes, a trailing * for any ending, OR, NOT",
    ),
    "from": (_STRING, "calls started on or after: an ISO date or date-time (UTC if naive)"),
    "to": (_STRING, "calls started before the end of: an ISO date, or before a date-time"),
    "agent": ({"type": "string", "maxLength": 128}, "only this agent's calls"),
    "leg": ({"type": "string", "enum": list(LEGS)}, "only what this leg said"),
    "direction": ({"type": "string", "enum": list(DIRECTIONS)}, "only calls of this direction"),
    "call_id": ({"type": "string", "maxLength": 128}, "only this call"),
    "page": ({"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}, "from 1"),
    "page_size": (
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20},
        "results per page",
    ),
    "sort": ({"type": "string", "enum": ["relevance", "time"], "default": "relevance"}, ""),
    "format": (
        {"type": "string", "enum": ["json", "csv"], "default": "json"},
        "csv: every match as a file (newest first, at most 10,000 rows)",
    ),
    "interval": ({"type": "string", "enum": ["day", "week", "month"], "default": "day"}, ""),
    "stat": (
        {
            "type": "array",
            "items": {"type": "string", "maxLength": 100, "example": "longest_silence_s>30"},
            "maxItems": MAX_FILTERS,
        },
        "only calls whose statistic compares so: `name op number`, op one of > >= < <= =;"
        " names: " + ", ".join(sorted(FACT_NAMES)),
    ),
    "tag": (
        {"type": "array", "items": {"type": "string", "pattern": RULE_ID}, "maxItems": MAX_FILTERS},
        "only calls in this category (each tag given must hold)",
    ),
}


def documented(names: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """`openapi_extra` declaring these query parameters."""
    order = [n for n in PARAM_DOCS if n in names]
    return {
        "parameters": [
            {
                "name": n,
                "in": "query",
                "required": n in required,
                "schema": PARAM_DOCS[n][0],
                "description": PARAM_DOCS[n][1],
            }
            for n in order
        ]
    }


class BadRequest(ValueError):
    """A query-string problem; the message is the 400's reason."""


@dataclass(frozen=True)
class Params:
    """The checked query string of one request."""

    filters: Filters
    page: int
    page_size: int


def one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"parameter {name!r} given more than once")
    return values[0] if values else None


def _check_names(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _when(value: str, name: str, end: bool) -> datetime:
    """An ISO date (a whole day: `to` includes it) or an ISO date-time (UTC if naive)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name!r} must be an ISO date (2024-05-31) or date-time, not {value[:40]!r}"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or len(value) > 9:
        raise BadRequest(f"{name!r} must be a whole number from {lo} to {hi}")
    n = int(value)
    if not lo <= n <= hi:
        raise BadRequest(f"{name!r} must be from {lo} to {hi}, not {n}")
    return n


def choice(value: str | None, name: str, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        raise BadRequest(f"{name!r} must be one of {', '.join(choices)}, not {value[:40]!r}")
    return value


def parse_params(request: Request, allowed: set[str]) -> Params:
    _check_names(request, allowed)
    since_raw, until_raw = one(request, "from"), one(request, "to")
    since = _when(since_raw, "from", end=False) if since_raw else None
    until = _when(until_raw, "to", end=True) if until_raw else None
    if since and until and since >= until:
        raise BadRequest("'from' must be before 'to'")
    call_id = one(request, "call_id")
    if call_id is not None:
        try:
            check_id(call_id, "call_id")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    agent = one(request, "agent")
    if agent is not None and not 0 < len(agent) <= 128:
        raise BadRequest("'agent' must be 1 to 128 characters")
    filters = Filters(
        facts=_facts(request) if "stat" in allowed else (),
        tags=_tags(request) if "tag" in allowed else (),
        since=since,
        until=until,
        agent_id=agent,
        leg=choice(one(request, "leg"), "leg", LEGS) if "leg" in allowed else None,
        direction=choice(one(request, "direction"), "direction", DIRECTIONS),
        call_id=call_id,
    )
    return Params(
        filters=filters,
        page=_int(one(request, "page"), "page", 1, 1, MAX_PAGE),
        page_size=_int(one(request, "page_size"), "page_size", 20, 1, MAX_PAGE_SIZE),
    )


def _facts(request: Request) -> tuple[FactFilter, ...]:
    values = request.query_params.getlist("stat")
    if len(values) > MAX_FILTERS:
        raise BadRequest(f"at most {MAX_FILTERS} 'stat' filters")
    out = []
    for value in values:
        m = _STAT.match(value.strip())
        if m is None:
            raise BadRequest(
                f"'stat' is `name op number` (longest_silence_s>30), not {value[:60]!r}"
            )
        name, op, number = m.groups()
        if name not in FACT_NAMES:
            raise BadRequest(f"no statistic {name!r}; known: {', '.join(sorted(FACT_NAMES))}")
        out.append(FactFilter(name, op, float(number)))  # type: ignore[arg-type]
    return tuple(out)


def _tags(request: Request) -> tuple[str, ...]:
    values = request.query_params.getlist("tag")
    if len(values) > MAX_FILTERS:
        raise BadRequest(f"at most {MAX_FILTERS} 'tag' filters")
    for value in values:
        if not re.match(RULE_ID, value):
            raise BadRequest(f"'tag' is a category id, not {value[:60]!r}")
    return tuple(values)


def parse_q(value: str | None) -> Node:
    if value is None or not value.strip():
        raise BadRequest("'q' is required: the words to search for")
    try:
        return parse_query(value)
    except QueryError as exc:
        raise BadRequest(f"bad query: {exc}") from None
