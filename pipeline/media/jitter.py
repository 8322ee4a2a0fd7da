"""Per-leg jitter buffer: RTP packets in arrival order in, a gap-free timeline out.

Packets are put back in sequence order; duplicates and packets that come after their
slot was given up are dropped; a hole in the sequence is waited for at most `delay_ms`
(or until that much audio is queued behind the next packet), then declared lost.
Positions are in RTP clock units from the leg's first packet, so they stay right across
16-bit sequence and 32-bit timestamp wrap-around, SSRC changes (a new stream continues
where the old one stopped, plus the wall-clock pause) and timestamp jumps. In-order
packets pass at once: the buffer only holds audio while a hole is open.

Hand-written on purpose: no maintained Python jitter buffer exists outside WebRTC stacks,
where it is tied to their receivers; this one is small and tests/pipeline/test_jitter.py
pins every edge above.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_DROPOUT = 3000  # RFC 3550 A.1: a larger sequence jump is a restarted sender
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


@dataclass(slots=True)
class Played:
    """A packet at its place in the timeline (`duration` 0 for telephone-events)."""

    pos: int
    duration: int
    payload: bytes
    sequence: int
    timestamp: int
    arrival: float
    event: bool = False


@dataclass(slots=True)
class Gap:
    """Audio that never came: `lost` packets were missing (0: the sender sent silence)."""

    pos: int
    duration: int
    lost: int


@dataclass
class JitterStats:
    """What one leg's buffer saw."""

    received: int = 0
    played: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    ssrc_changes: int = 0
    seq_resets: int = 0
    discontinuities: int = 0
    stale_ssrc: int = 0


@dataclass(slots=True)
class _Item:
    ext_ts: int
    duration: int
    payload: bytes
    sequence: int
    timestamp: int
    arrival: float
    event: bool


Output = Played | Gap


