"""Hint delivery over the real app (uvicorn) and real WebSocket clients: who may watch,
live hints and call events, replay after a reconnect, and a slow client that blocks no one."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from pipeline.auth import keys_of
from pipeline.events import CallEnded, Hint, HintTrigger
from pipeline.services import Services
from prompter.delivery import hint_hub


@pytest.fixture
def keys(services: Services) -> dict[str, str]:
    k = keys_of(services)
    return {
        "agent": k.create("acme", "agent", agent_id="a-7"),
        "other_agent": k.create("acme", "agent", agent_id="a-9"),
        "admin": k.create("acme", "admin"),
        "analyst": k.create("acme", "analyst"),
        "rival_agent": k.create("rival", "agent", agent_id="a-7"),
    }


def _hint(
    n: int,
    call_id: str = "c-1",
    agent_id: str = "a-7",
    tenant: str = "acme",
    text: str = "say this",
) -> Hint:
    return Hint(
        tenant=tenant,
        call_id=call_id,
        agent_id=agent_id,
        hint_id=f"h-{n}",
        kind="script",
        title=f"hint {n}",
        text=text,
        trigger=HintTrigger(rule="frontline/retention", utterance_id=f"u-{n}"),
    )


def _open(server: Any, key: str | None, agent: str = "a-7", **params: str) -> ClientConnection:
    query = "&".join(f"{k}={v}" for k, v in ({"key": key} if key else {}).items() | params.items())
    # max_queue=None: the client reads everything as it comes, a browser that keeps up.
    return connect(
        f"{server.ws}/v1/agents/{agent}/hints?{query}",
        open_timeout=10,
        max_queue=None,
        max_size=None,
    )


def _recv(
    ws: ClientConnection, until: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """Messages up to and including the first that satisfies `until`."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; got {[m.get('hint_id', m['type']) for m in out]}")
        msg = json.loads(ws.recv(timeout=left))
        out.append(msg)
        if until(msg):
            return out


def _ready(services: Services) -> None:
    assert hint_hub(services).wait_ready(10)


def test_who_may_watch(server: Any, services: Services, keys: dict[str, str]) -> None:
    _ready(services)
    for key, agent, code in [
        (None, "a-7", 4401),
        ("cp_nope_nope", "a-7", 4401),
        (keys["other_agent"], "a-7", 4403),
        (keys["analyst"], "a-7", 4403),
    ]:
        with _open(server, key, agent) as ws, pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == code
    # The Authorization header works as well as ?key=.
    with connect(
        f"{server.ws}/v1/agents/a-7/hints",
        additional_headers={"Authorization": f"Bearer {keys['admin']}"},
    ) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"


def test_live_hints_and_call_events_tenants_apart(
    server: Any,
    services: Services,
    keys: dict[str, str],
    make_call: Any,
    publish_events: Callable[..., None],
) -> None:
    _ready(services)
    with _open(server, keys["agent"]) as mine, _open(server, keys["rival_agent"]) as rival:
        assert json.loads(mine.recv(timeout=5)) == {
            "type": "hello",
            "agent_id": "a-7",
            "calls": [],
            "replayed": 0,
            "gap": False,
        }
        json.loads(rival.recv(timeout=5))
        publish_events(
            services,
            make_call("c-1"),
            _hint(1),
            _hint(2, tenant="rival"),
            _hint(3, agent_id="a-9"),
            _hint(4),
        )
        got = _recv(mine, lambda m: m.get("hint_id") == "h-4")
        # Calls and hints are two topics: only the order within each is guaranteed.
        assert [m["hint_id"] for m in got if m["type"] == "hint"] == ["h-1", "h-4"]
        assert [m["call_id"] for m in got if m["type"] == "call.started"] == ["c-1"]
        first = next(m for m in got if m["type"] == "hint")
        assert first["title"] == "hint 1" and first["trigger"]["rule"] == "frontline/retention"
        publish_events(services, CallEnded(tenant="acme", call_id="c-1"))
        assert _recv(mine, lambda m: True)[0] == {"type": "call.ended", "call_id": "c-1"}
        other = _recv(rival, lambda m: m["type"] == "hint")
        assert [m["hint_id"] for m in other] == ["h-2"]


def test_reconnect_replays_what_was_missed(
    server: Any,
    services: Services,
    keys: dict[str, str],
    make_call: Any,
    publish_events: Callable[..., None],
) -> None:
    _ready(services)
    with _open(server, keys["agent"]) as ws:
        ws.recv(timeout=5)
        publish_events(services, make_call("c-1"), _hint(1), _hint(2))
        got = _recv(ws, lambda m: m.get("hint_id") == "h-2")
        last = got[-1]["hint_id"]
    publish_events(services, _hint(3), _hint(4), _hint(2))  # h-2 again: a replay upstream
    time.sleep(0.5)
    with _open(server, keys["agent"], last_hint_id=last) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["replayed"] == 2 and hello["gap"] is False
        assert [c["call_id"] for c in hello["calls"]] == ["c-1"]
        assert [json.loads(ws.recv(timeout=5))["hint_id"] for _ in range(2)] == ["h-3", "h-4"]
        publish_events(services, _hint(5))
        assert json.loads(ws.recv(timeout=5))["hint_id"] == "h-5"
    # No last id: the current call's hints; an id no longer known: everything, and a gap.
    with _open(server, keys["agent"]) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["replayed"] == 5
    with _open(server, keys["agent"], last_hint_id="h-unknown") as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["gap"] is True and hello["replayed"] == 5


def _raw_ws(port: int, path: str) -> socket.socket:
    """A WebSocket handshake on a plain socket that will then never read (a dead browser)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


@pytest.mark.parametrize("prompter_overrides", [{"ws_queue_size": 32, "ws_send_timeout_s": 1.0}])
def test_a_dead_client_blocks_neither_the_hub_nor_other_agents(
    server: Any, services: Services, keys: dict[str, str], make_call: Any
) -> None:
    _ready(services)
    dead = _raw_ws(server.port, f"/v1/agents/a-7/hints?key={keys['agent']}")
    with _open(server, keys["admin"]) as alive:  # the same agent's hints, another client
        alive.recv(timeout=5)
        time.sleep(0.3)
        n = 200
        # Incompressible text, so that the dead client's socket buffers really fill up.
        hints = [_hint(i, text=os.urandom(32_000).hex()) for i in range(n)]
        hub = hint_hub(services)
        dispatch_s = 0.0
        for h in hints:
            t0 = time.monotonic()
            hub.dispatch(h)  # what the consumer thread does for each hint
            dispatch_s += time.monotonic() - t0
            time.sleep(0.01)  # a burst a live client keeps up with
        received = _recv(alive, lambda m: m.get("hint_id") == f"h-{n - 1}", timeout_s=30)
        assert [m["hint_id"] for m in received] == [f"h-{i}" for i in range(n)]
    m = services.metrics
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not m.value(
        "prompter_ws_disconnects_total", reason="slow"
    ):
        time.sleep(0.1)
    assert m.value("prompter_ws_disconnects_total", reason="slow") == 1
    assert m.value("prompter_ws_dropped_total") > 0
    assert dispatch_s < 2  # handing hints to a dead client never waited for it
    dead.close()
