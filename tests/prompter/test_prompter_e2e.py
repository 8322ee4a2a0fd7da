"""DONE-WHEN: a simulated call over real RTP, where the customer says "I want to cancel my
contract", puts the retention hint on the agent's WebSocket before the call ends.

Everything is real: Piper speech, RTP over UDP into the ingest (POST /v1/calls), the live
worker with Whisper base int8, the prompter worker, and the app's WebSocket under uvicorn.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pytest
from websockets.sync.client import connect

from app.roles import start_role
from pipeline.auth import keys_of
from pipeline.services import Services
from prompter.delivery import hint_hub
from prompter.store import prompter_store
from prompter.validate import load_playbook


@pytest.fixture
def rtp_range(services: Services) -> Services:
    """A random private RTP port range, so parallel runs do not meet."""
    base = random.randrange(30000, 59000, 200)
    services.settings.live = services.settings.live.model_copy(
        update={"rtp_port_min": base, "rtp_port_max": base + 199}
    )
    return services


def test_cancel_my_contract_gets_the_retention_hint_before_the_call_ends(
    rtp_range: Services, server: Any, piper_voice: Any, playbook_yaml: str
) -> None:
    from sim.pbx import parse_script, render_script, simulate_call

    services = rtp_range
    settings = services.settings.prompter
    prompter_store(services).put_playbook(
        "acme", "frontline", load_playbook(playbook_yaml, settings), playbook_yaml
    )
    pbx = keys_of(services).create("acme", "pbx")
    agent = keys_of(services).create("acme", "agent", agent_id="a-7")
    script = parse_script(
        {
            "call_id": "e2e-cancel",
            "agent_id": "a-7",
            "lines": [
                {
                    "speaker": "agent",
                    "text": "Good morning, thank you for calling. How can I help?",
                    "pause": 0.4,
                },
                {
                    "speaker": "customer",
                    "text": "Hello. I want to cancel my contract.",
                    "pause": 0.4,
                },
                {
                    "speaker": "agent",
                    "text": "I am sorry to hear that. Let me look at your account "
                    "and see what I can do for you. Please stay on the line for a moment, "
                    "I am checking the options we have for customers like you.",
                    "pause": 0.5,
                },
            ],
        }
    )
    rendered = render_script(script, piper_voice)
    services.whisper_model()  # loaded before the call, as a running server has it
    stop = threading.Event()
    threads = start_role(services, "live", stop) + start_role(services, "prompter", stop)
    assert hint_hub(services).wait_ready(10)
    messages: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()
    try:
        with connect(f"{server.ws}/v1/agents/a-7/hints?key={agent}", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
            sim: dict[str, Any] = {}

            def play() -> None:
                sim["result"] = simulate_call(
                    server.http, script, rendered=rendered, key=pbx, end_call=False
                )
                sim["sent_at"] = time.monotonic()
                done.set()

            player = threading.Thread(target=play, daemon=True)
            player.start()
            deadline = time.monotonic() + rendered.duration + 60
            while time.monotonic() < deadline and not (
                done.is_set() and any(m.get("type") == "hint" for _, m in messages)
            ):
                try:
                    messages.append((time.monotonic(), json.loads(ws.recv(timeout=0.5))))
                except TimeoutError:
                    continue
            player.join(30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    hints = [(t, m) for t, m in messages if m.get("type") == "hint"]
    assert [m["trigger"]["rule"] for _, m in hints] == ["frontline/retention"], messages
    at, hint = hints[0]
    assert hint["call_id"] == "e2e-cancel" and hint["agent_id"] == "a-7"
    assert "cancel" in hint["text"].lower() and hint["kind"] == "script"
    # Before the call ends: the hint came while the agent's last line was still being sent.
    assert at < sim["sent_at"], (at, sim["sent_at"])
    started = [m for _, m in messages if m.get("type") == "call.started"]
    assert [m["call_id"] for m in started] == ["e2e-cancel"]
