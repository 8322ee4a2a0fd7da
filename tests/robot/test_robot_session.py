"""The real thing: a simulated caller (Piper speech over real RTP on loopback) talks to a
robot session that hears it through the ingest, the barge-in VAD and streaming Whisper."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pipeline.events import MediaPeer, RobotStart, decode_event
from pipeline.services import Services
from robot.calls import prompts_of, robot_decoder_of, sessions_of
from robot.session import RobotSession
from sim.phone import SimCaller


@pytest.fixture
def caller(piper_voice: Any) -> Iterator[SimCaller]:
    c = SimCaller(piper_voice)
    yield c
    c.close()


def _place(
    services: Services, caller: SimCaller, scenario: str, call_id: str, **variables: Any
) -> RobotSession:
    start = RobotStart(
        tenant="acme",
        call_id=call_id,
        scenario=scenario,
        variables=variables,
        media=MediaPeer(host=caller.host, port=caller.port, codec="PCMU"),
    )
    session = sessions_of(services).place(start)
    assert session.endpoint is not None
    caller.connect(session.endpoint.host, session.endpoint.port)
    return session


def _robot_events(services: Services) -> list[Any]:
    consumer = services.bus.consumer([services.topics.robot], "test-reader")
    events = [decode_event(m.value) for m in consumer.poll(1.0, 1000)]
    consumer.close()
    return events


def test_simulated_caller_completes_the_survey(
    services: Services, caller: SimCaller, survey_yaml: str
) -> None:
    session = _place(services, caller, survey_yaml, "robot-survey", name="Ana")
    answers = {"happy": "Yes, I am.", "people": "Four people.", "reason": "It is about my bill."}
    # The caller answers the question the robot asks when it stops talking, as a person does:
    # asked again (Whisper misheard a short answer), they say it again.
    said: list[str] = []
    last = 0.0
    while len(said) < 6:  # three answers, three repeats at most
        last = caller.wait_robot_done(last)
        if session.status == "ended":
            break
        step = session.state()["step"]
        if step in answers:  # else the robot is between prompts ("hello" said, ask to come)
            caller.say(answers[step])
            said.append(step)
    assert session.wait(60), session.state()
    out = session.outcome
    # on failure, the dialog as it went: when, which step, what happened, what was heard
    dialog = [(s["at"], s["step"], s["action"], s["text"], s["answer"]) for s in session.steps]
    assert out is not None and out.result == "completed", (out and out.result, said, dialog)
    assert out.slots == {"happy": "yes", "household": 4, "reason": "billing"}
    heard = " ".join(t["text"] for t in out.transcript if t["who"] == "caller").lower()
    assert "bill" in heard
    # the goodbye was played to its end before the hang-up
    assert caller.last_heard() > caller.speech_ends[-1]
    types = [e.type for e in _robot_events(services)]
    assert types.count("robot.outcome") == 1 and types.count("robot.step") > 10
    assert services.metrics.value("robot_sessions_total", result="completed") == 1


def test_barge_in_stops_playback(
    services: Services, caller: SimCaller, record_property: Any, long_yaml: str
) -> None:
    session = _place(services, caller, long_yaml, "robot-barge")
    q = long_yaml.split(">-")[1].split("expect")[0]
    full_s = len(prompts_of(services).render(" ".join(q.split()), "PCMU")) / 8000
    assert full_s > 6.0
    deadline = time.time() + 30
    while not caller.heard and time.time() < deadline:
        time.sleep(0.01)
    prompt_start = caller.heard[0].at
    time.sleep(max(0.0, prompt_start + 1.5 - time.time()))
    speech = caller.speech("Yes, I am happy to continue.")
    talk_at = time.time()
    caller.say(speech, wait=False)
    assert session.wait(40), session.state()
    assert session.outcome is not None and session.outcome.result == "done"
    assert session.outcome.slots == {"q": "yes"}
    # the question's packets: those before the goodbye prompt (a new talk spurt, marker bit)
    first_bye = next(h.at for h in caller.heard[1:] if h.marker)
    question = [h for h in caller.heard if h.at < first_bye]
    stopped_at = question[-1].at
    assert stopped_at < prompt_start + full_s - 2.0  # stopped long before its end
    assert stopped_at > talk_at  # ... and because the caller spoke
    record_property("barge_in_stop_ms", round((stopped_at - talk_at) * 1000))
    assert len(session.barge_ins) == 1


def test_dtmf_answers(services: Services, caller: SimCaller, survey_yaml: str) -> None:
    session = _place(services, caller, survey_yaml, "robot-dtmf", name="Bo")
    last = caller.wait_robot_done(0.0)
    caller.press("1")
    last = caller.wait_robot_done(last)
    caller.press("3#")
    time.sleep(1.0)  # the reason question starts; keys may interrupt it
    caller.press("2")
    assert session.wait(40), session.state()
    out = session.outcome
    assert out is not None and out.result == "transferred"
    assert out.slots == {"happy": "yes", "household": 3, "reason": "outage"}
    assert session.state()["transfer"] == {"queue": "outages"}


SHORT = """
name: short
steps:
  - id: q
    ask: "Yes or no?"
    expect: yes_no
    timeout_s: 1.0
    no_input: {retries: 1}
    no_match: {retries: 0}
  - {id: bye, hangup: done}
"""


def test_silent_peer_and_cough_end_on_no_input(
    services: Services, caller: SimCaller, piper_voice: Any
) -> None:
    # A peer that never sends audio: the SimCaller is not connected, so nothing comes.
    silent = SimCaller(piper_voice)
    start = RobotStart(
        tenant="acme",
        call_id="robot-silent",
        scenario=SHORT,
        media=MediaPeer(host=silent.host, port=silent.port),
    )
    s1 = sessions_of(services).place(start)
    # A caller who only coughs: a short burst of noise after each question.
    s2 = _place(services, caller, SHORT, "robot-cough")
    rng = np.random.default_rng(3)
    cough = (rng.normal(0, 6000, 1200)).astype(np.int16)
    last = 0.0
    while not s2.done:  # after each question (and re-prompt) the caller coughs
        try:
            last = caller.wait_robot_done(last, quiet_s=0.3, timeout_s=5.0)
        except TimeoutError:
            break
        caller.say(cough)
    try:
        assert s1.wait(20) and s2.wait(20)
    finally:
        silent.close()
    assert s1.outcome is not None and s1.outcome.result == "no_input"
    # Whisper may spell a cough as a word ("I'm", "Oh"), heard too unsurely to be an answer
    assert s2.outcome is not None and s2.outcome.result == "no_input", s2.state()
    assert s2.outcome.slots == {}


def test_a_decode_queue_closed_by_shutdown_is_no_session_failure(
    services: Services, caller: SimCaller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    session = _place(services, caller, SHORT, "robot-closing")
    last = caller.wait_robot_done(0.0, quiet_s=0.3)
    robot_decoder_of(services).close()  # as the process's shutdown does
    caller.say("Yes.")
    caller.wait_robot_done(last, quiet_s=0.3)  # heard nothing: the robot asks again
    assert session.wait(20), session.state()
    assert session.outcome is not None and session.outcome.result == "no_input"
    assert services.metrics.value("robot_stt_errors_total") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "robot STT stopped: the decode queue closed" in caplog.text
