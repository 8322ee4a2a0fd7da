"""The robot's routes (roles pbx and admin; the tenant always comes from the key).

- POST /v1/robot/check: the guard's verdict {allowed, rule, reason} without placing a call.
- POST /v1/robot/calls: guard first, then a robot session on the given media peer. A
  refusal answers **403** with {allowed: false, rule, reason} and places nothing (403, not
  409: the request is well-formed and nothing conflicts; the law forbids this call now).
- GET /v1/robot/calls/{id}, DELETE /v1/robot/calls/{id} (hang up).
- PUT/GET /v1/robot/scenarios/{name}: a YAML/JSON scenario, validated (422 lists every
  error with its path).
- POST/GET /v1/robot/campaigns[/{id}]: schedule many calls; progress and outcomes.
- Admin only: PUT /v1/robot/opposition (BLOCTEL-style file; replaces the tenant's list),
  GET/PUT /v1/robot/policy (calling hours, holidays, caps, sectors), GET /v1/robot/audit.
Numbers that are not numbers answer 422 with the reason.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.api.errors import errors
from pipeline.auth import Principal, require
from pipeline.events import MediaPeer, RobotStart
from pipeline.ids import check_id
from pipeline.ingest.receiver import CallExists, NoFreePort
from pipeline.logs import ctx
from pipeline.media.codec import canonical_codec
from pipeline.services import Services
from robot.api_models import (
    AuditEntry,
    GuardVerdict,
    OppositionImported,
    OppositionInfo,
    RobotSession,
    ScenarioSaved,
    ScenarioSource,
)
from robot.calls import BadCall, CallRefused, is_inline, sessions_of
from robot.campaigns import (
    CampaignRequest,
    CampaignRunner,
    HttpDialer,
    bad_numbers,
    new_campaign_id,
    session_placer,
)
from robot.components import guard_of
from robot.guard import CallingPolicy
from robot.numbers import NumberError
from robot.opposition import parse_opposition
from robot.store import robot_store
from robot.validate import ScenarioInvalid, load_scenario

log = logging.getLogger(__name__)

Caller = Annotated[Principal, Depends(require("pbx", "admin"))]
AdminCaller = Annotated[Principal, Depends(require("admin"))]
MAX_BODY = 2 * 1024 * 1024
MAX_LIST = 64 * 1024 * 1024


class CheckRequest(BaseModel):
    """Body of POST /v1/robot/check."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(default=None, max_length=64)
    callee: str = Field(max_length=64)
    caller_id: str = Field(max_length=64)
    sector: str = Field(min_length=1, max_length=128)
    at: datetime | None = None


