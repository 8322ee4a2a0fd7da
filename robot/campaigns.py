"""Campaigns: many automated calls of one scenario, placed within the allowed hours.

POST /v1/robot/campaigns {scenario, callees [{number, variables}], caller_id, sector,
window {start, end}} stores the campaign and starts its runner (a thread): callees are
called at most `robot.campaign_concurrency` at a time; each call is judged by the guard
first (the placed call is counted at once, across every campaign of the tenant). A call
refused for the calendar waits for the next allowed instant; refused for any other rule,
it is not placed. Busy and no-answer are tried again `robot.campaign_retry_s` later,
`robot.campaign_attempts` times in all, within the rules and the window.

Calls are originated by a `Dialer`: the PBX's hook (`robot.dialer_url`). An answered call
gives the media peer the robot session talks to.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.events import MediaPeer, RobotStart
from pipeline.logs import ctx
from pipeline.services import Services
from robot.calls import sessions_of
from robot.guard import Guard, next_allowed
from robot.numbers import NumberError, to_e164
from robot.store import RobotStore

log = logging.getLogger(__name__)

RETRYABLE = ("busy", "no_answer")
CALENDAR_RULES = ("calling_hours", "public_holiday")


class Callee(BaseModel):
    """One number to call and the variables of its scenario."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(max_length=64)
    variables: dict[str, Any] = Field(default_factory=dict)


class Window(BaseModel):
    """When the campaign may call (within the guard's hours): start and end, ISO times."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _order(self) -> Window:
        for name in ("start", "end"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"window.{name} needs a time zone (e.g. +01:00 or Z)")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("window.start must be before window.end")
        return self


class CampaignRequest(BaseModel):
    """Body of POST /v1/robot/campaigns."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=128)
    scenario: str = Field(min_length=1)
    callees: list[Callee] = Field(min_length=1, max_length=100_000)
    caller_id: str
    sector: str = Field(min_length=1, max_length=128)
    window: Window = Field(default_factory=Window)

    @field_validator("caller_id")
    @classmethod
    def _caller(cls, v: str) -> str:
        return to_e164(v)


def bad_numbers(callees: list[Callee]) -> list[dict[str, Any]]:
    """Every callee number that is not one: [{index, number, reason}]."""
    out = []
    for i, c in enumerate(callees):
        try:
            to_e164(c.number)
        except NumberError as exc:
            out.append({"index": i, "number": c.number, "reason": str(exc)})
    return out


@dataclass(frozen=True)
class DialResult:
    """What the PBX says of an originated call."""

    status: str  # answered | busy | no_answer | failed
    media: MediaPeer | None = None


class Dialer(Protocol):
    """Originates outbound calls (the PBX)."""

    def dial(self, tenant: str, call_id: str, callee: str, caller_id: str) -> DialResult: ...


