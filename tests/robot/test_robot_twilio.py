"""A voicebot call over a bidirectional Twilio Media Stream (`<Connect><Stream>`), end to
end: POST /v1/robot/calls with `transport: twilio`, the PBX opens the stream naming the
call, the robot's prompts go back as `media` with a `mark` each, the caller barges in and
the robot sends `clear`, hears the answer through the same stream, says goodbye and ends
the stream. The far end (sim/streams.py TwilioCaller) plays what it is sent in real time
as Twilio does, echoing marks, emptying its buffer on `clear`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipeline.auth import keys_of
from pipeline.events import decode_event
from pipeline.services import Services
from robot.calls import prompts_of, sessions_of
from sim.streams import TwilioCaller


@pytest.fixture
def caller(piper_voice: Any) -> Iterator[TwilioCaller]:
    c = TwilioCaller(piper_voice)
    yield c
    c.close()


def test_a_voicebot_call_over_twilio_with_barge_in(
    services: Services, app_server: Any, caller: TwilioCaller, long_yaml: str
) -> None:
    consumer = services.bus.consumer([services.topics.calls], "tw-bot-reader")
    keys = keys_of(services)
    admin, pbx = keys.create("acme", "admin"), keys.create("acme", "pbx")
    r = httpx.post(
        f"{app_server.http}/v1/robot/calls",
        headers={"authorization": f"Bearer {admin}"},
        json={"call_id": "tw-bot-1", "scenario": long_yaml, "media": {"transport": "twilio"}},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    assert r.json()["media"] == {"transport": "twilio", "path": "/v1/media/twilio"}
    session = sessions_of(services).get("tw-bot-1")
    assert session is not None
    # The PBX opens the stream (TwiML <Connect><Stream> with <Parameter name="call_id">).
    caller.connect(f"{app_server.ws}/v1/media/twilio?key={pbx}", {"call_id": "tw-bot-1"})
    q = long_yaml.split(">-")[1].split("expect")[0]
    full_s = len(prompts_of(services).render(" ".join(q.split()), "PCMU")) / 8000
    assert full_s > 6.0
    deadline = time.time() + 30
    while not caller.heard and time.time() < deadline:
        time.sleep(0.01)
    assert caller.heard, "no prompt came back over the stream"
    prompt_start = caller.heard[0].at
    time.sleep(max(0.0, prompt_start + 1.5 - time.time()))
    talk_at = time.time()
    caller.say(caller.speech("Yes, I am happy to continue."), wait=False)
    assert session.wait(40), session.state()
    out = session.outcome
    dialog = [(s["at"], s["step"], s["action"], s["text"], s["answer"]) for s in session.steps]
    assert out is not None and out.result == "done", dialog
    assert out.slots == {"q": "yes"}
    # Barge-in: `clear` was sent, the question stopped playing long before its end, after
    # the caller began to speak; the goodbye is a talk spurt of its own, played whole.
    assert caller.clears == 1
    first_bye = next(h.at for h in caller.heard[1:] if h.marker)
    question = [h for h in caller.heard if h.at < first_bye]
    stopped_at = question[-1].at
    assert talk_at < stopped_at < prompt_start + full_s - 2.0
    assert len(session.barge_ins) == 1
    bye_s = len(prompts_of(services).render("Thank you.", "PCMU")) / 8000
    assert len([h for h in caller.heard if h.at >= first_bye]) >= int(bye_s / 0.02) - 1
    # Each prompt ended with a mark that Twilio echoed: the question's (cleared) and the bye's.
    assert len(caller.marks_echoed) >= 2
    # The robot hung up: the stream is closed by the server, the call ended.
    deadline = time.time() + 10
    while caller.closed_code is None and time.time() < deadline:
        time.sleep(0.05)
    assert caller.closed_code == 1000
    calls = [decode_event(m.value) for m in consumer.poll(1.0, 1000)]
    consumer.close()
    mine = [e for e in calls if e.call_id == "tw-bot-1"]
    assert [e.type for e in mine] == ["call.started", "call.ended"]
    assert mine[0].transport == "twilio"  # type: ignore[attr-defined]
