"""docs/events.md is what app/events_doc.py makes of the code: a changed event or socket
changes the page, or this fails (regenerate: python -m app.events_doc > docs/events.md)."""

from __future__ import annotations

from pathlib import Path

from app.events_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_the_events_page_is_up_to_date() -> None:
    assert DOC.read_text() == render()


def test_the_page_names_every_event_and_socket() -> None:
    page = render()
    for kind in ("utterance", "hint", "call.started", "call.ended", "dtmf", "transcript.ready"):
        assert f"### `{kind}`" in page
    for path in ("/v1/calls/{call_id}/live", "/v1/agents/{agent_id}/hints", "/v1/media/twilio"):
        assert f"### {path}" in page
    assert "Callpipe-Signature" in page and "| `utterance_id` | string | yes |" in page
