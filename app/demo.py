"""`callpipe serve --demo`: once the API answers, play app/demo_call.yaml against it."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx

from pipeline.auth import keys_of
from pipeline.services import Services
from sim.pbx import SimulationError, load_script, simulate_call

log = logging.getLogger(__name__)

DEMO_SCRIPT = Path(__file__).with_name("demo_call.yaml")


def _wait_for_api(base: str, stop: threading.Event, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.2)
    return False


def run_demo(services: Services, stop: threading.Event) -> str | None:
    """Play the demo call once; returns its call id (None if the API never came up)."""
    settings = services.settings
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    base = f"http://{host}:{settings.port}"
    if not _wait_for_api(base, stop):
        log.warning("demo: the API at %s did not answer; no demo call", base)
        return None
    tenant = settings.default_tenant
    pbx_key = viewer_key = None
    if settings.auth_enabled:
        # Demo-only keys, so the call can be registered and its transcript read.
        pbx_key = keys_of(services).create(tenant, "pbx")
        viewer_key = keys_of(services).create(tenant, "analyst")
    script = load_script(DEMO_SCRIPT)
    log.info("demo: synthesising the demo call with Piper")
    try:
        result = simulate_call(base, script, voice=services.piper_voice(), key=pbx_key, stop=stop)
    except SimulationError as exc:
        log.warning("demo call failed: %s", exc)
        return None
    auth = f" -H 'Authorization: Bearer {viewer_key}'" if viewer_key else ""
    log.info(
        "demo call %s played (%.1f s). Transcript: curl%s %s/v1/calls/%s/transcript"
        " ; live view while a call runs: ws://%s:%d/v1/calls/<id>/live",
        result.call_id,
        result.rendered.duration,
        auth,
        base,
        result.call_id,
        host,
        settings.port,
    )
    return result.call_id


def start_demo(services: Services, stop: threading.Event) -> threading.Thread:
    """Run the demo in a daemon thread (it waits for the API to come up)."""

    def run() -> None:
        try:
            run_demo(services, stop)
        except Exception:  # the demo must never take the server down
            log.exception("demo call failed")

    t = threading.Thread(target=run, name="demo-call", daemon=True)
    t.start()
    return t
