"""The analyst page in headless Chromium (Debian's, driven by Playwright): search, click a
hit, and the audio player stands at the hit's start. The real app runs under uvicorn; the
call's recording is Piper speech, indexed through the bus and the index worker."""

from __future__ import annotations

import io
import threading
import time
import wave
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import uvicorn

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.events import CallStarted, Event, Utterance
from pipeline.ids import call_key
from pipeline.media.resample import float_to_int16
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from recordings.index import index_of
from recordings.index.worker import IndexStage

RATE = 16000
STARTED = datetime(2025, 2, 3, 10, 30, tzinfo=UTC)
LINES = [
    ("agent", "Good morning, how can I help you today?"),
    ("customer", "I would like to cancel my contract please."),
    ("agent", "Of course, let me find your account."),
    ("customer", "My customer number is four five six."),
]


def recorded_call(
    speak: Callable[..., np.ndarray],
) -> tuple[bytes, list[tuple[str, float, float, str]]]:
    """A mono WAV of the lines with pauses, and each line's (leg, start, end, text)."""
    gap = np.zeros(int(0.7 * RATE), np.float32)
    parts: list[np.ndarray] = [gap]
    pos = len(gap)
    timed = []
    for leg, text in LINES:
        speech = speak(text, RATE)
        timed.append((leg, pos / RATE, (pos + len(speech)) / RATE, text))
        parts += [speech, gap]
        pos += len(speech) + len(gap)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(float_to_int16(np.concatenate(parts)).tobytes())
    return buf.getvalue(), timed


@pytest.fixture
def served(services: Services, unused_port: int) -> Iterator[str]:
    """The full app under uvicorn on a free port, in a thread."""
    port = unused_port
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_click_a_hit_and_the_player_is_at_it(
    services: Services,
    speak: Callable[..., np.ndarray],
    served: str,
    browser: Any,
    publish_events: Callable[..., None],
) -> None:
    wav, timed = recorded_call(speak)
    services.store.put(call_key("acme", "web-1", STARTED, "recording.wav"), wav, "audio/wav")
    events: list[Event] = [
        CallStarted(tenant="acme", call_id="web-1", agent_id="a-3", started_at=STARTED)
    ]
    events += [
        Utterance(
            tenant="acme",
            call_id="web-1",
            leg=leg,
            utterance_id=f"u-web-{i}",  # type: ignore[arg-type]
            start=round(s, 3),
            end=round(e, 3),
            text=text,
            source="batch",
        )
        for i, (leg, s, e, text) in enumerate(timed)
    ]
    # join the group first: the in-process bus drops what every live group has read
    runner = WorkerRunner(
        IndexStage(services, index_of(services)), services.bus, services.topics, services.metrics
    )
    publish_events(services, *events)
    deadline = time.monotonic() + 20
    while len(index_of(services).call_utterances("acme", "web-1")) < len(LINES):
        assert time.monotonic() < deadline, "the index worker did not index the call"
        runner.run_once()
    key = keys_of(services).create("acme", "analyst")
    hit_start = round(timed[1][1], 3)  # "cancel my contract"
    assert hit_start > 2.0  # far enough from 0 that a player left at the start would fail

    page = browser.new_page()
    page.goto(served + "/")
    page.fill("#api-key", key)
    page.fill("#q", "contract")
    page.click("#search-button")
    page.wait_for_selector("#results li.hit")
    hits = page.locator("#results li.hit")
    assert hits.count() == 1
    assert hits.first.locator("mark").inner_text() == "contract"
    hits.first.click()
    page.wait_for_function(
        "(t) => { const a = document.getElementById('player');"
        " return a.readyState >= 1 && Math.abs(a.currentTime - t) < 0.3; }",
        arg=hit_start,
        timeout=20_000,
    )
    current = page.evaluate("document.getElementById('player').currentTime")
    assert abs(current - hit_start) <= 0.3
    duration = page.evaluate("document.getElementById('player').duration")
    assert abs(duration - len(wav[44:]) / 2 / RATE) < 0.1  # the call's own audio
    # the two-speaker transcript, the hit's utterance marked
    assert page.locator("#transcript li.agent").count() == 2
    assert page.locator("#transcript li.customer").count() == 2
    assert "cancel my contract" in page.locator("#transcript li.current").inner_text()
    # clicking another utterance seeks there
    later = round(timed[3][1], 3)
    page.locator("#transcript li").nth(3).click()
    page.wait_for_function(
        "(t) => Math.abs(document.getElementById('player').currentTime - t) < 0.3",
        arg=later,
        timeout=10_000,
    )
    # the key was kept for the next visit
    page.reload()
    assert page.input_value("#api-key") == key
    # a malformed query shows the API's reason, not a crash
    page.fill("#q", '"cancel my')
    page.click("#search-button")
    page.wait_for_selector("#status.error")
    assert "unbalanced quote" in page.inner_text("#status")
