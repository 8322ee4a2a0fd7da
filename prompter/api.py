"""The souffleur's routes: playbooks, knowledge-base articles, hint feedback and stats
(admin, agent), the agents' hint WebSocket, and the agent panel page.

The tenant always comes from the caller's key; names of another tenant's playbooks,
articles or hints answer 404 exactly as names that do not exist.
WebSocket `/v1/agents/{agent_id}/hints` (the agent's own key, or the tenant's admin's):
first `{"type": "hello", "agent_id", "calls": [the agent's calls in progress, as
call.started below], "replayed": n, "gap": true when hints were missed}`, then the hints
`?last_hint_id=` missed, then as they come: `hint` events, `{"type": "call.started",
"call_id", "caller", "callee", "direction", "started_at"}` and `{"type": "call.ended",
"call_id"}` of the agent's calls. Close codes: 4401 missing or unknown key, 4403 a key that
may not watch this agent's hints; a client that takes nothing for `prompter.ws_send_timeout_s`
is closed (1013).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from fastapi.responses import FileResponse
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocketDisconnect

from pipeline.api.fanout import forward, send_within, until_disconnect
from pipeline.api.limits import BodyTooLarge, read_bounded
from pipeline.auth import Principal, require, websocket_principal
from pipeline.ids import check_id
from pipeline.logs import ctx
from pipeline.services import Services
from prompter.api_models import (
    ArticleList,
    ArticleSaved,
    FeedbackSaved,
    PlaybookDetail,
    PlaybookList,
    PlaybookSaved,
    PrompterStats,
    article_body,
    playbook_body,
)
from prompter.delivery import hint_hub
from prompter.kb import Article
from prompter.store import PrompterStore, StoredPlaybook, prompter_store
from prompter.validate import PlaybookInvalid, load_playbook

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"
# Module level: FastAPI resolves these (postponed) annotations in the module's globals.
AdminCaller = Annotated[Principal, Depends(require("admin"))]
AgentCaller = Annotated[Principal, Depends(require("agent"))]


class Feedback(BaseModel):
    """An agent's verdict on one hint."""

    useful: bool


def _reject(services: Services, status: int, detail: Any, cause: str) -> HTTPException:
    services.metrics.inc("api_rejections_total", route="prompter", cause=cause)
    return HTTPException(status, detail)


def _name(services: Services, value: str, what: str) -> str:
    try:
        return check_id(value, what)
    except ValueError as exc:
        raise _reject(services, 422, str(exc), "bad_name") from None


def _playbook_summary(p: StoredPlaybook) -> dict[str, Any]:
    return {"name": p.name, "rules": len(p.playbook.rules), "updated_at": p.updated_at}


