"""The prompter worker on the real in-process bus: hints out of call and utterance events,
tenants apart, playbook updates for new calls only, bad input dead-lettered."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.events import CallEnded, Event, Hint, decode_event
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from prompter.store import prompter_store
from prompter.validate import load_playbook
from prompter.worker import PrompterStage

RIVAL = """
rules:
  - id: refund
    when: {phrases: ["refund"], leg: customer}
    hint: {kind: script, title: Refund, text: "Rival's refund script"}
"""


class Rig:
    """A prompter stage driven round by round, and a reader of what it published."""

    def __init__(self, services: Services, publish: Callable[..., None]) -> None:
        self.services = services
        self._publish = publish
        self.stage = PrompterStage(services)
        self.runner = WorkerRunner(
            self.stage, services.bus, services.topics, services.metrics, poll_timeout_s=0.05
        )
        topics = services.topics
        self.hints = services.bus.consumer([topics.hints], "test-hints")
        self.dead = services.bus.consumer([topics.deadletter], "test-dead")

    def send(self, *events: Event) -> None:
        self._publish(self.services, *events)

    def run(self, rounds: int = 3) -> list[Hint]:
        for _ in range(rounds):
            self.runner.run_once()
        out = []
        for m in self.hints.poll(0.05):
            event = decode_event(m.value)
            assert isinstance(event, Hint)
            out.append(event)
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(m.value) for m in self.dead.poll(0.05)]


def _put(services: Services, tenant: str, name: str, text: str) -> None:
    settings = services.settings.prompter
    prompter_store(services).put_playbook(tenant, name, load_playbook(text, settings), text)


@pytest.fixture
def rig(
    services: Services, playbook_yaml: str, publish_events: Callable[..., None]
) -> Iterator[Rig]:
    _put(services, "acme", "frontline", playbook_yaml)
    _put(services, "rival", "frontline", RIVAL)
    yield Rig(services, publish_events)


def _now_call(make_call: Any, call_id: str, tenant: str = "acme", ago_s: float = 1.0) -> Any:
    return make_call(
        call_id=call_id, tenant=tenant, started_at=datetime.now(UTC) - timedelta(seconds=ago_s)
    )


def test_partials_and_final_give_one_hint_on_the_bus(
    rig: Rig, make_call: Any, make_utt: Any
) -> None:
    rig.send(_now_call(make_call, "c-1"))
    rig.send(
        make_utt("I want to cancel", final=False, revision=0, end=1.5),
        make_utt("I want to cancel my contract", final=False, revision=1, end=2.5),
        make_utt("I want to cancel my contract", final=True, revision=2, end=2.8),
    )
    hints = rig.run()
    assert [(h.trigger.rule, h.agent_id, h.call_id) for h in hints] == [
        ("frontline/retention", "a-7", "c-1")
    ]
    # The keyword "cancellation" already hears "cancel" in the first partial: it fires
    # there, and the later revisions and the final repeat nothing.
    assert hints[0].text == "The customer said 'cancel'. Offer two months free."
    assert hints[0].trigger.utterance_id == "u-1"
    stats = prompter_store(rig.services).stats("acme")
    assert [(s.rule, s.fired) for s in stats] == [("frontline/retention", 1)]
    assert rig.services.metrics.value("prompter_hints_total", kind="script") == 1


def test_tenants_playbooks_never_cross(rig: Rig, make_call: Any, make_utt: Any) -> None:
    words = "I want to cancel my contract and get a refund"
    rig.send(_now_call(make_call, "same-id", "acme"), _now_call(make_call, "same-id", "rival"))
    rig.send(
        make_utt(words, call_id="same-id", tenant="acme"),
        make_utt(words, call_id="same-id", tenant="rival"),
    )
    hints = rig.run()
    assert sorted((h.tenant, h.trigger.rule) for h in hints) == [
        ("acme", "frontline/retention"),
        ("rival", "frontline/refund"),
    ]
    assert len({h.hint_id for h in hints}) == 2


def test_playbook_update_applies_to_new_calls_only(
    rig: Rig, services: Services, make_call: Any, make_utt: Any, playbook_yaml: str
) -> None:
    rig.send(_now_call(make_call, "old"))
    rig.run(1)
    _put(
        services,
        "acme",
        "upsell",
        """
rules:
  - id: fibre
    when: {keywords: [fibre], leg: customer}
    hint: {kind: script, title: Fibre, text: "Offer the fibre plan"}
""",
    )
    rig.send(_now_call(make_call, "new"))
    rig.send(
        make_utt("do you have fibre", call_id="old"), make_utt("do you have fibre", call_id="new")
    )
    hints = rig.run()
    assert [(h.call_id, h.trigger.rule) for h in hints] == [("new", "upsell/fibre")]


def test_recording_notice_fires_from_tick_and_calls_end(
    rig: Rig, make_call: Any, make_utt: Any
) -> None:
    rig.send(_now_call(make_call, "quiet", ago_s=29.0), _now_call(make_call, "said", ago_s=29.0))
    rig.send(make_utt("hello, this call is recorded", leg="agent", call_id="said", start=1, end=3))
    assert [h for h in rig.run() if h.kind == "compliance"] == []
    deadline = time.monotonic() + 10
    got: list[Hint] = []
    while time.monotonic() < deadline and not got:
        got = [h for h in rig.run(1) if h.kind == "compliance"]
    assert [(h.call_id, h.trigger.rule) for h in got] == [("quiet", "frontline/recording-notice")]
    rig.send(CallEnded(tenant="acme", call_id="quiet"), CallEnded(tenant="acme", call_id="said"))
    rig.run()
    assert rig.stage.sessions == {}
    # Late finals of an ended call do not revive it.
    rig.send(make_utt("cancel my contract", call_id="quiet", start=40))
    assert rig.run() == [] and rig.stage.sessions == {}


def test_bad_input_is_dead_lettered_and_others_go_on(
    rig: Rig, make_call: Any, make_utt: Any
) -> None:
    rig.send(_now_call(make_call, "c-2"))
    rig.send(
        make_utt("cancel " * 1000, call_id="c-2", uid="u-big"),
        make_utt("text", call_id="c-2", uid="u-neg", start=5, end=4),
        make_utt("batch says cancel my contract", call_id="c-2", uid="u-b", source="batch"),
        make_utt("cancel my contract", call_id="c-2", uid="u-ok"),
    )
    hints = rig.run()
    assert [(h.trigger.rule, h.trigger.utterance_id) for h in hints] == [
        ("frontline/retention", "u-ok")
    ]
    reasons = sorted(d["reason"] for d in rig.dead_letters())
    assert len(reasons) == 2
    assert "longer than 5000 characters" in reasons[0]
    assert "0 <= start <= end" in reasons[1]
    m = rig.services.metrics
    assert m.value("prompter_rejected_total", reason="text_too_long") == 1
    assert m.value("prompter_ignored_total", reason="batch") == 1


def test_utterances_without_call_started_still_get_hints(rig: Rig, make_utt: Any) -> None:
    rig.send(make_utt("please cancel my contract", call_id="orphan", start=100, end=102))
    hints = rig.run()
    # Joined mid-call: what was said before is unknown, so no absence is judged.
    assert [(h.call_id, h.trigger.rule, h.agent_id) for h in hints] == [
        ("orphan", "frontline/retention", None)
    ]
    assert [h for h in rig.run() if h.kind == "compliance"] == []
