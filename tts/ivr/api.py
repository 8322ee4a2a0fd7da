"""IVR routes: upload a menu, fetch its prompts, and walk it in sessions over HTTP, or on
a live call whose key presses drive it (tts/ivr/live.py)."""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pipeline.api.errors import errors, files
from pipeline.auth import Principal, require
from pipeline.catalog import load_manifest
from pipeline.media.audio_file import AudioError
from pipeline.services import Services
from pipeline.store import ObjectNotFound
from tts.cache import PromptCache
from tts.formats import FormatError, get_format
from tts.ivr.engine import Engine, SessionExpired, SessionFinished
from tts.ivr.live import Binding, LiveIvr
from tts.ivr.menu import Menu, PromptKind, prompt_text
from tts.ivr.store import MenuNotFound, MenuStore
from tts.ivr.validate import MenuInvalid, load_menu

PRERENDER_FORMAT = "ulaw8k"
PLAYBACK_FORMAT = "ulaw8k_raw"  # what a call's stream plays back
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
_KINDS: tuple[PromptKind, ...] = ("prompt", "no_input", "no_match")


class LiveSession(BaseModel):
    """Body of POST /v1/ivr/{menu}/sessions for a session on a live call."""

    call_id: str = Field(min_length=1, max_length=128)
    leg: Literal["customer", "agent"] = "customer"


class IvrInput(BaseModel):
    """A caller's input: a DTMF digit, a (partial) transcript, or neither for a timeout."""

    dtmf: str | None = Field(default=None, pattern=r"^[0-9*#A-D]{1,32}$")
    speech: str | None = Field(default=None, max_length=2000)
    final: bool = True


def parse_document(body: bytes, content_type: str) -> Any:
    """A menu document from JSON, or YAML when the content type says so; MenuInvalid if not."""
    try:
        if content_type.split(";")[0].strip().lower() in _YAML_TYPES:
            return yaml.safe_load(body.decode("utf-8"))
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise MenuInvalid([f"menu: not a valid JSON or YAML document ({exc})"]) from exc


class MenuSaved(BaseModel):
    """A menu stored, with its prompts rendered ahead."""

    menu: str
    nodes: int
    prompts_rendered: int


