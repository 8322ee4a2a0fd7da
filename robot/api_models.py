"""The voicebot routes' answers (robot/api.py), as typed models for the OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GuardVerdict(BaseModel):
    """The canvassing guard's verdict on one call (nothing placed)."""

    allowed: bool
    rule: str | None = Field(description="the rule that refused, if one did")
    reason: str | None
    callee: str | None = Field(description="the number as the guard read it (E.164)")
    caller_id: str | None


class RobotSession(BaseModel):
    """A voicebot call: where its audio goes, where the dialogue is, how it ended."""

    call_id: str
    tenant: str
    scenario: str
    status: str = Field(description="running, or ended")
    started_at: str
    media: dict[str, Any] = Field(description="where the caller's media goes (RTP or stream)")
    step: str | None = Field(description="the scenario step in progress")
    steps: list[dict[str, Any]] = Field(description="the steps taken (the last 200)")
    slots: dict[str, Any] = Field(description="what the caller answered, by slot")
    transfer: dict[str, Any] | None
    outcome: dict[str, Any] | None = Field(description="once ended: result, slots, duration")


class ScenarioSaved(BaseModel):
    """A scenario stored."""

    name: str
    steps: int
    variables: list[str]
    slots: list[str]


class ScenarioSource(BaseModel):
    """A stored scenario's text."""

    name: str
    source: str


class OppositionImported(BaseModel):
    """An opposition list (BLOCTEL-style) imported; the first 100 lines refused, and why."""

    numbers: int
    rejected: list[dict[str, int | str]]
    rejected_total: int


class OppositionInfo(BaseModel):
    """Size and date of the tenant's opposition list."""

    numbers: int
    rejected: int
    imported_at: str | None


class AuditEntry(BaseModel):
    """One guard decision, as logged."""

    id: int
    decided_at: str
    at: str
    kind: str
    callee: str | None
    caller_id: str | None
    sector: str | None
    allowed: bool
    rule: str | None
    reason: str | None
    call_id: str | None
    campaign_id: str | None
