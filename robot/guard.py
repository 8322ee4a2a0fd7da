"""The outbound compliance guard: may this automated call be placed now?

Rules, checked in this order (the first that fails names the refusal):
`sector` (cold calling banned: energy renovation, CPF training), `caller_id` (no 06/07
mobile caller ID), `opposition` (the callee is on the tenant's BLOCTEL-style list),
`calling_hours` (Monday-Friday 10:00-13:00 and 14:00-20:00 local time, end excluded),
`public_holiday` (French public holidays), `frequency` (at most 4 automated calls per
callee per rolling 30 days, across every campaign of the tenant). Every value is a
per-tenant policy; the defaults are the law. Every decision goes to the audit table;
refusals are also counted and published as `robot.refused`.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.events import RobotRefused
from pipeline.logs import ctx
from pipeline.metrics import Metrics
from robot.holidays import SUBDIVISIONS, holiday_name
from robot.numbers import to_e164
from robot.store import AuditEntry, RobotStore

log = logging.getLogger(__name__)

RULES = ("sector", "caller_id", "opposition", "calling_hours", "public_holiday", "frequency")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def fold(text: str) -> str:
    """Lower case, accents and punctuation removed, single spaces: how sectors compare."""
    t = unicodedata.normalize("NFKD", text.lower())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", t).split())


class CallingPolicy(BaseModel):
    """A tenant's rules for automated outbound calls (defaults: French law)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Europe/Paris"
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Monday = 0
    windows: list[str] = Field(default_factory=lambda: ["10:00-13:00", "14:00-20:00"])
    public_holidays: bool = True
    # A subdivision with holidays of its own: "57" / "6AE" (Alsace-Moselle), "971".. (overseas).
    holiday_subdivision: str | None = None
    extra_holidays: list[date] = Field(default_factory=list)
    max_calls: int = Field(default=4, ge=1)
    period_days: int = Field(default=30, ge=1)
    banned_sectors: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "energy_renovation": [
                "energy renovation",
                "renovation energetique",
                "energy efficiency renovation",
                "home insulation",
            ],
            "cpf_training": ["cpf", "compte personnel de formation"],
        }
    )
    banned_caller_prefixes: list[str] = Field(default_factory=lambda: ["+336", "+337"])

    @field_validator("holiday_subdivision")
    @classmethod
    def _subdivision(cls, v: str | None) -> str | None:
        if v is not None and v not in SUBDIVISIONS:
            raise ValueError(f"unknown subdivision {v!r}; known: {', '.join(SUBDIVISIONS)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if any(d not in range(7) for d in v):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return sorted(set(v))

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        for w in v:
            m = _WINDOW.match(w)
            if not m or (m[1], m[2]) >= (m[3], m[4]) or (m[3] == "24" and m[4] != "00"):
                raise ValueError(f"window {w!r} must be HH:MM-HH:MM with start before end")
        return v

    @model_validator(mode="after")
    def _sectors(self) -> CallingPolicy:
        self.banned_sectors = {
            k: [fold(a) for a in [k.replace("_", " "), *aliases] if fold(a)]
            for k, aliases in self.banned_sectors.items()
        }
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The policy's time zone."""
        return ZoneInfo(self.timezone)

    def spans(self) -> list[tuple[time, time | None]]:
        """Windows as (start, end) local times; end None means midnight."""
        out: list[tuple[time, time | None]] = []
        for w in self.windows:
            a, b = w.split("-")
            end = None if b == "24:00" else time.fromisoformat(b)
            out.append((time.fromisoformat(a), end))
        return out


@dataclass(frozen=True)
class CallRequest:
    """What the guard judges: one automated call to one callee at one time."""

    tenant: str
    callee: str
    caller_id: str
    sector: str
    at: datetime


@dataclass(frozen=True)
class Decision:
    """The verdict: allowed, or the rule that refused and why; numbers in E.164."""

    allowed: bool
    rule: str | None
    reason: str
    callee: str
    caller_id: str

    def as_dict(self) -> dict[str, object]:
        """The API shape: {allowed, rule, reason}."""
        return {"allowed": self.allowed, "rule": self.rule, "reason": self.reason}


def aware(at: datetime, tz: ZoneInfo) -> datetime:
    """A naive time is read in the policy's time zone."""
    return at.replace(tzinfo=tz) if at.tzinfo is None else at


def _calendar(policy: CallingPolicy, at: datetime) -> tuple[str, str] | None:
    """(rule, reason) when the calendar forbids calling at `at`, else None."""
    local = aware(at, policy.tz).astimezone(policy.tz)
    hhmm = local.strftime("%H:%M")
    day = local.date()
    if policy.public_holidays:
        extra = {d: "tenant holiday" for d in policy.extra_holidays}
        name = holiday_name(day, extra, policy.holiday_subdivision)
        if name is not None:
            return "public_holiday", f"{day.isoformat()} is a public holiday ({name})"
    if local.weekday() not in policy.weekdays:
        return "calling_hours", f"no automated calls on {DAY_NAMES[local.weekday()]}"
    t = local.time()
    for start, end in policy.spans():
        if start <= t and (end is None or t < end):
            return None
    return (
        "calling_hours",
        f"{hhmm} {policy.timezone} is outside the calling hours {', '.join(policy.windows)}",
    )


def next_allowed(policy: CallingPolicy, at: datetime, horizon_days: int = 31) -> datetime | None:
    """The first instant at or after `at` the calendar allows (None beyond the horizon)."""
    tz = policy.tz
    local = aware(at, tz).astimezone(tz)
    if _calendar(policy, local) is None:
        return local
    for offset in range(horizon_days + 1):
        day = local.date() + timedelta(days=offset)
        for start, _ in sorted(policy.spans()):
            cand = datetime.combine(day, start, tzinfo=tz)
            if cand >= local and _calendar(policy, cand) is None:
                return cand
    return None


class Guard:
    """Judges calls against a tenant's policy, records placed calls, audits every decision."""

    def __init__(
        self,
        store: RobotStore,
        metrics: Metrics,
        policy_of: Callable[[str], CallingPolicy],
        publish: Callable[[RobotRefused], None] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.policy_of = policy_of
        self.publish = publish

    def judge(self, req: CallRequest, policy: CallingPolicy) -> tuple[str | None, str]:
        """(rule, reason) of the first failing rule, or (None, reason) when allowed.

        Numbers in `req` must already be E.164.
        """
        sector = fold(req.sector)
        for key, aliases in policy.banned_sectors.items():
            for alias in aliases:
                if re.search(rf"\b{re.escape(alias)}\b", sector):
                    return "sector", (
                        f"sector {req.sector!r} ({key.replace('_', ' ')}) may not be cold-called"
                    )
        for prefix in policy.banned_caller_prefixes:
            if req.caller_id.startswith(prefix):
                return "caller_id", (
                    f"caller ID {req.caller_id} is a mobile number ({prefix}...)"
                    "; automated calls may not present one"
                )
        if self.store.is_opposed(req.tenant, req.callee):
            return "opposition", f"{req.callee} is on the opposition list"
        cal = _calendar(policy, req.at)
        if cal is not None:
            return cal
        until = aware(req.at, policy.tz).timestamp()
        since = until - policy.period_days * 86400
        n = self.store.count_calls(req.tenant, req.callee, since, until)
        if n >= policy.max_calls:
            return "frequency", (
                f"{req.callee} already had {n} automated calls in the last"
                f" {policy.period_days} days (at most {policy.max_calls})"
            )
        return None, f"allowed: {n + 1} of {policy.max_calls} calls in {policy.period_days} days"

    def check(
        self,
        tenant: str,
        callee: str,
        caller_id: str,
        sector: str,
        at: datetime | None = None,
        *,
        kind: str = "check",
        place_call_id: str | None = None,
        campaign_id: str | None = None,
    ) -> Decision:
        """Judge one call; with `place_call_id` an allowed call is also counted, atomically.

        Raises NumberError when callee or caller ID is not a telephone number.
        """
        callee_n = to_e164(callee)
        caller_n = to_e164(caller_id)
        policy = self.policy_of(tenant)
        when = aware(at or datetime.now(UTC), policy.tz)
        req = CallRequest(tenant, callee_n, caller_n, sector, when)
        with self.store.transaction():
            rule, reason = self.judge(req, policy)
            if rule is None and place_call_id is not None:
                self.store.record_call(
                    tenant, callee_n, when.timestamp(), place_call_id, campaign_id
                )
        decision = Decision(rule is None, rule, reason, callee_n, caller_n)
        self._log(req, decision, kind, place_call_id, campaign_id)
        return decision

    def _log(
        self,
        req: CallRequest,
        d: Decision,
        kind: str,
        call_id: str | None,
        campaign_id: str | None,
    ) -> None:
        self.store.audit(
            AuditEntry(
                req.tenant,
                req.at,
                kind,
                req.callee,
                req.caller_id,
                req.sector,
                d.allowed,
                d.rule,
                d.reason,
                call_id,
                campaign_id,
            )
        )
        self.metrics.inc("robot_guard_decisions_total", kind=kind, allowed=str(d.allowed).lower())
        if d.allowed:
            log.info(
                "guard allowed %s call to %s: %s",
                kind,
                req.callee,
                d.reason,
                **ctx(req.tenant, call_id),
            )
            return
        self.metrics.inc("robot_refusals_total", rule=d.rule or "")
        log.info(
            "guard refused %s call to %s (%s): %s",
            kind,
            req.callee,
            d.rule,
            d.reason,
            **ctx(req.tenant, call_id),
        )
        if self.publish is not None:
            self.publish(
                RobotRefused(
                    tenant=req.tenant,
                    call_id=call_id or f"refused-{uuid.uuid4().hex[:12]}",
                    rule=d.rule or "",
                    reason=d.reason,
                    callee=req.callee,
                    campaign_id=campaign_id,
                )
            )


def policy_of(store: RobotStore, tenant: str) -> CallingPolicy:
    """The tenant's stored policy, or the default (the law)."""
    body = store.policy(tenant)
    return CallingPolicy() if body is None else CallingPolicy.model_validate(body)
