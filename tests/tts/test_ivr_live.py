"""An IVR session on a live call: the caller's key presses over a bidirectional Twilio
stream drive it (no HTTP input), and its prompts play back over the same stream."""

from __future__ import annotations

import time
from typing import Any

import httpx

from pipeline.auth import keys_of
from pipeline.services import Services
from sim.streams import TwilioCaller


def test_key_presses_of_a_live_call_walk_the_menu(
    services: Services, app_server: Any, menu_doc: dict[str, Any], eventually: Any
) -> None:
    keys = keys_of(services)
    admin = {"Authorization": f"Bearer {keys.create('acme', 'admin')}"}
    pbx_key = keys.create("acme", "pbx")
    pbx = {"Authorization": f"Bearer {pbx_key}"}
    base = app_server.http
    assert httpx.put(f"{base}/v1/ivr/main", json=menu_doc, headers=admin).status_code == 200
    # Not a live call (yet): refused.
    r = httpx.post(f"{base}/v1/ivr/main/sessions", json={"call_id": "ivr-1"}, headers=pbx)
    assert r.status_code == 404
    caller = TwilioCaller()
    try:
        caller.connect(f"{app_server.ws}/v1/media/twilio?key={pbx_key}", {"call_id": "ivr-1"})
        eventually(
            lambda: (
                httpx.post(
                    f"{base}/v1/ivr/main/sessions", json={"call_id": "nope"}, headers=pbx
                ).status_code
                == 404
            ),
            5,
            "the API",
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            s = httpx.post(f"{base}/v1/ivr/main/sessions", json={"call_id": "ivr-1"}, headers=pbx)
            if s.status_code == 200:
                break
            time.sleep(0.1)  # the stream's call is registered a moment after it connects
        assert s.status_code == 200, s.text
        first = s.json()
        assert first["prompts"] == ["entry", "main"]
        sid = first["session"]
        # The welcome and the main menu play back over the stream.
        eventually(lambda: len(caller.heard) > 50, 10, "the menu's prompts")
        caller.press("2")
        state_url = f"{base}/v1/ivr/main/sessions/{sid}"
        eventually(
            lambda: httpx.get(state_url, headers=pbx).json()["digits"] == "2", 10, "the press"
        )
        assert httpx.get(state_url, headers=pbx).json()["last"]["node"] == "support"
        heard = len(caller.heard)
        caller.press("1")
        eventually(lambda: httpx.get(state_url, headers=pbx).json()["ended"], 10, "the transfer")
        state = httpx.get(state_url, headers=pbx).json()
        assert state["digits"] == "21"
        assert state["last"]["action"] == {"kind": "transfer", "extension": "204"}
        assert len(caller.heard) > heard  # the support prompt played too
        other = {"Authorization": f"Bearer {keys.create('globex', 'pbx')}"}
        assert httpx.get(state_url, headers=other).status_code == 404
    finally:
        caller.close()
