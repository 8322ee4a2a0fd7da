"""One forked leg: RTP packets -> jitter buffer -> decoding -> batched MediaChunks and DTMF.

Positions: the leg's first packet sits at its arrival time after the call start; from
there on, chunks follow each other without holes, lost packets concealed (the last
packet repeated once, then silence), except that a pause longer than `max_fill_s`
(sender silent, on hold) is skipped: the next chunk starts later.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import TypeAlias

from pipeline.events import DtmfReceived, LegInfo, MediaChunk, decode_media
from pipeline.media.codec import COMFORT_NOISE, CodecError, LegCodec
from pipeline.media.dtmf import DtmfDetector, DtmfError
from pipeline.media.jitter import Gap, JitterBuffer, Output, Played

Emitted: TypeAlias = "EncodedChunk | DtmfReceived"
_LEN = struct.Struct(">I")


@dataclass
class LegCounters:
    """What happened on one leg (beyond the jitter buffer's own stats)."""

    packets: int = 0
    chunks: int = 0
    samples: int = 0
    concealed: int = 0  # lost packets concealed
    skipped_samples: int = 0  # pauses not filled
    dtmf: int = 0
    bad_payload: int = 0


@dataclass
class _Batch:
    start: int = -1  # leg timeline sample of the first unit
    units: list[bytes] = field(default_factory=list)
    samples: int = 0
    seq_first: int = -1
    seq_last: int = -1
    ts_first: int = 0
    ts_last: int = 0
    arrival: float = 0.0
    concealed: int = 0


class LegPipeline:
    """State of one leg of one call; driven by the ingest loop (one thread)."""

    def __init__(
        self,
        tenant: str,
        call_id: str,
        call_t0: float,
        info: LegInfo,
        codec: LegCodec,
        *,
        dtmf_payload_type: int,
        batch_ms: int,
        jitter_ms: int,
        max_fill_s: float = 1.0,
    ) -> None:
        self.tenant = tenant
        self.call_id = call_id
        self.leg = info.leg
        self.info = info
        self.codec = codec
        self.dtmf_payload_type = dtmf_payload_type
        self.call_t0 = call_t0
        self.rate = codec.sample_rate
        self.batch_samples = self.rate * batch_ms // 1000
        self.batch_s = batch_ms / 1000
        self.max_fill = int(max_fill_s * self.rate)
        self.jitter = JitterBuffer(codec.clock_rate, jitter_ms)
        self.dtmf = DtmfDetector()
        self.counters = LegCounters()
        self.offset: int | None = None  # call-timeline sample of the leg timeline's 0
        self.last_arrival = 0.0
        self._batch = _Batch()
        self._last_unit = b""
        # One clock unit per sample (G.711, L16): units go straight into the batch.
        self._direct = codec.clock_rate == codec.sample_rate
        self._width = codec.width
        self._header_prefix = _header_prefix(tenant, call_id, info.leg, codec.name, self.rate)
        # Rate guard and source lock, read and written by the ingest loop.
        self.source: tuple[str, int] | None = None
        self.window_start = 0.0
        self.window_count = 0

    # -- input --------------------------------------------------------------------------
    def packet(
        self,
        pt: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        arrival: float,
        out: list[Emitted],
    ) -> str | None:
        """Take one packet's fields; returns a drop cause, or None when accepted."""
        if pt == self.codec.payload_type:
            if self._direct and payload and self.offset is not None:
                # Hot path (almost every packet of a healthy G.711 or L16 leg): in order,
                # straight into the batch.
                n = len(payload) if self._width == 1 else len(payload) // self._width
                pos = self.jitter.push_next(sequence, timestamp, ssrc, n, arrival)
                if pos >= 0:
                    self.counters.packets += 1
                    self.last_arrival = arrival
                    b = self._batch
                    if b.start < 0:
                        b.start = pos
                        b.seq_first = sequence
                        b.ts_first = timestamp
                    b.units.append(payload)
                    b.samples += n
                    b.seq_last = sequence
                    b.ts_last = timestamp
                    b.arrival = arrival
                    self._last_unit = payload
                    if b.samples >= self.batch_samples:
                        self._emit(out)
                    return None
            try:
                duration = self.codec.duration(payload)
            except CodecError:
                self.counters.bad_payload += 1
                return "bad_payload"
            event = False
        elif pt == self.dtmf_payload_type or pt == COMFORT_NOISE:
            duration = 0
            event = True
        else:
            return "unknown_payload_type"
        if self.offset is None:
            self.offset = max(0, round((arrival - self.call_t0) * self.rate))
        self.counters.packets += 1
        self.last_arrival = arrival
        played = self.jitter.push(
            sequence, timestamp, ssrc, payload, duration, arrival, event=event
        )
        if played:
            self._consume(played, out)
        return None

    def poll(self, now: float, out: list[Emitted]) -> None:
        """Timers: holes given up after the jitter delay, a batch left waiting while idle."""
        if self.jitter.has_pending:
            self._consume(self.jitter.poll(now), out)
        b = self._batch
        if b.samples and now - b.arrival >= self.batch_s:
            self._emit(out)

    def finish(self, out: list[Emitted]) -> None:
        """The call ends: play out what is queued, report an unfinished key press, flush."""
        self._consume(self.jitter.flush(), out)
        for press in self.dtmf.flush():
            out.append(self._dtmf_event(press.digit, press.timestamp, press.duration))
        if self._batch.samples:
            self._emit(out)

    def key_press(self, digit: str, arrival: float, out: list[Emitted]) -> None:
        """A key press a transport reports as such (not as RFC 4733 packets, and with no
        duration): placed at the end of the audio received so far."""
        pos = self.jitter.expected_pos
        if self.offset is None:
            self.offset = max(0, round((arrival - self.call_t0) * self.rate))
        out.append(self._dtmf_event(digit, pos, 0))

    # -- internals ----------------------------------------------------------------------
    def _to_samples(self, pos: int) -> int:
        return pos if self._direct else pos * self.rate // self.codec.clock_rate

    def _consume(self, items: list[Output], out: list[Emitted]) -> None:
        for item in items:
            if isinstance(item, Played):
                if item.event:
                    self._event(item, out)
                else:
                    self._audio(item, out)
            else:
                self._gap(item, out)

    def _audio(self, item: Played, out: list[Emitted]) -> None:
        start = self._to_samples(item.pos)
        n = self._to_samples(item.pos + item.duration) - start
        try:
            unit = self.codec.unit(item.payload)
        except CodecError:
            self.counters.bad_payload += 1
            unit = self.codec.silence * n
        b = self._batch
        if b.start < 0:
            b.start = start
            b.seq_first = item.sequence
            b.ts_first = item.timestamp
        b.units.append(unit)
        b.samples += n
        b.seq_last = item.sequence
        b.ts_last = item.timestamp
        b.arrival = max(b.arrival, item.arrival)
        self._last_unit = unit
        if b.samples >= self.batch_samples:
            self._emit(out)

    def _gap(self, gap: Gap, out: list[Emitted]) -> None:
        start = self._to_samples(gap.pos)
        n = self._to_samples(gap.pos + gap.duration) - start
        self.counters.concealed += gap.lost
        b = self._batch
        if n > self.max_fill:
            # A long pause: leave the hole (the consumer sees start_sample jump).
            b.concealed += gap.lost
            if b.samples:
                self._emit(out)
            self.counters.skipped_samples += n
            return
        width = self.codec.width
        if gap.lost and self._last_unit:
            # Packet-loss concealment: repeat the last packet once, then silence.
            rep = self._last_unit[: n * width]
            fill = rep + self.codec.silence * (n - len(rep) // width)
        else:
            fill = self.codec.silence * n
        if b.start < 0:
            b.start = start
        b.units.append(fill)
        b.samples += n
        b.concealed += gap.lost
        if b.samples >= self.batch_samples:
            self._emit(out)

    def _event(self, item: Played, out: list[Emitted]) -> None:
        if item.payload and len(item.payload) >= 4 and item.duration == 0:
            try:
                presses = self.dtmf.feed(item.pos, item.payload)
            except DtmfError:
                self.counters.bad_payload += 1
                return
            for press in presses:
                out.append(self._dtmf_event(press.digit, press.timestamp, press.duration))

    def _dtmf_event(self, digit: str, pos: int, duration: int) -> DtmfReceived:
        self.counters.dtmf += 1
        offset = self.offset or 0
        return DtmfReceived(
            tenant=self.tenant,
            call_id=self.call_id,
            leg=self.leg,
            digit=digit,
            start=(offset + self._to_samples(pos)) / self.rate,
            duration=duration / self.codec.clock_rate,
        )

    def _emit(self, out: list[Emitted]) -> None:
        b = self._batch
        self._batch = _Batch()
        if not b.samples:
            return
        pcm = self.codec.pcm(b"".join(b.units))
        self.counters.chunks += 1
        self.counters.samples += b.samples
        # The wire form of MediaChunk built directly: this runs thousands of times a second
        # and every field is an int, a float or a checked id (decode_media validates it).
        out.append(
            EncodedChunk(
                self.tenant,
                self.call_id,
                (self.offset or 0) + b.start,
                _encode_media(
                    self._header_prefix,
                    (self.offset or 0) + b.start,
                    max(b.seq_first, 0),
                    max(b.seq_last, 0),
                    b.ts_first,
                    b.ts_last,
                    b.arrival or self.last_arrival,
                    b.concealed,
                    pcm,
                ),
            )
        )


class EncodedChunk:
    """A MediaChunk already in its wire form (see `pipeline.events.MediaChunk.encode`)."""

    __slots__ = ("tenant", "call_id", "start_sample", "data")
    type = "media"

    def __init__(self, tenant: str, call_id: str, start_sample: int, data: bytes) -> None:
        self.tenant = tenant
        self.call_id = call_id
        self.start_sample = start_sample
        self.data = data

    def encode(self) -> bytes:
        """The bytes to publish on the media topic."""
        return self.data

    def decode(self) -> MediaChunk:
        """The MediaChunk these bytes hold."""
        return decode_media(self.data)


def _header_prefix(tenant: str, call_id: str, leg: str, codec: str, rate: int) -> str:
    fixed = {
        "v": 1,
        "type": "media",
        "tenant": tenant,
        "call_id": call_id,
        "leg": leg,
        "codec": codec,
        "sample_rate": rate,
    }
    return json.dumps(fixed, separators=(",", ":"))[:-1]


def _encode_media(
    prefix: str,
    start: int,
    seq_first: int,
    seq_last: int,
    ts_first: int,
    ts_last: int,
    arrival: float,
    concealed: int,
    pcm: bytes,
) -> bytes:
    header = (
        f'{prefix},"start_sample":{start},"seq_first":{seq_first},"seq_last":{seq_last},'
        f'"ts_first":{ts_first},"ts_last":{ts_last},"arrival":{arrival!r},'
        f'"concealed":{concealed}}}'
    ).encode()
    return _LEN.pack(len(header)) + header + pcm
