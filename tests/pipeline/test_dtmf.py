"""RFC 4733 telephone-events: one key press per event, whatever the redundancy or loss."""

from __future__ import annotations

import pytest

from pipeline.media.dtmf import DtmfDetector, DtmfError, build_event, parse_event


def test_event_payload_round_trip() -> None:
    ev = parse_event(build_event("#", 1600, end=True, volume=7))
    assert (ev.digit, ev.end, ev.volume, ev.duration) == ("#", True, 7, 1600)
    assert parse_event(build_event(16, 80)).digit is None  # flash, not a key
    with pytest.raises(DtmfError):
        parse_event(b"\x01\x80")


def _press(det: DtmfDetector, ts: int, digit: str, steps: int = 5, ends: int = 3) -> list:
    out = []
    for i in range(1, steps + 1):
        out += det.feed(ts, build_event(digit, 160 * i))
    for _ in range(ends):
        out += det.feed(ts, build_event(digit, 160 * (steps + 1), end=True))
    return out


def test_three_end_packets_give_one_press() -> None:
    det = DtmfDetector()
    presses = _press(det, 8000, "5")
    assert [(p.digit, p.timestamp, p.duration) for p in presses] == [("5", 8000, 960)]
    assert det.flush() == []


def test_the_same_digit_twice_is_two_presses() -> None:
    det = DtmfDetector()
    presses = _press(det, 1000, "7") + _press(det, 3000, "7")
    assert [p.digit for p in presses] == ["7", "7"]


def test_lost_end_packets_end_the_press_when_the_next_starts_or_the_leg_ends() -> None:
    det = DtmfDetector()
    first = _press(det, 1000, "1", ends=0)
    assert first == []
    second = _press(det, 3000, "2", ends=0)
    assert [(p.digit, p.duration) for p in second] == [("1", 800)]
    assert [p.digit for p in det.flush()] == ["2"]


def test_late_duplicate_of_a_finished_press_is_ignored() -> None:
    det = DtmfDetector()
    _press(det, 1000, "9")
    assert det.feed(1000, build_event("9", 960, end=True)) == []
    assert det.feed(1000, build_event("9", 160)) == []


def test_non_key_events_are_skipped() -> None:
    det = DtmfDetector()
    assert det.feed(100, build_event(16, 800, end=True)) == []
    assert det.flush() == []
