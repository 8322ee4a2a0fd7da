"""RFC 4733 telephone-events: DTMF digits out of RTP, one per key press.

All packets of one key press share its RTP timestamp; the end packet is sent three
times. A detector keyed on that timestamp reports each press once, at its first end
packet (or, when every end packet was lost, when the next press starts or the leg ends).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

DIGITS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")


class DtmfError(ValueError):
    """A telephone-event payload that cannot be read."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 section 2.3)."""

    event: int
    end: bool
    volume: int
    duration: int  # in RTP clock units since the event's timestamp

    @property
    def digit(self) -> str | None:
        """The DTMF key, or None for other events (flash, tones)."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def parse_event(payload: bytes) -> TelephoneEvent:
    """Decode the first (or only) event block of a payload."""
    if len(payload) < _EVENT.size:
        raise DtmfError(f"telephone-event payload of {len(payload)} bytes, expected 4")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def build_event(event: int | str, duration: int, *, end: bool = False, volume: int = 10) -> bytes:
    """Encode one telephone-event payload (digit or event code)."""
    code = DIGITS.index(event) if isinstance(event, str) else event
    return _EVENT.pack(code, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


@dataclass(frozen=True, slots=True)
class KeyPress:
    """A finished key press: digit, RTP timestamp of its start, duration in clock units."""

    digit: str
    timestamp: int
    duration: int


class DtmfDetector:
    """Per leg: telephone-event packets in, one KeyPress per key press out."""

    def __init__(self, remember: int = 32) -> None:
        self._current: tuple[int, str, int] | None = None  # timestamp, digit, duration
        self._done: deque[int] = deque(maxlen=remember)

    def feed(self, timestamp: int, payload: bytes) -> list[KeyPress]:
        """One telephone-event packet (extended timestamp); finished presses come back."""
        ev = parse_event(payload)
        out: list[KeyPress] = []
        if timestamp in self._done or ev.digit is None:
            return out
        cur = self._current
        if cur is not None and cur[0] != timestamp:
            # A new press began before this one's end packets arrived: it is over anyway.
            out.append(self._finish())
            cur = None
        duration = max(ev.duration, cur[2]) if cur is not None else ev.duration
        self._current = (timestamp, ev.digit, duration)
        if ev.end:
            out.append(self._finish())
        return out

    def flush(self) -> list[KeyPress]:
        """The leg ended: a press whose end packets never came is reported now."""
        return [self._finish()] if self._current is not None else []

    def _finish(self) -> KeyPress:
        assert self._current is not None
        ts, digit, duration = self._current
        self._current = None
        self._done.append(ts)
        return KeyPress(digit, ts, duration)