class Media(BaseModel):
    """Where the robot sends its prompts: RTP to host:port, or back over the call's own
    stream (`twilio`, `audiosocket`), which the PBX opens naming the call's id."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    codec: str = "PCMU"
    transport: Literal["rtp", "twilio", "audiosocket"] = "rtp"

    @model_validator(mode="after")
    def _address(self) -> Media:
        if self.transport == "rtp" and (self.host is None or self.port is None):
            raise ValueError("RTP media needs a host and a port")
        if self.transport != "rtp" and (self.host or self.port or self.codec != "PCMU"):
            raise ValueError(f"{self.transport} media takes no host, port or codec")
        return self

    @field_validator("codec")
    @classmethod
    def _codec(cls, v: str) -> str:
        c = canonical_codec(v)
        if c not in ("PCMU", "PCMA"):
            raise ValueError("the robot speaks PCMU or PCMA")
        return c


class CallBody(BaseModel):
    """Body of POST /v1/robot/calls."""

    model_config = ConfigDict(extra="forbid")

    call_id: str | None = Field(default=None, max_length=128)
    tenant: str | None = Field(default=None, max_length=64)
    scenario: str = Field(min_length=1, max_length=64 * 1024)  # a name, or the document
    variables: dict[str, Any] = Field(default_factory=dict, max_length=64)
    media: Media
    callee: str | None = Field(default=None, max_length=64)
    caller_id: str | None = Field(default=None, max_length=64)
    sector: str | None = Field(default=None, max_length=128)

    @field_validator("call_id")
    @classmethod
    def _call_id(cls, v: str | None) -> str | None:
        return None if v is None else check_id(v, "call_id")


def _reject(services: Services, status: int, detail: Any, cause: str) -> HTTPException:
    services.metrics.inc("api_rejections_total", route="robot", cause=cause)
    return HTTPException(status, detail)


def _tenant(services: Services, principal: Principal, asked: str | None) -> str:
    if asked is not None and asked != principal.tenant:
        raise _reject(
            services, 403, f"this key acts for tenant {principal.tenant!r} only", "tenant"
        )
    return principal.tenant


async def _text(services: Services, request: Request, limit: int) -> str:
    body = await request.body()
    if len(body) > limit:
        raise _reject(services, 413, f"body larger than {limit} bytes", "too_large")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _reject(services, 422, "body is not UTF-8 text", "encoding") from None


def campaigns_of(services: Services) -> dict[str, CampaignRunner]:
    """The campaigns this process runs, by id."""
    runners: dict[str, CampaignRunner] = services.component("robot.campaigns", dict)
    return runners


def router(services: Services) -> APIRouter:
    """Guard, calls, scenarios, campaigns, opposition list, policy and audit routes."""
    r = APIRouter()
    store = robot_store(services)

    @r.post("/v1/robot/check", response_model=GuardVerdict)
    def check(body: CheckRequest, principal: Caller) -> dict[str, Any]:
        """The guard's verdict for one call, placing nothing."""
        tenant = _tenant(services, principal, body.tenant)
        try:
            d = guard_of(services).check(
                tenant, body.callee, body.caller_id, body.sector, body.at, kind="check"
            )
        except NumberError as exc:
            raise _reject(services, 422, str(exc), "bad_number") from None
        return {**d.as_dict(), "callee": d.callee, "caller_id": d.caller_id}

    @r.post(
        "/v1/robot/calls",
        status_code=201,
        response_model=RobotSession,
        responses=errors(404, 409, 503),
    )
    def place_call(body: CallBody, principal: Caller) -> dict[str, Any]:
        """Guard, then a robot session: returns where the caller's RTP must be sent."""
        tenant = _tenant(services, principal, body.tenant)
        call_id = body.call_id or f"robot-{uuid.uuid4().hex[:16]}"
        start = RobotStart(
            tenant=tenant,
            call_id=call_id,
            scenario=body.scenario,
            variables=body.variables,
            media=MediaPeer(
                host=body.media.host,
                port=body.media.port,
                codec=body.media.codec,  # type: ignore[arg-type]
                transport=body.media.transport,
            ),
            callee=body.callee,
            caller_id=body.caller_id,
            sector=body.sector,
        )
        try:
            session = sessions_of(services).place(start)
        except CallRefused as exc:
            d = exc.decision
            raise _reject(
                services, 403, {**d.as_dict(), "callee": d.callee}, d.rule or "guard"
            ) from None
        except NumberError as exc:
            raise _reject(services, 422, str(exc), "bad_number") from None
        except ScenarioInvalid as exc:
            raise _reject(
                services, 422, {"errors": [e.as_dict() for e in exc.errors]}, "scenario"
            ) from None
        except BadCall as exc:
            status = 404 if str(exc).startswith("unknown scenario") else 422
            raise _reject(services, status, str(exc), "bad_call") from None
        except CallExists:
            raise _reject(services, 409, f"call {call_id!r} is already live", "exists") from None
        except NoFreePort as exc:
            raise _reject(services, 503, str(exc), "no_port") from None
        return session.state()

    def _session_state(tenant: str, call_id: str) -> dict[str, Any]:
        session = sessions_of(services).get(call_id)
        if session is not None and session.tenant == tenant:
            return session.state()
        stored = store.session(tenant, call_id)
        if stored is None:
            raise _reject(services, 404, "no such robot call", "unknown")
        return stored

    @r.get("/v1/robot/calls/{call_id}", response_model=RobotSession)
    def get_call(call_id: str, principal: Caller) -> dict[str, Any]:
        """A session's state: status, current step, steps, slots, outcome."""
        return _session_state(principal.tenant, call_id)

    @r.delete("/v1/robot/calls/{call_id}", response_model=RobotSession)
    def hang_up(call_id: str, principal: Caller) -> dict[str, Any]:
        """End a running session now (outcome `abandoned`)."""
        session = sessions_of(services).get(call_id)
        if session is None or session.tenant != principal.tenant:
            raise _reject(services, 404, "no such running robot call", "unknown")
        session.hang_up("abandoned")
        session.wait(10.0)
        return session.state()

    @r.put("/v1/robot/scenarios/{name}", response_model=ScenarioSaved)
    async def put_scenario(name: str, request: Request, principal: Caller) -> dict[str, Any]:
        """Store a scenario (YAML or JSON text); 422 lists every error with its path."""
        try:
            check_id(name, "scenario name")
        except ValueError as exc:
            raise _reject(services, 422, str(exc), "bad_name") from None
        text = await _text(services, request, MAX_BODY)
        try:
            scenario = load_scenario(text)
        except ScenarioInvalid as exc:
            raise _reject(
                services, 422, {"errors": [e.as_dict() for e in exc.errors]}, "scenario"
            ) from None
        if scenario.name != name:
            raise _reject(
                services, 422, f"the document's name is {scenario.name!r}, not {name!r}", "scenario"
            )
        store.put_scenario(principal.tenant, name, text)
        log.info("scenario %s stored", name, **ctx(principal.tenant, None))
        return {
            "name": name,
            "steps": len(scenario.steps),
            "variables": scenario.variables,
            "slots": sorted(scenario.slots()),
        }

    @r.get("/v1/robot/scenarios/{name}", response_model=ScenarioSource)
    def get_scenario(name: str, principal: Caller) -> dict[str, Any]:
        """A stored scenario's text."""
        source = store.scenario(principal.tenant, name)
        if source is None:
            raise _reject(services, 404, "no such scenario", "unknown")
        return {"name": name, "source": source}

    @r.post("/v1/robot/campaigns", status_code=201)
    def create_campaign(body: dict[str, Any], principal: Caller) -> dict[str, Any]:
        """Schedule a campaign; 422 lists callee numbers that are not numbers."""
        try:
            req = CampaignRequest.model_validate(body)
        except ValidationError as exc:
            errs = [
                {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            raise _reject(services, 422, {"errors": errs}, "campaign") from None
        bad = bad_numbers(req.callees)
        if bad:
            raise _reject(
                services,
                422,
                {
                    "errors": [
                        {"path": f"callees[{b['index']}].number", "message": b["reason"]}
                        for b in bad
                    ]
                },
                "bad_number",
            )
        try:
            scenario = (
                load_scenario(req.scenario)
                if is_inline(req.scenario)
                else load_scenario(store.scenario(principal.tenant, req.scenario) or "")
            )
        except ScenarioInvalid as exc:
            detail = (
                f"unknown scenario {req.scenario!r}"
                if not is_inline(req.scenario)
                and store.scenario(principal.tenant, req.scenario) is None
                else {"errors": [e.as_dict() for e in exc.errors]}
            )
            raise _reject(services, 422, detail, "scenario") from None
        missing = sorted(
            {v for c in req.callees for v in scenario.variables if v not in c.variables}
        )
        if missing:
            raise _reject(
                services, 422, f"callees lack variables: {', '.join(missing)}", "variables"
            )
        url = services.settings.robot.dialer_url
        dialer = services.component("robot.dialer", lambda: HttpDialer(url) if url else None)
        if dialer is None:
            raise _reject(
                services, 422, "no dialer configured (CALLPIPE_ROBOT__DIALER_URL)", "no_dialer"
            )
        rs = services.settings.robot
        runner = CampaignRunner(
            principal.tenant,
            new_campaign_id(),
            req,
            guard=guard_of(services),
            store=store,
            place=session_placer(services, dialer),
            concurrency=rs.campaign_concurrency,
            retry_s=rs.campaign_retry_s,
            attempts=rs.campaign_attempts,
        )
        campaigns_of(services)[runner.id] = runner
        runner.start()
        return runner.progress()

    @r.get("/v1/robot/campaigns/{campaign_id}")
    def get_campaign(campaign_id: str, principal: Caller) -> dict[str, Any]:
        """A campaign's progress and outcomes."""
        runner = campaigns_of(services).get(campaign_id)
        if runner is not None and runner.tenant == principal.tenant:
            return dict(runner.progress())
        stored = store.campaign(principal.tenant, campaign_id)
        if stored is None:
            raise _reject(services, 404, "no such campaign", "unknown")
        return stored

    @r.put("/v1/robot/opposition", response_model=OppositionImported)
    async def put_opposition(request: Request, principal: AdminCaller) -> dict[str, Any]:
        """Replace the tenant's opposition list with a BLOCTEL-style file."""
        parsed = parse_opposition(await _text(services, request, MAX_LIST))
        n = store.replace_opposition(principal.tenant, parsed.numbers, len(parsed.rejected))
        services.metrics.set("robot_opposition_numbers", n, tenant=principal.tenant)
        return {
            "numbers": n,
            "rejected": [{"line": ln, "reason": why} for ln, why in parsed.rejected[:100]],
            "rejected_total": len(parsed.rejected),
        }

    @r.get("/v1/robot/opposition", response_model=OppositionInfo)
    def get_opposition(principal: AdminCaller) -> dict[str, Any]:
        """Size and date of the tenant's list."""
        return store.opposition_info(principal.tenant)

    @r.get("/v1/robot/policy", response_model=CallingPolicy)
    def get_policy(principal: AdminCaller) -> dict[str, Any]:
        """The tenant's calling policy (the default when none was set)."""
        body = store.policy(principal.tenant)
        return CallingPolicy.model_validate(body or {}).model_dump(mode="json")

    @r.put("/v1/robot/policy", response_model=CallingPolicy)
    def put_policy(body: dict[str, Any], principal: AdminCaller) -> dict[str, Any]:
        """Set the tenant's calling policy (fields left out keep the law's defaults)."""
        try:
            policy = CallingPolicy.model_validate(body)
        except ValidationError as exc:
            errs = [
                {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            raise _reject(services, 422, {"errors": errs}, "policy") from None
        store.put_policy(principal.tenant, body)
        return policy.model_dump(mode="json")

    @r.get("/v1/robot/audit", response_model=list[AuditEntry])
    def audit(principal: AdminCaller, limit: int = 100) -> list[dict[str, Any]]:
        """The guard's latest decisions for the tenant, newest first."""
        return store.audit_entries(principal.tenant, max(1, min(limit, 1000)))

    return r