class HttpDialer:
    """The PBX's originate hook over HTTP."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def dial(self, tenant: str, call_id: str, callee: str, caller_id: str) -> DialResult:
        """POST the call; the answer says how it went and where the media goes."""
        try:
            resp = httpx.post(
                self.url,
                json={
                    "tenant": tenant,
                    "call_id": call_id,
                    "callee": callee,
                    "caller_id": caller_id,
                },
                timeout=self.timeout_s,
            )
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("dialer %s failed: %s", self.url, exc, **ctx(tenant, call_id))
            return DialResult("failed")
        media = body.get("media")
        return DialResult(
            str(body.get("status", "failed")), MediaPeer.model_validate(media) if media else None
        )


# (start request) -> the call's result: a session outcome, or busy/no_answer/failed
Placer = Callable[[RobotStart], str]


class CampaignRunner:
    """Runs one campaign to its end in a thread; its state is saved after every change."""

    def __init__(
        self,
        tenant: str,
        campaign_id: str,
        request: CampaignRequest,
        *,
        guard: Guard,
        store: RobotStore,
        place: Placer,
        concurrency: int,
        retry_s: float,
        attempts: int,
        clock: Callable[[], float] = time.time,
        poll_s: float = 1.0,
    ) -> None:
        self.tenant, self.id, self.request = tenant, campaign_id, request
        self.guard, self.store, self.place = guard, store, place
        self.concurrency, self.retry_s, self.attempts = concurrency, retry_s, attempts
        self.clock, self.poll_s = clock, poll_s
        self.entries: list[dict[str, Any]] = [
            {
                "index": i,
                "number": to_e164(c.number),
                "status": "pending",
                "attempts": 0,
                "next_at": 0.0,
                "result": None,
                "rule": None,
                "reason": None,
                "call_id": None,
            }
            for i, c in enumerate(request.callees)
        ]
        self.status = "running"
        self.created_at = datetime.now(UTC).isoformat()
        self._lock = threading.Condition()
        self._running = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Run in a daemon thread."""
        self._save()
        self._thread = threading.Thread(target=self.run, name=f"campaign-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop placing new calls (calls in progress finish)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the runner's thread."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Place due calls until every callee is settled or the window closes."""
        win = self.request.window
        try:
            while not self._stop.is_set():
                now = self.clock()
                with self._lock:
                    open_ = [e for e in self.entries if e["status"] in ("pending", "calling")]
                    if not open_:
                        break
                    if win.end is not None and now >= win.end.timestamp():
                        for e in self.entries:
                            if e["status"] == "pending":
                                e["status"], e["reason"] = "expired", "the window closed"
                        if self._running == 0:
                            break
                    for e in self.entries:
                        if self._running >= self.concurrency:
                            break
                        if e["status"] == "pending" and e["next_at"] <= now:
                            self._launch(e, now)
                    self._lock.wait(self.poll_s)
        finally:
            with self._lock:
                while self._running:
                    self._lock.wait(1.0)
            self.status = "stopped" if self._stop.is_set() else "finished"
            self._save()

    def _launch(self, e: dict[str, Any], now: float) -> None:
        """Judge and, if allowed, place one call (lock held)."""
        win = self.request.window
        policy = self.guard.policy_of(self.tenant)
        if win.start is not None and now < win.start.timestamp():
            e["next_at"] = win.start.timestamp()
            return
        call_id = f"{self.id}-{e['index']}-{e['attempts'] + 1}"
        decision = self.guard.check(
            self.tenant,
            e["number"],
            self.request.caller_id,
            self.request.sector,
            datetime.fromtimestamp(now, UTC),
            kind="campaign",
            place_call_id=call_id,
            campaign_id=self.id,
        )
        if not decision.allowed:
            if decision.rule in CALENDAR_RULES:
                nxt = next_allowed(policy, datetime.fromtimestamp(now, UTC))
                if nxt is not None:
                    e["next_at"] = nxt.timestamp()
                    e["rule"], e["reason"] = decision.rule, f"waiting: {decision.reason}"
                    self._save()
                    return
            e.update(status="refused", rule=decision.rule, reason=decision.reason)
            self._save()
            return
        e.update(status="calling", call_id=call_id, rule=None, reason=None)
        e["attempts"] += 1
        self._running += 1
        self._save()
        start = RobotStart(
            tenant=self.tenant,
            call_id=call_id,
            scenario=self.request.scenario,
            variables=self.request.callees[e["index"]].variables,
            callee=e["number"],
            caller_id=self.request.caller_id,
            sector=self.request.sector,
            campaign_id=self.id,
        )
        threading.Thread(
            target=self._call, args=(e, start), daemon=True, name=f"campaign-call-{call_id}"
        ).start()

    def _call(self, e: dict[str, Any], start: RobotStart) -> None:
        try:
            result = self.place(start)
        except Exception as exc:  # one bad call must not stop the campaign
            log.exception("campaign call failed", **ctx(self.tenant, start.call_id))
            result, e["reason"] = "failed", str(exc)
        with self._lock:
            self._running -= 1
            e["result"] = result
            if result in RETRYABLE and e["attempts"] < self.attempts:
                e["status"] = "pending"
                e["next_at"] = self.clock() + self.retry_s
            else:
                e["status"] = "done"
            self._save()
            self._lock.notify_all()

    # -- view --------------------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        """Counts by status and by result, and every callee's state."""
        with self._lock:
            entries = [dict(e) for e in self.entries]
        by_status: dict[str, int] = {}
        by_result: dict[str, int] = {}
        for e in entries:
            by_status[e["status"]] = by_status.get(e["status"], 0) + 1
            if e["status"] == "done" and e["result"]:
                by_result[e["result"]] = by_result.get(e["result"], 0) + 1
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.request.name,
            "status": self.status,
            "created_at": self.created_at,
            "total": len(entries),
            "by_status": by_status,
            "by_result": by_result,
            "callees": entries,
        }

    def _save(self) -> None:
        self.store.put_campaign(self.tenant, self.id, self.progress_unlocked())

    def progress_unlocked(self) -> dict[str, Any]:
        """`progress` for callers already holding the lock (the condition is reentrant)."""
        return self.progress()


def new_campaign_id() -> str:
    """A fresh campaign id."""
    return f"cmp-{uuid.uuid4().hex[:12]}"


def session_placer(services: Services, dialer: Dialer) -> Placer:
    """Dial through the PBX, then run the scenario on the answered call."""

    def place(start: RobotStart) -> str:
        assert start.callee is not None and start.caller_id is not None
        dial = dialer.dial(start.tenant, start.call_id, start.callee, start.caller_id)
        if dial.status != "answered":
            return dial.status
        if dial.media is None:
            return "failed"
        session = sessions_of(services).place(
            start.model_copy(update={"media": dial.media}), kind="campaign", guard=False
        )
        session.wait()
        return session.engine.result or "failed"

    return place
