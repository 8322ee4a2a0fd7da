"""WebSocket `/v1/calls/{call_id}/live`: a call's partials and finals as they come.

The finals and key presses (`dtmf` events) so far are sent first, in the order they were
said, then every utterance (partial or final) and key press of the call, and the live
transcript.ready, after which the server closes (1000). The key comes as
`?key=` or `Authorization: Bearer`; agents see only their own calls. Close codes: 4401 no
or unknown key, 4403 a role that may not watch, 4404 no such call (or not visible).
GET /v1/calls/{call_id}/transcript is served by stt.batch_api, which consults
stt.live_state for calls in progress.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from pipeline.api.fanout import forward, send_within, until_disconnect
from pipeline.auth import websocket_principal
from pipeline.catalog import visible_manifest
from pipeline.events import DtmfReceived, TranscriptReady, Utterance
from pipeline.services import Services
from stt.live_state import live_hub, live_so_far

log = logging.getLogger(__name__)

WATCH_ROLES = ("agent", "analyst", "admin")
READY_TIMEOUT_S = 15.0
SEND_TIMEOUT_S = 5.0  # a watcher that takes no message for this long is closed (1013)


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
        manifest = await asyncio.to_thread(visible_manifest, services.store, p, call_id)
        if manifest is None:
            metrics.inc("api_rejections_total", route="live", cause="unknown_call")
            await ws.close(code=4404, reason="no such call")
            return
        sub = hub.subscribe(p.tenant, call_id, asyncio.get_running_loop())
        metrics.inc("live_ws_clients_total")
        gone = asyncio.ensure_future(until_disconnect(ws))
        try:
            await asyncio.to_thread(hub.wait_ready, READY_TIMEOUT_S)
            so_far = await asyncio.to_thread(live_so_far, services, p.tenant, call_id)
            # A call registered a moment ago is live by its manifest before this process's
            # hub has read its call.started: watch it, with no finals yet.
            if so_far is None and manifest.status != "live":
                await ws.close(code=1000, reason="the call is not live")
                return
            said: list[Utterance | DtmfReceived] = (
                sorted([*so_far.finals, *so_far.presses], key=lambda e: e.start) if so_far else []
            )
            for e in said:
                if not await send_within(ws, e.model_dump_json(), SEND_TIMEOUT_S):
                    return
            outcome = await forward(
                ws,
                sub,
                gone,
                lambda e: e.model_dump_json(),
                SEND_TIMEOUT_S,
                is_last=lambda e: isinstance(e, TranscriptReady),
            )
            if outcome == "last":
                await ws.close(code=1000, reason="call ended")
        except WebSocketDisconnect:
            return
        finally:
            gone.cancel()
            hub.unsubscribe(sub)

    return r
