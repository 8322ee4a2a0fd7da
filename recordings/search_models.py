"""The answers of the analysts' routes (recordings/search_api.py), as typed models for the
OpenAPI: what a client generator builds its classes from. Times are ISO 8601 strings in
UTC (`...Z`), as the routes write them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.events import Direction, Leg
from recordings.call_stats import CallStats


class AudioLink(BaseModel):
    """Where to play a hit: the call's audio route (with a key), and a store link when the
    object store gives one (S3, valid an hour), already at the hit's second."""

    url: str
    start: float
    presigned_url: str | None


class SearchHit(BaseModel):
    """One utterance that matches."""

    call_id: str
    utterance_id: str
    leg: Leg
    start: float = Field(description="seconds from the call's start")
    end: float
    text: str
    snippet: str = Field(description="HTML-escaped text with the matches in <mark>")
    call_started_at: str
    agent_id: str | None
    direction: Direction | None
    score: float
    audio: AudioLink


class SearchPage(BaseModel):
    """One page of matches."""

    q: str | None
    total: int
    total_exact: bool = Field(description="false: `total` is a floor (the count stopped)")
    page: int
    page_size: int
    sort: Literal["relevance", "time"]
    hits: list[SearchHit]


class CallSummary(BaseModel):
    """A call as listed."""

    call_id: str
    started_at: str
    started_known: bool = Field(description="false: the start was not sent, upload time used")
    agent_id: str | None
    direction: Direction | None
    caller: str | None
    callee: str | None
    duration: float | None = Field(description="seconds")
    source: str | None = Field(description="live or batch: where its transcript came from")
    held: bool = Field(description="under legal hold")
    utterances: int
    audio_url: str
    tags: list[str] = Field(description="the categories the call met at its end")


class CallList(BaseModel):
    """One page of a tenant's calls, newest first."""

    total: int
    page: int
    page_size: int
    calls: list[CallSummary]


class CallLine(BaseModel):
    """One indexed utterance of a call."""

    utterance_id: str
    leg: Leg
    start: float
    end: float
    text: str
    source: str


class CallLinks(BaseModel):
    """URLs that work without the key for a few hours (players and downloads)."""

    audio: str
    transcript: str


class CallDetail(CallSummary):
    """A call with its transcript in speaking order."""

    links: CallLinks
    transcript: list[CallLine]
    statistics: CallStats | None = Field(
        description="talk, silence, talk-over and interruptions (none before the call ends)"
    )


class TermBucket(BaseModel):
    """Matches in one period."""

    period: str
    utterances: int
    calls: int


class TermSeries(BaseModel):
    """One query's counts over time."""

    q: str
    total: int
    buckets: list[TermBucket]


class TermStats(BaseModel):
    """Counts per period, one series per `q`."""

    interval: Literal["day", "week", "month"]
    series: list[TermSeries]


class HoldState(BaseModel):
    """A call's legal hold."""

    call_id: str
    held: bool


class CallDeleted(BaseModel):
    """What deleting a call removed; `ended` when it was live and was hung up first."""

    call_id: str
    deleted: bool
    objects: int | None = None
    utterances: int | None = None
    ended: dict[str, Any] | None = None
