"""GET /v1/analytics: the dashboard's figures over a period, from the statistics and
categories the index keeps for every finished call: per period and per agent, the calls,
the agent's talk ratio, silence, talk-over and interruptions (means, and totals of counts),
and the calls per category."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from pipeline.auth import Principal, require
from pipeline.services import Services
from recordings.index import index_of
from recordings.index.base import FactRow
from recordings.query_params import BadRequest, choice, documented, one, parse_params

Reader = Annotated[Principal, Depends(require("analyst", "admin"))]
ANALYTICS_PARAMS = {"from", "to", "agent", "direction", "interval", "stat", "tag"}
# The statistics the dashboard shows: (name in the index, name in the answer).
FIGURES = (
    ("duration_s", "duration_s"),
    ("agent.talk_ratio", "agent_talk_ratio"),
    ("longest_silence_s", "longest_silence_s"),
    ("non_talk_s", "non_talk_s"),
    ("talk_over_s", "talk_over_s"),
    ("agent.interruptions", "agent_interruptions"),
    ("customer.interruptions", "customer_interruptions"),
)
COUNTS = {"agent.interruptions", "customer.interruptions"}  # shown as totals, not means


class Figures(BaseModel):
    """Means over the calls (totals for interruptions); null when no call had the figure."""

    calls: int
    duration_s: float | None = None
    agent_talk_ratio: float | None = Field(default=None, description="0-1")
    longest_silence_s: float | None = None
    non_talk_s: float | None = None
    talk_over_s: float | None = None
    agent_interruptions: float | None = Field(default=None, description="times the agent cut in")
    customer_interruptions: float | None = None


class PeriodFigures(Figures):
    """One period's calls."""

    period: str
    tags: dict[str, int] = Field(description="calls per category")


class AgentFigures(Figures):
    """One agent's calls over the whole range."""

    agent_id: str | None


class TagCount(BaseModel):
    """Calls of one category over the whole range."""

    tag: str
    calls: int


class Analytics(BaseModel):
    """The dashboard."""

    interval: str
    periods: list[PeriodFigures]
    agents: list[AgentFigures]
    tags: list[TagCount]


def _figures(rows: Iterable[FactRow]) -> dict[str, Any]:
    """Rows of one group (several agents or periods) merged: weighted means, totals."""
    calls: dict[str, int] = defaultdict(int)
    sums: dict[str, float] = defaultdict(float)
    for r in rows:
        calls[r.name] += r.calls
        sums[r.name] += r.total
    out: dict[str, Any] = {"calls": calls.get("duration_s", 0)}
    for name, field in FIGURES:
        if calls.get(name):
            value = sums[name] if name in COUNTS else sums[name] / calls[name]
            out[field] = round(value, 3)
    return out


def router(services: Services) -> APIRouter:
    """The analytics route."""
    r = APIRouter()

    @r.get("/v1/analytics", response_model=Analytics, openapi_extra=documented(ANALYTICS_PARAMS))
    def analytics(request: Request, p: Reader) -> dict[str, Any]:
        """Per period (day, week or month of the call's start, UTC) and per agent."""
        try:
            params = parse_params(request, ANALYTICS_PARAMS)
            interval = choice(one(request, "interval"), "interval", ("day", "week", "month"))
        except BadRequest as exc:
            services.metrics.inc("api_rejections_total", route="analytics", cause="bad_query")
            raise HTTPException(400, str(exc)) from None
        interval = interval or "day"
        index = index_of(services)
        names = [name for name, _ in FIGURES]
        rows = index.fact_summary(p.tenant, params.filters, interval, names)  # type: ignore[arg-type]
        tags = index.tag_counts(p.tenant, params.filters, interval)  # type: ignore[arg-type]
        by_period: dict[str, list[FactRow]] = defaultdict(list)
        by_agent: dict[str | None, list[FactRow]] = defaultdict(list)
        for row in rows:
            by_period[row.period].append(row)
            by_agent[row.agent_id].append(row)
        tags_by_period: dict[str, dict[str, int]] = defaultdict(dict)
        totals: dict[str, int] = defaultdict(int)
        for t in tags:
            tags_by_period[t.period][t.tag] = t.calls
            totals[t.tag] += t.calls
        periods = sorted(set(by_period) | set(tags_by_period))
        return {
            "interval": interval,
            "periods": [
                {"period": k, **_figures(by_period[k]), "tags": tags_by_period.get(k, {})}
                for k in periods
            ],
            "agents": [
                {"agent_id": a, **_figures(by_agent[a])}
                for a in sorted(by_agent, key=lambda a: (a is None, a or ""))
            ],
            "tags": [
                {"tag": t, "calls": n} for t, n in sorted(totals.items(), key=lambda x: -x[1])
            ],
        }

    return r
