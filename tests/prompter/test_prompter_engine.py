"""One call's souffleur: exactly one hint per firing, cool-downs, absences, silences, KB."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import PrompterSettings
from prompter.bundles import build_bundle
from prompter.engine import CallInfo, CallSession
from prompter.kb import Article, KbIndex
from prompter.validate import load_playbook

T0 = 1_800_000_000.0  # wall clock of the call's start

EXTRA = """
  - id: early-greeting
    when: {phrases: ["good morning"], leg: agent, within_s: 10}
    hint: {kind: script, title: Greeting, text: "Greeted."}
  - id: upsell
    when: {phrases: ["fibre"], after: retention, leg: customer}
    hint: {kind: script, title: Upsell, text: "Fibre after retention."}
"""


def _session(
    yaml_text: str, settings: PrompterSettings, articles: list[Article] | None = None
) -> CallSession:
    book = load_playbook(yaml_text, settings)
    bundle = build_bundle("acme", 1, [("frontline", book)], KbIndex(articles or []), settings)
    info = CallInfo("acme", "c-1", started_wall=T0, agent_id="a-7", caller="+33100000000")
    return CallSession(bundle, info, settings)


@pytest.fixture
def session(playbook_yaml: str, prompter_settings: PrompterSettings) -> CallSession:
    return _session(playbook_yaml + EXTRA, prompter_settings)


def _rules(hints: list[Any], *only: str) -> list[str]:
    """Rules of the hints (only those named, when some are)."""
    names = [h.trigger.rule for h in hints]
    return [n for n in names if n in only] if only else names


def test_partials_then_final_give_exactly_one_hint(
    session: CallSession, make_utt: Any, playbook_yaml: str, prompter_settings: PrompterSettings
) -> None:
    said = [
        make_utt("I want to", final=False, revision=0, end=2.0),
        make_utt("I want to cancel my contract", final=False, revision=1, end=3.0),
        make_utt("I want to cancel my contract", final=False, revision=2, end=3.5),
        make_utt("I want to cancel my contract.", final=True, revision=3, end=3.8),
    ]
    hints = [h for u in said for h in session.process(u, T0 + u.end + 0.5)]
    assert _rules(hints) == ["frontline/retention"]
    h = hints[0]
    assert h.kind == "script" and h.agent_id == "a-7" and h.call_id == "c-1"
    assert h.text == "The customer said 'cancel my contract'. Offer two months free."
    assert h.trigger.utterance_id == "u-1" and h.trigger.matched == "cancel my contract"
    assert h.priority == 5
    # The same firing replayed in a new session gets the same id (a replay overwrites).
    again = _session(playbook_yaml + EXTRA, prompter_settings)
    replayed = [h for u in said for h in again.process(u, T0 + 5)]
    assert [r.hint_id for r in replayed] == [h.hint_id]


def test_cool_down_then_fires_again(session: CallSession, make_utt: Any) -> None:
    first = session.process(make_utt("cancel my contract", uid="u-1", start=1, end=3), T0 + 3)
    soon = session.process(make_utt("cancel my contract", uid="u-2", start=10, end=12), T0 + 12)
    later = session.process(make_utt("cancel my contract", uid="u-3", start=40, end=42), T0 + 42)
    retention = "frontline/retention"
    assert _rules(first, retention) == [retention]
    assert _rules(soon, retention) == []
    assert _rules(later, retention) == [retention]
    assert first[0].hint_id != [h for h in later if h.trigger.rule == retention][0].hint_id


def test_leg_filter(session: CallSession, make_utt: Any) -> None:
    assert session.process(make_utt("cancel my contract", leg="agent"), T0 + 3) == []


def test_recording_notice_missing_fires_at_30_s(session: CallSession, make_utt: Any) -> None:
    notice = "frontline/recording-notice"
    session.process(make_utt("good morning how can I help", leg="agent", start=1, end=3), T0 + 3)
    assert _rules(session.tick(T0 + 29.9), notice) == []
    due = [h for h in session.tick(T0 + 30.1) if h.trigger.rule == notice]
    assert len(due) == 1
    assert due[0].kind == "compliance" and due[0].title == "Recording notice"
    assert due[0].text == "Tell the customer this call is recorded." and due[0].agent_id == "a-7"
    assert _rules(session.tick(T0 + 45) + session.tick(T0 + 400), notice) == []


def test_recording_notice_said_in_time_never_fires(session: CallSession, make_utt: Any) -> None:
    notice = make_utt("Hello, this call is recorded for quality.", leg="agent", start=2, end=5)
    session.process(notice, T0 + 5)
    assert [
        h
        for t in (29.9, 30.1, 45.0, 90.0)
        for h in session.tick(T0 + t)
        if h.trigger.rule == "frontline/recording-notice"
    ] == []


def test_recording_notice_said_too_late_still_fires(session: CallSession, make_utt: Any) -> None:
    late = make_utt("by the way this call is recorded", leg="agent", start=33, end=36)
    hints = session.process(late, T0 + 36)
    assert "frontline/recording-notice" in _rules(hints)


def test_recording_notice_said_by_the_customer_does_not_count(
    session: CallSession, make_utt: Any
) -> None:
    session.process(make_utt("is this call is recorded?", leg="customer", start=2, end=4), T0 + 4)
    assert "frontline/recording-notice" in _rules(session.tick(T0 + 31))


def test_hold_reminder_after_20_s_of_silence(session: CallSession, make_utt: Any) -> None:
    session.process(make_utt("this call is recorded", leg="agent", start=1, end=10), T0 + 10.5)
    assert session.tick(T0 + 29.5) == []
    due = session.tick(T0 + 30.2)
    assert _rules(due) == ["frontline/hold"] and due[0].kind == "alert"
    assert session.tick(T0 + 35) == []  # once per silence
    session.process(make_utt("still there?", uid="u-9", start=38, end=40), T0 + 40.5)
    assert session.tick(T0 + 55) == []
    again = session.tick(T0 + 61)
    assert _rules(again) == ["frontline/hold"] and again[0].hint_id != due[0].hint_id


def test_within_and_after(session: CallSession, make_utt: Any) -> None:
    early = session.process(make_utt("good morning", leg="agent", start=2, end=3), T0 + 3)
    assert _rules(early) == ["frontline/early-greeting"]
    fibre = session.process(make_utt("what about fibre", uid="u-2", start=5, end=7), T0 + 7)
    assert _rules(fibre, "frontline/upsell") == []  # retention has not fired yet
    session.process(make_utt("cancel my contract", uid="u-3", start=8, end=9), T0 + 9)
    fibre = session.process(make_utt("and fibre then", uid="u-4", start=12, end=14), T0 + 14)
    assert _rules(fibre, "frontline/upsell") == ["frontline/upsell"]
    late = session.process(make_utt("good morning", leg="agent", uid="u-5", start=50), T0 + 52)
    assert _rules(late, "frontline/early-greeting") == []


def test_knowledge_question_gets_its_article(
    playbook_yaml: str, prompter_settings: PrompterSettings, make_utt: Any
) -> None:
    articles = [
        Article(
            id="roaming",
            title="Calling from abroad",
            questions=("How much does it cost to call from abroad?",),
            answer="Free in the EU; one euro a minute elsewhere.",
        ),
        Article(
            id="address",
            title="Change the billing address",
            questions=("How do I change my billing address?",),
            answer="Account > Billing > Address.",
        ),
    ]
    session = _session(playbook_yaml, prompter_settings, articles)
    said = [
        make_utt("how much", final=False, revision=0, end=2),
        make_utt("how much does it cost to call", final=False, revision=1, end=3),
        make_utt("how much does it cost to call from Spain", final=False, revision=2, end=4),
        make_utt("How much does it cost to call from Spain?", final=True, revision=3, end=4.2),
    ]
    hints = [h for u in said for h in session.process(u, T0 + 5)]
    assert [(h.kind, h.title, h.text) for h in hints] == [
        ("knowledge", "Calling from abroad", "Free in the EU; one euro a minute elsewhere.")
    ]
    assert hints[0].trigger.rule == "kb:roaming"
    # The agent's own words never fetch articles.
    agent = make_utt("how much does it cost to call abroad", leg="agent", uid="u-2", start=9)
    assert session.process(agent, T0 + 12) == []
