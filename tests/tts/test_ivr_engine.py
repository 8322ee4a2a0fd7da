"""Engine: walks by DTMF and speech, retries, hours, expired and finished sessions."""

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tts.ivr.engine import Engine, SessionExpired, SessionFinished, fold, match_speech
from tts.ivr.validate import load_menu


def test_dtmf_walk(menu_doc: dict[str, Any]) -> None:
    eng = Engine(60)
    r = eng.start("m", load_menu(menu_doc))
    assert r["prompts"] == ["entry", "main"] and r["action"] is None
    r2 = eng.input(r["session"], dtmf="2")
    assert r2 is not None and r2["node"] == "support"
    r3 = eng.input(r["session"], dtmf="1")
    assert r3 is not None and r3["action"] == {"kind": "transfer", "extension": "204"}
    with pytest.raises(SessionFinished):
        eng.input(r["session"], dtmf="1")


def test_speech_on_partials(menu_doc: dict[str, Any]) -> None:
    eng = Engine(60)
    sid = eng.start("m", load_menu(menu_doc))["session"]
    assert eng.input(sid, speech="I would like", final=False) is None
    r = eng.input(sid, speech="I would like TECHNICAL Support please", final=False)
    assert r is not None and r["node"] == "support"
    r = eng.input(sid, speech="an agent.", final=False)
    assert r is not None and r["action"] == {"kind": "transfer", "queue": "tech"}


def test_keyword_matching_rules(menu_doc: dict[str, Any]) -> None:
    opts = load_menu(menu_doc).nodes["main"].options
    assert fold("HÉLP!") == "help"
    assert match_speech(opts, "help me") is opts[1]  # accent-insensitive
    assert match_speech(opts, "wholesales") is None  # whole words only
    assert match_speech(opts, "Sales.") is opts[0]


def test_retries_then_fail(menu_doc: dict[str, Any]) -> None:
    eng = Engine(60)
    sid = eng.start("m", load_menu(menu_doc))["session"]
    r = eng.input(sid, dtmf="7")
    assert r is not None and r["retry"] == 1 and r["prompts"] == ["main"]
    r = eng.input(sid, speech="banana", final=True)
    assert r is not None and r["action"] == {"kind": "hangup"} and r["finished"]


def test_hours_closed(menu_doc: dict[str, Any]) -> None:
    menu_doc["nodes"]["entry"]["action"]["schedule"] = {"mon": ["09:00-17:00"]}
    menu = load_menu(menu_doc)
    monday_8_utc = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)  # 09:30 in Paris: open
    assert Engine(60).start("m", menu, now=monday_8_utc)["node"] == "main"
    monday_16_utc = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)  # 17:30 in Paris: closed
    r = Engine(60).start("m", menu, now=monday_16_utc)
    assert r["prompts"] == ["entry", "closed"] and r["action"] == {"kind": "hangup"}


def test_expiry(menu_doc: dict[str, Any]) -> None:
    eng = Engine(0.05)
    sid = eng.start("m", load_menu(menu_doc))["session"]
    time.sleep(0.1)
    with pytest.raises(SessionExpired):
        eng.input(sid, dtmf="1")


def test_no_input_and_no_match_prompts(menu_doc: dict[str, Any]) -> None:
    menu_doc["nodes"]["main"].update(
        retries=2, no_input_prompt="Are you still there?", no_match_prompt="Sorry."
    )
    eng = Engine(60)
    sid = eng.start("m", load_menu(menu_doc))["session"]
    r = eng.input(sid)  # the PBX's timeout: no input
    assert r is not None and r["reason"] == "no_input"
    assert r["prompts"] == ["main:no_input", "main"]
    r = eng.input(sid, dtmf="5")
    assert r is not None and r["reason"] == "no_match" and r["retry"] == 2
    assert r["prompts"] == ["main:no_match", "main"]
    r = eng.input(sid, dtmf="5")  # retries used up: on_fail (hang up)
    assert r is not None and r["finished"] and r["action"] == {"kind": "hangup"}


def test_live_partials_route_without_waiting(menu_doc: dict[str, Any]) -> None:
    eng = Engine(60)
    sid = eng.start("m", load_menu(menu_doc))["session"]
    assert eng.match_speech(sid, "I need sup", final=False) is None
    assert eng.match_speech(sid, "I need sup...", final=False) is None
    r = eng.match_speech(sid, "I need support", final=False)
    assert r is not None and r["node"] == "support" and r["prompts"] == ["support"]


def test_silent_routing_node_has_no_prompt(menu_doc: dict[str, Any]) -> None:
    menu_doc["nodes"]["entry"]["prompt"] = None  # the hours branch plays nothing itself
    r = Engine(60).start("m", load_menu(menu_doc))
    assert r["prompts"] == ["main"]