@dataclass
class _Stream:
    """Unwrapping state of one SSRC."""

    ssrc: int
    max_seq: int  # highest extended sequence seen
    max_ts: int  # extended timestamp of that packet
    next_seq: int  # the sequence to play next
    shift: int  # timeline position = extended timestamp + shift
    probation: tuple[int, _Item] | None = None  # a far jump waiting for confirmation
    pending: dict[int, _Item] = field(default_factory=dict)
    skipped: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=64))

    def unwrap(self, seq: int, ts: int) -> tuple[int, int]:
        d = (seq - self.max_seq) % SEQ_MOD
        ext_seq = self.max_seq + (d - SEQ_MOD if d >= SEQ_MOD // 2 else d)
        t = (ts - self.max_ts) % TS_MOD
        ext_ts = self.max_ts + (t - TS_MOD if t >= TS_MOD // 2 else t)
        return ext_seq, ext_ts


class JitterBuffer:
    """Reorders one leg's packets and reports what was lost; see the module docstring."""

    def __init__(self, clock_rate: int, delay_ms: int = 60, max_silence_s: float = 2.0) -> None:
        self.clock_rate = clock_rate
        self.delay_s = delay_ms / 1000
        self.delay_units = clock_rate * delay_ms // 1000
        self.max_silence_s = max_silence_s
        self.stats = JitterStats()
        self._s: _Stream | None = None
        self._old_ssrcs: deque[int] = deque(maxlen=4)
        self.expected_pos = 0  # end of the audio played so far
        self._last_arrival: float | None = None  # of the last played audio packet
        self._last_duration = 0
        self._lost_pending = 0  # lost packets not yet reported in a Gap

    @property
    def has_pending(self) -> bool:
        """Packets wait behind a hole (call `poll` until they are released)."""
        return bool(self._s and self._s.pending)

    def push_next(
        self, sequence: int, timestamp: int, ssrc: int, duration: int, arrival: float
    ) -> int:
        """Hot path: the packet that exactly continues the stream plays at once.

        Returns its position, or -1 when it is anything else (then call `push`). Nothing
        changes on -1.
        """
        s = self._s
        if (
            s is None
            or s.ssrc != ssrc
            or s.pending
            or s.next_seq != s.max_seq + 1
            or sequence != s.next_seq & 0xFFFF
            or s.probation is not None
        ):
            return -1
        pos = self.expected_pos
        ext_ts = pos - s.shift
        if timestamp != ext_ts & 0xFFFFFFFF:
            return -1
        s.max_seq = s.next_seq
        s.next_seq += 1
        s.max_ts = ext_ts
        self.expected_pos = pos + duration
        self._last_arrival = arrival
        self._last_duration = duration
        self._lost_pending = 0
        st = self.stats
        st.received += 1
        st.played += 1
        return pos

    def push(
        self,
        sequence: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        duration: int,
        arrival: float,
        *,
        event: bool = False,
    ) -> list[Output]:
        """One arrived packet (wire fields); returns what can be played now."""
        self.stats.received += 1
        item = _Item(0, duration, payload, sequence, timestamp, arrival, event)
        s = self._s
        out: list[Output] = []
        if s is None or s.ssrc != ssrc:
            if s is not None and ssrc in self._old_ssrcs:
                self.stats.stale_ssrc += 1
                return out
            if s is not None:
                self.stats.ssrc_changes += 1
                self._old_ssrcs.append(s.ssrc)
                out.extend(self.flush())
            s = self._start(ssrc, sequence, timestamp, arrival)
        ext_seq, item.ext_ts = s.unwrap(sequence, timestamp)
        jump = ext_seq - s.max_seq
        if jump > MAX_DROPOUT or jump < -MAX_DROPOUT:
            # RFC 3550 A.1: believe a far jump only when the next packet follows it.
            pb = s.probation
            if pb is None or (pb[0] + 1) % SEQ_MOD != sequence:
                s.probation = (sequence, item)
                return out
            self.stats.seq_resets += 1
            out.extend(self.flush())
            first = pb[1]
            s = self._start(ssrc, first.sequence, first.timestamp, first.arrival)
            first.ext_ts = first.timestamp  # the new stream's unwrapping starts at it
            s.pending[first.sequence] = first
            ext_seq, item.ext_ts = s.unwrap(sequence, timestamp)
        s.probation = None
        if ext_seq > s.max_seq:
            s.max_seq, s.max_ts = ext_seq, item.ext_ts
        if ext_seq < s.next_seq:
            if any(a <= ext_seq < b for a, b in s.skipped):
                self.stats.late += 1
            else:
                self.stats.duplicate += 1
            return out
        if ext_seq in s.pending:
            self.stats.duplicate += 1
            return out
        if ext_seq == s.next_seq and not s.pending:
            s.next_seq += 1
            self._play(item, out)
            return out
        s.pending[ext_seq] = item
        self._drain(arrival, out)
        return out

    def poll(self, now: float) -> list[Output]:
        """Give up holes older than the delay; returns what became playable."""
        out: list[Output] = []
        if self.has_pending:
            self._drain(now, out)
        return out

    def flush(self) -> list[Output]:
        """Play everything still queued (the leg ends or its stream changes)."""
        out: list[Output] = []
        s = self._s
        if s is None:
            return out
        while s.pending:
            self._drain(float("inf"), out)
        return out

    # -- internals ----------------------------------------------------------------------
    def _start(self, ssrc: int, sequence: int, timestamp: int, arrival: float) -> _Stream:
        """A new stream continues the timeline, after the wall-clock pause if there was one."""
        pos = self.expected_pos
        if self._last_arrival is not None:
            pause = arrival - self._last_arrival - self._last_duration / self.clock_rate
            if pause > self.delay_s:
                pos += round(pause * self.clock_rate)
        self._s = _Stream(ssrc, sequence, timestamp, sequence, pos - timestamp)
        return self._s

    def _drain(self, now: float, out: list[Output]) -> None:
        s = self._s
        assert s is not None
        pending = s.pending
        while pending:
            item = pending.pop(s.next_seq, None)
            if item is not None:
                s.next_seq += 1
                self._play(item, out)
                continue
            first = min(pending)
            waited = now - min(i.arrival for i in pending.values())
            # Audio queued behind the first waiting packet: with 120 ms packets one of them
            # alone says nothing about how late the missing one is.
            queued = sum(i.duration for i in pending.values()) - pending[first].duration
            if waited < self.delay_s and queued < self.delay_units:
                return
            lost = first - s.next_seq
            s.skipped.append((s.next_seq, first))
            self.stats.lost += lost
            self._lost_pending += lost
            s.next_seq = first

    def _play(self, item: _Item, out: list[Output]) -> None:
        s = self._s
        assert s is not None
        pos = item.ext_ts + s.shift
        if item.event:
            out.append(
                Played(pos, 0, item.payload, item.sequence, item.timestamp, item.arrival, True)
            )
            self.stats.played += 1
            return
        gap = pos - self.expected_pos
        if gap:
            gap = self._check_gap(item, gap)
            pos = self.expected_pos + gap
        if gap > 0:
            out.append(Gap(self.expected_pos, gap, self._lost_pending))
        # Lost packets that left no hole (telephone-events) are counted, not concealed.
        self._lost_pending = 0
        out.append(
            Played(pos, item.duration, item.payload, item.sequence, item.timestamp, item.arrival)
        )
        self.stats.played += 1
        self.expected_pos = pos + item.duration
        self._last_arrival = item.arrival
        self._last_duration = item.duration

    def _check_gap(self, item: _Item, gap: int) -> int:
        """The gap to keep before `item`; a timestamp jump the wall clock denies is rebased."""
        s = self._s
        assert s is not None
        elapsed = 0.0 if self._last_arrival is None else item.arrival - self._last_arrival
        if 0 < gap <= self.clock_rate * max(self.max_silence_s, elapsed + 1.0):
            return gap
        # The timestamp went back, or forward further than the time that passed.
        self.stats.discontinuities += 1
        pause = elapsed - self._last_duration / self.clock_rate
        keep = round(pause * self.clock_rate) if pause > self.delay_s else 0
        s.shift += self.expected_pos + keep - (item.ext_ts + s.shift)
        return keep
