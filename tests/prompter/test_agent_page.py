"""The agent page in headless Chromium (Debian's, driven by Playwright) against the real app
under uvicorn: the agent connects, the call it is put on shows its live transcript (a
partial's stable words, then its tentative ones set apart, then the final in their place,
and the caller's key presses), and hints arrive beside it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.auth import keys_of
from pipeline.events import DtmfReceived, Hint, HintTrigger, Utterance
from pipeline.services import Services
from prompter.delivery import hint_hub
from stt.live_call import LiveCall, ensure_manifest
from stt.live_state import live_hub


def _utterance(text: str, final: bool, revision: int, tentative: str = "") -> Utterance:
    return Utterance(
        tenant="acme",
        call_id="c-1",
        leg="customer",
        utterance_id="u-c-1",
        start=1.0,
        end=2.5,
        text=text,
        final=final,
        source="live",
        revision=revision,
        tentative=tentative,
    )


def _words_shown(page: Any) -> str:
    """The transcript line's text after its time and leg labels."""
    return str(
        page.evaluate(
            "[...document.querySelector('#transcript .utt').childNodes].slice(2)"
            ".map((n) => n.textContent).join('')"
        )
    )


def test_the_agent_sees_stable_then_tentative_words_then_the_final(
    server: Any,
    services: Services,
    browser: Any,
    make_call: Any,
    publish_events: Callable[..., None],
    tmp_path: Path,
) -> None:
    assert hint_hub(services).wait_ready(10) and live_hub(services).wait_ready(10)
    key = keys_of(services).create("acme", "agent", agent_id="a-7")
    page = browser.new_page()
    page.goto(server.http + "/agent")
    page.fill("#key", key)  # no agent id: the panel takes the key's own
    page.click("#connect")
    page.wait_for_function("document.getElementById('status').textContent === 'connected'")
    assert page.inner_text("#who") == "agent a-7 · acme"
    assert page.locator("#agent-field").is_hidden()
    call = make_call("c-1")
    # what the live worker does on call.started (it does not run here): the call's manifest
    live = LiveCall(tenant="acme", call_id="c-1", started_at=call.started_at)
    live.apply_started(call)
    ensure_manifest(services.store, live)
    publish_events(services, call)
    page.wait_for_function("document.getElementById('call').textContent === 'call c-1'")
    # the caller, and a call timer that runs
    assert page.inner_text("#caller") == "Caller +33100000000"
    first = page.inner_text("#timer")
    page.wait_for_function("(t) => document.getElementById('timer').textContent !== t", arg=first)

    partial = _utterance("I would like", False, 1, tentative="to cancel my")
    line = page.locator("#transcript .utt")
    deadline = time.monotonic() + 15
    while not line.count():  # the page opens the call's socket once told of the call
        assert time.monotonic() < deadline, "no partial reached the page"
        publish_events(services, partial)  # a replay of the same revision: the same line
        page.wait_for_timeout(300)
    assert line.count() == 1 and "partial" in (line.get_attribute("class") or "")
    assert line.locator(".leg").inner_text() == "customer"
    assert line.locator(".at").inner_text() == "0:01"  # when in the call it was said
    assert line.locator(".tentative").inner_text().strip() == "to cancel my"
    assert _words_shown(page) == "I would like to cancel my"
    # the page shows tentative words in their own lighter colour, after the stable ones
    stable = page.evaluate("getComputedStyle(document.querySelector('.utt.partial')).color")
    unsure = page.evaluate("getComputedStyle(document.querySelector('.utt .tentative')).color")
    assert stable != unsure

    publish_events(
        services, _utterance("I would like to cancel", False, 2, tentative="my contract")
    )
    page.wait_for_function(
        "document.querySelector('#transcript .tentative')?.textContent.trim() === 'my contract'"
    )
    publish_events(services, _utterance("I would like to cancel my contract.", True, 3))
    page.wait_for_function(
        "(() => { const u = document.querySelector('#transcript .utt');"
        " return u && !u.classList.contains('partial'); })()"
    )
    assert line.count() == 1  # the final took the partial's place
    assert line.locator(".tentative").count() == 0
    assert _words_shown(page) == "I would like to cancel my contract."

    # A key press of the call shows in its place in the conversation.
    publish_events(
        services,
        DtmfReceived(
            tenant="acme", call_id="c-1", leg="customer", digit="5", start=3.0, duration=0.1
        ),
    )
    key_line = page.locator("#transcript .utt.dtmf")
    key_line.wait_for()
    assert key_line.locator(".leg").inner_text() == "customer"
    assert key_line.inner_text().endswith("pressed 5")

    publish_events(
        services,
        Hint(
            tenant="acme",
            call_id="c-1",
            agent_id="a-7",
            hint_id="h-1",
            kind="script",
            title="Retention offer",
            text="Offer two months free.",
            trigger=HintTrigger(utterance_id="u-c-1", matched="cancel", rule="churn"),
        ),
    )
    page.wait_for_selector("#hint-h-1")
    assert "Offer two months free." in page.inner_text("#hint-h-1")
    assert page.inner_text("#hint-h-1 .why") == "Why: rule churn · heard “cancel”"
    assert page.locator("#hint-h-1 .at").inner_text()  # the time it came
    page.screenshot(path=str(tmp_path / "agent-panel.png"))