def router(services: Services) -> APIRouter:
    """Routes of the IVR API."""
    r = APIRouter()
    cache: PromptCache = services.component("tts.cache", lambda: PromptCache(services))
    engine: Engine = services.component(
        "tts.ivr.engine", lambda: Engine(services.settings.tts.ivr_session_ttl_s)
    )
    menus = MenuStore(services.store)
    st = services.settings.tts
    roles = require("pbx", "admin")
    live: LiveIvr = services.component("tts.ivr.live", lambda: LiveIvr(services, engine))

    def load(tenant: str, name: str) -> Menu:
        try:
            return menus.get(tenant, name)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except MenuNotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    def render_prompt(tenant: str, menu: Menu, node: str, kind: PromptKind, fmt_name: str) -> bytes:
        n = menu.nodes.get(node)
        text = prompt_text(n, kind) if n else None
        if n is not None and kind == "prompt" and n.audio:
            try:
                return cache.converted(menus.audio(tenant, n.audio), get_format(fmt_name))
            except ObjectNotFound as exc:
                raise HTTPException(404, f"audio object {n.audio!r} is gone") from exc
        if not text:
            raise HTTPException(404, f"node {node!r} has no {kind} prompt")
        return cache.get(text, get_format(fmt_name), st.default_rate)

    def with_urls(menu: str, step: dict[str, Any]) -> dict[str, Any]:
        urls = []
        for pid in step.get("prompts", []):
            node, _, kind = pid.partition(":")
            extra = f"&kind={kind}" if kind else ""
            urls.append(f"/v1/ivr/{menu}/nodes/{node}/prompt.wav?format={PRERENDER_FORMAT}{extra}")
        step["prompt_urls"] = urls
        return step

    @r.put("/v1/ivr/{menu}", response_model=MenuSaved)
    async def put_menu(
        menu: str, request: Request, p: Principal = Depends(require("admin"))
    ) -> dict[str, Any]:
        """Validate (422 lists every error), pre-render every prompt, store the menu.

        The body is JSON, or YAML with a YAML content type.
        """
        body = await request.body()
        # Validation and pre-rendering block (Piper): off the event loop.
        ctype = request.headers.get("content-type", "")
        result: dict[str, Any] = await run_in_threadpool(_put, menu, body, ctype, p)
        return result

    def _put(menu: str, body: bytes, content_type: str, p: Principal) -> dict[str, Any]:
        try:
            menus.key(p.tenant, menu)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        try:
            parsed = load_menu(
                parse_document(body, content_type),
                st.max_text_chars,
                lambda key: menus.audio_exists(p.tenant, key),
            )
        except MenuInvalid as exc:
            services.metrics.inc("ivr_menus_rejected_total")
            raise HTTPException(422, {"errors": exc.errors}) from exc
        errors = []
        fmt = get_format(PRERENDER_FORMAT)
        rendered = 0
        for name, node in parsed.nodes.items():
            for kind in _KINDS:
                text = prompt_text(node, kind)
                if text and text.strip():
                    cache.get(text, fmt, st.default_rate)
                    rendered += 1
            if node.audio:
                try:
                    cache.converted(menus.audio(p.tenant, node.audio), fmt)
                    rendered += 1
                except AudioError as exc:
                    errors.append(f"nodes.{name}.audio: {exc}")
        if errors:
            services.metrics.inc("ivr_menus_rejected_total")
            raise HTTPException(422, {"errors": errors})
        menus.put(p.tenant, menu, parsed)
        services.metrics.inc("ivr_menus_stored_total")
        return {"menu": menu, "nodes": len(parsed.nodes), "prompts_rendered": rendered}

    @r.get(
        "/v1/ivr/{menu}/nodes/{node}/prompt.wav",
        response_class=Response,
        responses=files("the prompt's audio", "audio/wav", "audio/basic", "audio/x-alaw-basic"),
    )
    def prompt(
        menu: str,
        node: str,
        format: str = PRERENDER_FORMAT,
        kind: Literal["prompt", "no_input", "no_match"] = "prompt",
        p: Principal = Depends(roles),
    ) -> Response:
        """The audio of a node's prompt (or its no-input / no-match prompt), from the cache."""
        try:
            fmt = get_format(format)
            m = load(p.tenant, menu)
            audio = render_prompt(p.tenant, m, node, kind, format)
        except FormatError as exc:
            services.metrics.inc("ivr_prompt_rejected_total", reason="format")
            raise HTTPException(422, str(exc)) from exc
        except HTTPException as exc:
            services.metrics.inc("ivr_prompt_rejected_total", reason=str(exc.status_code))
            raise
        return Response(audio, media_type=fmt.media_type)

    @r.post("/v1/ivr/{menu}/sessions", responses=errors(404))
    def start(
        menu: str, p: Principal = Depends(roles), body: LiveSession | None = None
    ) -> dict[str, Any]:
        """Open a session at the start node: the prompts to play and the wait.

        With `call_id` (a live call of the key's tenant), the call's key presses on `leg`
        drive the session and its prompts play back over the call's stream when it has a
        bidirectional one; GET .../sessions/{sid} shows where it went."""
        m = load(p.tenant, menu)
        if body is not None:
            manifest = load_manifest(services.store, p.tenant, body.call_id)
            if manifest is None or manifest.status != "live":
                raise HTTPException(404, "no such live call")
        first = engine.start(menus.key(p.tenant, menu), m)
        services.metrics.inc("ivr_sessions_started_total")
        if body is not None:

            def render(prompt: str) -> bytes:
                node, _, kind = prompt.partition(":")
                which: PromptKind = next((k for k in _KINDS if k == kind), "prompt")
                return render_prompt(p.tenant, m, node, which, PLAYBACK_FORMAT)

            live.bind(
                Binding(p.tenant, body.call_id, body.leg, first["session"], menu, render), first
            )
        return with_urls(menu, first)

    @r.get("/v1/ivr/{menu}/sessions/{sid}", responses=errors(404))
    def session_state(menu: str, sid: str, p: Principal = Depends(roles)) -> dict[str, Any]:
        """A session on a live call: the digits it took, each step, and the last one."""
        b = live.binding(sid)
        state = live.state(sid)
        if b is None or state is None or (b.tenant, b.menu) != (p.tenant, menu):
            raise HTTPException(404, "no such session on a live call")
        return state

    @r.post("/v1/ivr/{menu}/sessions/{sid}/input", responses=errors(409, 410))
    def step(menu: str, sid: str, body: IvrInput, p: Principal = Depends(roles)) -> dict[str, Any]:
        """Apply input; the next prompts, or the final action (transfer, voicemail...).

        410: the session expired (or is unknown to this tenant and menu); 409: it finished.
        """
        if body.dtmf is not None and body.speech is not None:
            raise HTTPException(422, "send dtmf or speech, not both")
        try:
            owner = menus.key(p.tenant, menu)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        if engine.owner(sid) != owner:
            sid = ""  # another tenant's or menu's session: answered as unknown
        try:
            out = engine.input(sid, body.dtmf, body.speech, body.final)
        except SessionExpired as exc:
            services.metrics.inc("ivr_input_rejected_total", reason="expired")
            raise HTTPException(410, str(exc)) from exc
        except SessionFinished as exc:
            services.metrics.inc("ivr_input_rejected_total", reason="finished")
            raise HTTPException(409, str(exc)) from exc
        return with_urls(menu, out) if out else {"action": None, "waiting": True}

    return r