def router(services: Services) -> APIRouter:
    """Playbook, KB, feedback, stats and hint-stream routes; starts the hint hub."""
    r = APIRouter()
    store: PrompterStore = prompter_store(services)
    settings = services.settings.prompter
    metrics = services.metrics
    hub = hint_hub(services)
    hub.start()

    # -- playbooks ------------------------------------------------------------------------
    @r.put("/v1/playbooks/{name}", response_model=PlaybookSaved, openapi_extra=playbook_body())
    async def put_playbook(name: str, request: Request, p: AdminCaller) -> dict[str, Any]:
        """Create or replace a playbook (YAML, or JSON with a JSON content type)."""
        _name(services, name, "playbook name")
        try:
            body = await read_bounded(request, settings.max_playbook_kb * 1024)
        except BodyTooLarge as exc:
            raise _reject(services, 413, f"playbook {exc}", "too_large") from None
        fmt = "json" if "json" in request.headers.get("content-type", "") else "yaml"
        try:
            book = await asyncio.to_thread(load_playbook, body, settings, fmt)
        except PlaybookInvalid as exc:
            raise _reject(services, 422, exc.detail("playbook"), "invalid_playbook") from None
        created = store.put_playbook(p.tenant, name, book, body.decode())
        log.info(
            "playbook %s %s (%d rules)",
            name,
            "created" if created else "replaced",
            len(book.rules),
            **ctx(p.tenant, None),
        )
        return {
            "name": name,
            "rules": len(book.rules),
            "created": created,
            "version": store.version(p.tenant),
        }

    @r.get("/v1/playbooks", response_model=PlaybookList)
    def list_playbooks(p: AdminCaller) -> dict[str, Any]:
        """The tenant's playbooks."""
        return {"playbooks": [_playbook_summary(b) for b in store.playbooks(p.tenant)]}

    @r.get("/v1/playbooks/{name}", response_model=PlaybookDetail)
    def get_playbook(name: str, p: AdminCaller) -> dict[str, Any]:
        """One playbook: its validated form and the text it was sent as."""
        found = store.get_playbook(p.tenant, _name(services, name, "playbook name"))
        if found is None:
            raise _reject(services, 404, "no such playbook", "unknown_playbook")
        return {
            **_playbook_summary(found),
            "playbook": found.playbook.model_dump(mode="json", exclude_none=True),
            "source": found.source,
        }

    @r.delete("/v1/playbooks/{name}", status_code=204)
    def delete_playbook(name: str, p: AdminCaller) -> Response:
        """Delete a playbook (calls in progress keep their rules)."""
        if not store.delete_playbook(p.tenant, _name(services, name, "playbook name")):
            raise _reject(services, 404, "no such playbook", "unknown_playbook")
        return Response(status_code=204)

    # -- knowledge base -------------------------------------------------------------------
    @r.put(
        "/v1/kb/articles/{article_id}", response_model=ArticleSaved, openapi_extra=article_body()
    )
    async def put_article(article_id: str, request: Request, p: AdminCaller) -> dict[str, Any]:
        """Create or replace an article: {title, questions[], answer, language?, tags[]}."""
        _name(services, article_id, "article id")
        raw = await request.body()
        if len(raw) > settings.max_playbook_kb * 1024:
            raise _reject(services, 413, "article too large", "too_large")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _reject(services, 422, f"body is not JSON: {exc}", "bad_json") from None
        if not isinstance(data, dict):
            raise _reject(services, 422, "an article is a JSON object", "bad_json")
        if data.setdefault("id", article_id) != article_id:
            raise _reject(services, 422, "id in the body differs from the path", "bad_field")
        try:
            article = Article.model_validate(data)
        except ValidationError as exc:
            errors = [
                {"path": ".".join(str(x) for x in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            detail = {"message": f"invalid article: {len(errors)} error(s)", "errors": errors}
            raise _reject(services, 422, detail, "invalid_article") from None
        created = store.put_article(p.tenant, article)
        return {"id": article.id, "created": created, "version": store.version(p.tenant)}

    @r.get("/v1/kb/articles", response_model=ArticleList)
    def list_articles(p: AdminCaller) -> dict[str, Any]:
        """The tenant's articles."""
        return {"articles": [a.model_dump(mode="json") for a in store.articles(p.tenant)]}

    @r.get("/v1/kb/articles/{article_id}", response_model=Article)
    def get_article(article_id: str, p: AdminCaller) -> dict[str, Any]:
        """One article."""
        found = store.get_article(p.tenant, _name(services, article_id, "article id"))
        if found is None:
            raise _reject(services, 404, "no such article", "unknown_article")
        return found.model_dump(mode="json")

    @r.delete("/v1/kb/articles/{article_id}", status_code=204)
    def delete_article(article_id: str, p: AdminCaller) -> Response:
        """Delete an article."""
        if not store.delete_article(p.tenant, _name(services, article_id, "article id")):
            raise _reject(services, 404, "no such article", "unknown_article")
        return Response(status_code=204)

    # -- feedback and stats ---------------------------------------------------------------
    @r.post("/v1/hints/{hint_id}/feedback", response_model=FeedbackSaved)
    def feedback(hint_id: str, body: Feedback, p: AgentCaller) -> dict[str, Any]:
        """Record whether a hint helped (the agent's own hints only)."""
        hint = store.fired_hint(p.tenant, hint_id)
        if hint is None or hint.agent_id != p.agent_id:
            raise _reject(services, 404, "no such hint", "unknown_hint")
        store.record_feedback(p.tenant, hint_id, body.useful, p.agent_id)
        metrics.inc("prompter_feedback_total", useful=str(body.useful).lower())
        return {"hint_id": hint_id, "rule": hint.rule, "useful": body.useful}

    @r.get("/v1/prompter/stats", response_model=PrompterStats)
    def stats(p: AdminCaller) -> dict[str, Any]:
        """Per rule: hints fired, and how many agents marked useful or not useful."""
        return {
            "rules": [
                {"rule": s.rule, "fired": s.fired, "useful": s.useful, "not_useful": s.not_useful}
                for s in store.stats(p.tenant)
            ]
        }

    # -- the agent's hint stream ----------------------------------------------------------
    @r.websocket("/v1/agents/{agent_id}/hints")
    async def agent_hints(ws: WebSocket, agent_id: str) -> None:
        """Push the agent's hints; `?last_hint_id=` replays what a reconnect missed."""
        await ws.accept()
        p = await asyncio.to_thread(websocket_principal, services, ws)
        if p is None:
            metrics.inc("auth_failures_total", reason="ws_key")
            await ws.close(code=4401, reason="missing or unknown API key")
            return
        if not (p.role == "admin" or (p.role == "agent" and p.agent_id == agent_id)):
            metrics.inc("auth_failures_total", reason="role")
            await ws.close(code=4403, reason="only this agent or an admin may watch its hints")
            return
        last = ws.query_params.get("last_hint_id") or None
        client, calls, backlog, gap = hub.subscribe(
            p.tenant, agent_id, asyncio.get_running_loop(), last
        )
        metrics.inc("prompter_ws_connections_total")
        gone = asyncio.ensure_future(until_disconnect(ws))
        timeout_s = settings.ws_send_timeout_s
        try:
            hello = {
                "type": "hello",
                "agent_id": agent_id,
                "calls": calls,
                "replayed": len(backlog),
                "gap": gap,
            }
            for msg in [hello, *backlog]:
                if not await send_within(ws, json.dumps(msg), timeout_s):
                    metrics.inc("prompter_ws_disconnects_total", reason="slow")
                    return
            if await forward(ws, client, gone, json.dumps, timeout_s) == "slow":
                metrics.inc("prompter_ws_disconnects_total", reason="slow")
        except WebSocketDisconnect:
            return
        finally:
            gone.cancel()
            hub.unsubscribe(client)

    # -- the agent panel ------------------------------------------------------------------
    @r.get("/agent", include_in_schema=False)
    def agent_page() -> FileResponse:
        """The agent panel (plain HTML and JS; the key is typed in and kept locally)."""
        return FileResponse(WEB / "agent.html", media_type="text/html")

    @r.get("/agent.js", include_in_schema=False)
    def agent_script() -> FileResponse:
        """The agent panel's script."""
        return FileResponse(WEB / "agent.js", media_type="text/javascript")

    return r
