"""The simulated PBX: script checks, Piper rendering, RTP impairment, and a whole call
over HTTP + UDP against a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from app.cli import main
from app.demo import DEMO_SCRIPT
from pipeline import calls_api
from pipeline.auth import keys_of
from pipeline.media.rtp import parse
from pipeline.services import Services
from sim.pbx import (
    ScriptError,
    impair,
    load_script,
    packetize,
    parse_script,
    render_script,
    simulate_call,
)


def test_the_demo_script_is_valid() -> None:
    script = load_script(DEMO_SCRIPT)
    assert {line.speaker for line in script.lines} == {"agent", "customer"}
    assert any(line.dtmf for line in script.lines)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"lines": []}, "non-empty"),
        ({"lines": [{"speaker": "bot", "text": "hi"}]}, "speaker"),
        ({"lines": [{"speaker": "agent"}]}, "exactly one"),
        ({"lines": [{"speaker": "agent", "text": "hi", "dtmf": "1"}]}, "exactly one"),
        ({"lines": [{"speaker": "agent", "dtmf": "12x"}]}, "dtmf"),
        ({"lines": [{"speaker": "agent", "text": "hi", "pause": "long"}]}, "pause"),
        ({"lines": [{"speaker": "agent", "text": "hi", "pause": 99}]}, "pause"),
        ([1, 2], "mapping"),
    ],
)
def test_bad_scripts_say_why(raw: Any, why: str) -> None:
    with pytest.raises(ScriptError, match=why):
        parse_script(raw)


def test_impairment_drops_delays_and_reorders() -> None:
    packets = packetize(np.zeros(8000 * 20, np.int16), "PCMU")  # 1000 packets
    out = impair(packets, loss=5, jitter_ms=40, reorder=2, seed=3)
    assert 920 < len(out) < 980
    seqs = [p.sequence for p in out]
    assert seqs != sorted(seqs)  # some arrive out of order
    assert all(0 <= p.at - packets[0].at < 20.1 for p in out)
    assert impair(packets, seed=1) == sorted(packets, key=lambda p: p.at)


def test_rendered_call_puts_each_line_on_its_leg(piper_voice: Any) -> None:
    script = parse_script(
        {
            "lines": [
                {"speaker": "agent", "text": "Hello there.", "pause": 0.2},
                {"speaker": "customer", "dtmf": "12", "pause": 0.1},
                {"speaker": "customer", "text": "Hi.", "pause": 0.2},
            ]
        }
    )
    call = render_script(script, piper_voice)
    agent, customer = call.legs["agent"], call.legs["customer"]
    assert len(agent) == len(customer)
    a, c = call.lines
    assert np.abs(agent[a.start : a.end]).max() > 1000
    assert np.abs(customer[a.start : a.end]).max() == 0
    assert np.abs(customer[c.start : c.end]).max() > 1000
    assert np.abs(agent[c.start : c.end]).max() == 0
    assert [(m.leg, m.digits) for m in call.dtmf] == [("customer", "12")]
    assert call.text_of("customer") == "Hi."


@pytest.fixture
def api(rtp_services: Services) -> Iterator[str]:
    """The calls API served by a real uvicorn on loopback."""
    app = FastAPI()
    app.state.services = rtp_services
    app.include_router(calls_api.router(rtp_services))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(5)


def test_a_whole_call_with_network_trouble(
    api: str, rtp_services: Services, tap: Any, piper_voice: Any
) -> None:
    key = keys_of(rtp_services).create("acme", "pbx")
    script = parse_script(
        {
            "call_id": "sim-1",
            "agent_id": "agent-7",
            "lines": [
                {"speaker": "agent", "text": "Thank you for calling.", "pause": 0.2},
                {"speaker": "customer", "dtmf": "7#", "pause": 0.2},
            ],
        }
    )
    result = simulate_call(
        api, script, voice=piper_voice, key=key, loss=5, jitter_ms=40, reorder=2, seed=11
    )
    assert result.call_id == "sim-1" and result.tenant == "acme"
    legs = result.summary["legs"]
    for leg in ("agent", "customer"):
        assert legs[leg]["packets"] == result.sent[leg] > 0
    total = len(result.rendered.legs["agent"]) // 160
    assert result.sent["agent"] < total  # 5 % loss happened
    tap.until(lambda t: t.ended("sim-1") is not None)
    digits = [e.digit for e in tap.events if e.type == "dtmf"]
    assert digits == ["7", "#"]
    # Both legs' timelines cover the whole call despite loss, jitter and reordering.
    for leg in ("agent", "customer"):
        chunks = tap.chunks("sim-1", leg)
        end = chunks[-1].start_sample + len(chunks[-1].pcm) // 2 - chunks[0].start_sample
        assert abs(end - len(result.rendered.legs[leg])) <= 160 * 3, leg
    started = next(e for e in tap.events if e.type == "call.started")
    assert started.agent_id == "agent-7"


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lines: [{speaker: nobody, text: hi}]")
    assert main(["simulate-call", "--to", "127.0.0.1:1", "--script", str(bad)]) == 2
    assert "speaker" in capsys.readouterr().err
    assert main(["simulate-call", "--to", "nowhere", "--script", str(bad)]) == 2
    assert (
        main(["simulate-call", "--to", "127.0.0.1:1", "--script", str(bad), "--loss", "150"]) == 2
    )
    assert (
        main(["simulate-call", "--to", "127.0.0.1:1", "--script", str(tmp_path / "missing.yaml")])
        == 2
    )


def test_packets_carry_the_chosen_codec() -> None:
    pcm = np.zeros(800, np.int16)
    assert {parse(p.data).payload_type for p in packetize(pcm, "PCMA")} == {8}
    assert {len(parse(p.data).payload) for p in packetize(pcm, "PCMU", ptime_ms=50)} == {400}
