"""WebSocket `/v1/calls/{call_id}/live`: a call's partials and finals as they come.

The finals so far are sent first, then every utterance (partial or final) of the call,
and the live transcript.ready, after which the server closes (1000). The key comes as
`?key=` or `Authorization: Bearer`; agents see only their own calls. Close codes: 4401 no
or unknown key, 4403 a role that may not watch, 4404 no such call (or not visible).
GET /v1/calls/{call_id}/transcript is served by stt.batch_api, which consults
stt.live_state for calls in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from pipeline.auth import Principal, websocket_principal
from pipeline.catalog import CallManifest, load_manifest
from pipeline.events import TranscriptReady
from pipeline.ids import check_id
from pipeline.services import Services
from pipeline.store import StoreError
from stt.live_state import live_hub, live_transcript

log = logging.getLogger(__name__)

WATCH_ROLES = ("agent", "analyst", "admin")
READY_TIMEOUT_S = 15.0


def visible_call(services: Services, p: Principal, call_id: str) -> CallManifest | None:
    """The call's manifest if this principal may watch it."""
    try:
        check_id(call_id, "call_id")
        m = load_manifest(services.store, p.tenant, call_id)
    except (ValueError, StoreError):
        return None
    if m is None or (p.role == "agent" and m.agent_id != p.agent_id):
        return None
    return m


def router(services: Services) -> APIRouter:
    """The live WebSocket; starts this process's live hub."""
    r = APIRouter()
    hub = live_hub(services)
    hub.start()
    metrics = services.metrics

    @r.websocket("/v1/calls/{call_id}/live")
    async def watch_call(ws: WebSocket, call_id: str) -> None:
        """Stream one call's utterances as they come."""
        await ws.accept()
        p = websocket_principal(services, ws)
        if p is None:
            metrics.inc("auth_failures_total", reason="ws_key")
            await ws.close(code=4401, reason="missing or unknown API key")
            return
        if p.role not in WATCH_ROLES:
            metrics.inc("auth_failures_total", reason="role")
            await ws.close(code=4403, reason=f"role {p.role!r} may not watch calls")
            return
        manifest = await asyncio.to_thread(visible_call, services, p, call_id)
        if manifest is None:
            metrics.inc("api_rejections_total", route="live", cause="unknown_call")
            await ws.close(code=4404, reason="no such call")
            return
        sub = hub.subscribe(p.tenant, call_id, asyncio.get_running_loop())
        metrics.inc("live_ws_clients_total")
        gone = asyncio.ensure_future(_until_disconnect(ws))
        try:
            await asyncio.to_thread(hub.wait_ready, READY_TIMEOUT_S)
            so_far = await asyncio.to_thread(live_transcript, services, p.tenant, call_id)
            if so_far is None:
                await ws.close(code=1000, reason="the call is not live")
                return
            for u in so_far:
                await ws.send_text(u.model_dump_json())
            while True:
                nxt = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    nxt.cancel()
                    return
                event = nxt.result()
                await ws.send_text(event.model_dump_json())
                if isinstance(event, TranscriptReady):
                    await ws.close(code=1000, reason="call ended")
                    return
        except WebSocketDisconnect:
            return
        finally:
            gone.cancel()
            hub.unsubscribe(sub)

    return r


async def _until_disconnect(ws: WebSocket) -> None:
    """Returns when the client goes away (anything it sends is ignored)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
