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
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.catalog import recording_manifest, save_manifest
from pipeline.events import CallStarted, Event, RecordingReady, Utterance
from pipeline.ids import call_key
from pipeline.media.resample import float_to_int16
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from recordings.index import index_of
from recordings.index.base import CallMeta
from recordings.index.worker import IndexStage
from recordings.transcripts import finish_transcript

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


@pytest.fixture
def indexed_call(
    services: Services,
    speak: Callable[..., np.ndarray],
    publish_events: Callable[..., None],
) -> tuple[bytes, list[tuple[str, float, float, str]]]:
    """Call web-1 (agent a-3, from +33 1 23 45 67 89) recorded and indexed in tenant acme;
    its WAV and each line's (leg, start, end, text)."""
    wav, timed = recorded_call(speak)
    key = call_key("acme", "web-1", STARTED, "recording.wav")
    services.store.put(key, wav, "audio/wav")
    uploaded = RecordingReady(
        tenant="acme",
        call_id="web-1",
        uri=services.store.uri(key),
        started_at=STARTED,
        channels="mono",
        agent_id="a-3",
        caller="+33123456789",
    )
    utterances = [
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
    # as the batch worker ends a call: manifest, transcript artifacts, transcript.ready
    manifest = recording_manifest(uploaded, key)
    save_manifest(services.store, manifest)
    duration = (len(wav) - 44) / 2 / RATE
    ready = finish_transcript(
        services.store, manifest, utterances, {}, "batch", duration, "en", (), ["churn-risk"]
    )
    events: list[Event] = [
        CallStarted(**uploaded.details()),
        *utterances,
        ready,
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
    return wav, timed


def test_click_a_hit_and_the_player_is_at_it(
    services: Services,
    indexed_call: tuple[bytes, list[tuple[str, float, float, str]]],
    served: str,
    browser: Any,
) -> None:
    wav, timed = indexed_call
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


def test_calls_listed_without_a_query_followed_while_playing_and_exported(
    services: Services,
    indexed_call: tuple[bytes, list[tuple[str, float, float, str]]],
    served: str,
    browser: Any,
    tmp_path: Path,
) -> None:
    """No query: the tenant's calls by date, caller and agent. A call opened from the list
    streams its audio by ranges through its signed link, the line being played is marked,
    and the download buttons give the transcript in each format. A search marks its terms
    in the call's transcript and exports its matches as CSV."""
    wav, timed = indexed_call
    duration = (len(wav) - 44) / 2 / RATE
    key = keys_of(services).create("acme", "analyst")
    page = browser.new_page()
    audio_requests: list[dict[str, str]] = []
    page.on(
        "request",
        lambda req: audio_requests.append(req.headers) if "/audio" in req.url else None,
    )
    page.goto(served + "/")
    page.fill("#api-key", key)
    page.click("#search-button")  # no query: the call list
    page.wait_for_selector("#calls tr.call-row")
    page.screenshot(path=str(tmp_path / "analyst-calls.png"))
    row = page.locator("#calls tr.call-row")
    assert row.count() == 1
    cells = row.first.locator("td").all_inner_texts()
    assert cells[:4] == ["2025-02-03 10:30", "+33123456789", "", "a-3"]
    assert cells[5] == "0:" + f"{duration:04.1f}"
    assert cells[6] == str(len(LINES))
    row.first.click()
    page.wait_for_selector("#transcript li")
    assert "+33123456789" in page.inner_text("#call-title")

    # played from the start, the marked line follows the audio to the second line
    page.evaluate("document.getElementById('player').play()")
    page.wait_for_function(
        "(t) => { const li = document.querySelector('#transcript li.playing');"
        " return li && Number(li.dataset.start) >= t; }",
        arg=round(timed[1][1], 3) - 0.01,
        timeout=30_000,
    )
    page.evaluate("document.getElementById('player').pause()")
    playing = page.locator("#transcript li.playing")
    assert playing.count() == 1
    assert "cancel my contract" in playing.inner_text()
    # the browser streamed the audio itself (a link, no key header) and asked for ranges
    assert audio_requests, "the player did not fetch the audio"
    assert all("authorization" not in h for h in audio_requests)
    assert any(h.get("range", "").startswith("bytes=") for h in audio_requests)

    # each download button saves the transcript in its format, named after the call
    for fmt, expected in (("srt", "00:00:0"), ("vtt", "WEBVTT"), ("json", '"utterances"')):
        with page.expect_download() as got:
            page.click(f"#dl-{fmt}")
        download = got.value
        assert download.suggested_filename == f"web-1.{fmt}"
        assert expected in open(download.path(), encoding="utf-8").read()

    # a search's terms are marked in the call opened from its hit; its matches export
    page.fill("#q", "cancel OR numb*")
    page.click("#search-button")
    page.wait_for_selector("#results li.hit")
    page.locator("#results li.hit").first.click()
    page.wait_for_function(
        "() => document.querySelectorAll('#transcript li mark').length >= 2", timeout=10_000
    )
    marks = page.locator("#transcript li mark").all_inner_texts()
    assert sorted(marks) == ["cancel", "number"]
    with page.expect_download() as got:
        page.click("#export-csv")
    rows = open(got.value.path(), encoding="utf-8").read().splitlines()
    assert rows[0].startswith("call_started_at,call_id,agent_id")
    assert len(rows) == 3  # the header and the two matching lines
    assert all(",web-1,a-3," in r for r in rows[1:])
    page.screenshot(path=str(tmp_path / "analyst-call.png"), full_page=True)


def test_a_calls_statistics_and_categories_and_the_dashboard(
    services: Services,
    indexed_call: tuple[bytes, list[tuple[str, float, float, str]]],
    served: str,
    browser: Any,
    tmp_path: Path,
) -> None:
    """The call list shows each call's categories and filters on them and on statistics;
    the call view shows who talked how much, silence and talking over; the dashboard draws
    talk ratio per agent, silence, interruptions and categories over time."""
    index = index_of(services)
    # two more calls of other agents and days, as the index stage stores a finished call
    for call_id, agent, day, tags, ratio in (
        ("web-2", "a-4", 4, ["churn-risk", "no-notice"], 0.82),
        ("web-3", "a-5", 5, [], 0.35),
    ):
        index.upsert_call(
            CallMeta("acme", call_id, started_at=STARTED.replace(day=day), agent_id=agent)
        )
        facts = {"duration_s": 120.0, "agent.talk_ratio": ratio, "longest_silence_s": 8.0 * day,
                 "agent.interruptions": 1.0, "customer.interruptions": float(day)}  # fmt: skip
        index.set_analysis("acme", call_id, facts, tags)
    key = keys_of(services).create("acme", "analyst")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(served + "/")
    page.fill("#api-key", key)
    page.click("#search-button")
    page.wait_for_selector("#calls tr.call-row")
    rows = page.locator("#calls tr.call-row")
    assert rows.count() == 3
    listed = {
        rows.nth(i).get_attribute("data-call-id"): rows.nth(i).locator(".tag").all_inner_texts()
        for i in range(3)
    }
    assert listed == {"web-1": ["churn-risk"], "web-2": ["churn-risk", "no-notice"], "web-3": []}

    page.click("details summary")
    page.fill("#f-tag", "no-notice")
    page.click("#search-button")
    page.wait_for_function("() => document.querySelectorAll('#calls tr.call-row').length === 1")
    assert page.locator("#calls tr.call-row").get_attribute("data-call-id") == "web-2"
    page.fill("#f-tag", "")
    page.fill("#f-stat", "agent.talk_ratio<0.36")
    page.click("#search-button")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#calls tr.call-row')].map(r => r.dataset.callId)"
        ".join() === 'web-3'"
    )
    page.fill("#f-stat", "loudness>3")
    page.click("#search-button")
    page.wait_for_function("() => document.getElementById('status').className === 'error'")
    assert "no statistic 'loudness'" in page.inner_text("#status")
    page.fill("#f-stat", "")
    page.click("#search-button")
    page.wait_for_function("() => document.querySelectorAll('#calls tr.call-row').length === 3")

    page.locator("#calls tr.call-row[data-call-id='web-1']").click()
    page.wait_for_selector("#call-stats:not([hidden])")
    assert page.inner_text("#call-tags") == "churn-risk"
    bar = page.locator("#talk-bar span").all_inner_texts()
    assert [b.split()[0] for b in bar] == ["agent", "customer"]
    assert sum(int(b.split()[1].rstrip("%")) for b in bar) in (99, 100, 101)
    stats = page.inner_text("#stats-list")
    for label in ("Talk", "Silence", "Talking over", "words/min", "cut in"):
        assert label in stats, stats
    page.screenshot(path=str(tmp_path / "analyst-call-stats.png"), full_page=True)

    page.click("#view-dashboard")
    page.select_option("#d-interval", "day")
    page.click("#dash-button")
    page.wait_for_function(
        "() => document.getElementById('dash-status').textContent.startsWith('3 calls')"
        " && document.querySelectorAll('#chart-agents rect.bar').length === 3"
    )
    agents = page.locator("#chart-agents text.label").all_text_contents()
    assert agents == ["a-3", "a-4", "a-5"]
    values = page.locator("#chart-agents text.value").all_text_contents()
    assert values[1:] == ["82%", "35%"]
    assert page.locator("#chart-silence rect.bar").count() == 3  # one per day
    assert page.locator("#chart-interruptions rect.bar").count() == 6  # two series
    # categories over the days: churn-risk on 3 and 4 February, no-notice on the 4th
    legend = page.inner_text("#chart-tags .legend")
    assert "churn-risk" in legend and "no-notice" in legend
    heights = page.evaluate(
        "() => [...document.querySelectorAll('#chart-tags rect.bar')]"
        ".map(r => r.querySelector('title').textContent)"
    )
    assert heights == [
        "churn-risk: 1", "no-notice: 0", "churn-risk: 1", "no-notice: 1", "churn-risk: 0",
        "no-notice: 0",
    ]  # fmt: skip
    page.screenshot(path=str(tmp_path / "analyst-dashboard.png"), full_page=True)
