"""The jitter buffer on hand-made packet orders: reorder, duplicates, loss, wrap-around,
SSRC changes and timestamp jumps, with positions checked to the sample."""

from __future__ import annotations

from pipeline.media.jitter import Gap, JitterBuffer, Output, Played

SPP = 160  # 20 ms at 8 kHz


def feed(
    jb: JitterBuffer,
    order: list[int],
    *,
    seq0: int = 0,
    ts0: int = 0,
    ssrc: int = 1,
    t0: float = 100.0,
    spacing: float = 0.02,
) -> list[Output]:
    """Packets `order` (indices of 20 ms frames) arriving `spacing` apart."""
    out: list[Output] = []
    for i, k in enumerate(order):
        out += jb.push(
            (seq0 + k) % 65536,
            (ts0 + k * SPP) % 2**32,
            ssrc,
            bytes([k % 256]) * SPP,
            SPP,
            t0 + i * spacing,
        )
    return out


def played(out: list[Output]) -> list[int]:
    return [o.payload[0] for o in out if isinstance(o, Played)]


def positions_are_contiguous(out: list[Output], start: int = 0) -> bool:
    pos = start
    for o in out:
        if o.pos != pos:
            return False
        pos += o.duration
    return True


def test_in_order_packets_pass_at_once() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, list(range(10)))
    assert played(out) == list(range(10))
    assert positions_are_contiguous(out)
    assert not jb.has_pending and jb.stats.lost == 0


def test_reordered_packets_come_out_in_order() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1, 3, 2, 4, 6, 5, 7])
    assert played(out) == list(range(8))
    assert positions_are_contiguous(out)
    assert jb.stats.lost == 0 and jb.stats.late == 0


def test_duplicates_are_dropped_and_counted() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1, 1, 2, 4, 4, 3, 0])
    assert played(out) == [0, 1, 2, 3, 4]
    assert jb.stats.duplicate == 3


def test_a_hole_is_concealed_after_the_delay_and_a_late_packet_dropped() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1, 4, 5])  # 2 and 3 missing; 40 ms of audio queued behind the hole
    assert played(out) == [0, 1] and jb.has_pending
    assert jb.poll(100.0 + 0.02 * 2 + 0.03) == []  # 30 ms after the first queued packet
    later = jb.poll(100.0 + 0.02 * 2 + 0.07)
    gaps = [o for o in later if isinstance(o, Gap)]
    assert gaps == [Gap(2 * SPP, 2 * SPP, 2)]
    assert played(later) == [4, 5]
    assert positions_are_contiguous(out + later)
    assert jb.stats.lost == 2
    assert feed(jb, [3], t0=101.0) == []
    assert jb.stats.late == 1 and jb.stats.duplicate == 0


def test_a_hole_is_given_up_once_enough_audio_queues_behind_it() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 2, 3, 4], spacing=0.0)  # a burst: time does not pass
    assert played(out) == [0] and jb.has_pending  # 40 ms behind packet 2: not yet
    out += feed(jb, [5], t0=100.0)
    assert played(out) == [0, 2, 3, 4, 5]
    assert [o for o in out if isinstance(o, Gap)] == [Gap(SPP, SPP, 1)]


def test_sequence_wrap_around() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1, 2, 4, 3, 5, 6], seq0=65533)
    assert played(out) == list(range(7))
    assert positions_are_contiguous(out)
    assert jb.stats.lost == 0 and jb.stats.duplicate == 0


def test_timestamp_wrap_around() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, list(range(6)), ts0=2**32 - 2 * SPP - 7)
    assert played(out) == list(range(6))
    assert positions_are_contiguous(out)
    assert jb.stats.discontinuities == 0


def test_ssrc_change_continues_the_timeline() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1, 2], seq0=100, ts0=5000, ssrc=1)
    # A new sender right after: new random sequence and timestamp.
    out += feed(jb, [3, 4, 5], seq0=40000, ts0=3_000_000_000, ssrc=2, t0=100.06)
    assert played(out) == [0, 1, 2, 3, 4, 5]
    assert positions_are_contiguous(out)
    assert jb.stats.ssrc_changes == 1
    # A stray packet of the old stream is not mixed in.
    assert feed(jb, [3], seq0=100, ts0=5000, ssrc=1, t0=100.2) == []
    assert jb.stats.stale_ssrc == 1


def test_ssrc_change_after_a_pause_keeps_wall_clock_time() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1], ssrc=1)
    # Two seconds of nothing, then a new stream.
    out += feed(jb, [0], ssrc=2, seq0=9, ts0=77, t0=100.02 + 2.02)
    p = [o for o in out if isinstance(o, Played)]
    assert p[-1].pos == 2 * SPP + 2 * 8000
    gap = [o for o in out if isinstance(o, Gap)]
    assert gap == [Gap(2 * SPP, 2 * 8000, 0)]


def test_silence_the_sender_skipped_is_a_gap_without_loss() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1], seq0=10)
    # Discontinuous transmission: next packet has the next sequence but 1 s later timestamp.
    out += jb.push(12, 1 * SPP + SPP + 8000, 1, b"\x09" * SPP, SPP, 101.02)
    assert [o for o in out if isinstance(o, Gap)] == [Gap(2 * SPP, 8000, 0)]
    assert jb.stats.lost == 0


def test_timestamp_jump_the_clock_denies_is_rebased() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1])
    # Next packet in sequence, 20 ms later, but its timestamp claims an hour later.
    out += jb.push(2, 3600 * 8000, 1, b"\x02" * SPP, SPP, 100.04)
    out += jb.push(3, 3600 * 8000 + SPP, 1, b"\x03" * SPP, SPP, 100.06)
    # ... and a timestamp going backwards.
    out += jb.push(4, 5, 1, b"\x04" * SPP, SPP, 100.08)
    assert played(out) == [0, 1, 2, 3, 4]
    assert positions_are_contiguous(out)
    assert jb.stats.discontinuities == 2


def test_far_sequence_jump_needs_a_second_packet_to_be_believed() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1, 2])
    out += jb.push(30000, 480, 1, b"\x99" * SPP, SPP, 100.06)  # one stray: ignored
    out += feed(jb, [3], t0=100.08)
    assert played(out) == [0, 1, 2, 3] and jb.stats.seq_resets == 0
    out += jb.push(50000, 640, 1, b"\x10" * SPP, SPP, 100.10)
    out += jb.push(50001, 800, 1, b"\x11" * SPP, SPP, 100.12)
    assert played(out) == [0, 1, 2, 3, 16, 17]
    assert jb.stats.seq_resets == 1
    assert positions_are_contiguous(out)


def test_events_keep_their_place_without_moving_the_timeline() -> None:
    jb = JitterBuffer(8000, 60)
    out = feed(jb, [0, 1])
    out += jb.push(2, 2 * SPP, 1, b"ev01", 0, 100.04, event=True)
    out += jb.push(3, 2 * SPP, 1, b"ev02", 0, 100.06, event=True)
    out += jb.push(4, 4 * SPP, 1, b"\x04" * SPP, SPP, 100.08)
    events = [o for o in out if isinstance(o, Played) and o.event]
    assert [e.pos for e in events] == [2 * SPP, 2 * SPP]
    assert [o for o in out if isinstance(o, Gap)] == [Gap(2 * SPP, 2 * SPP, 0)]


def test_long_packets_and_flush() -> None:
    jb = JitterBuffer(8000, 60)
    n = 960  # 120 ms packets
    out: list[Output] = []
    for i, k in enumerate([0, 2, 1]):
        out += jb.push(k, k * n, 5, bytes([k]) * n, n, 10 + i * 0.12)
    out += jb.push(4, 4 * n, 5, b"\x04" * n, n, 10.5)
    out += jb.flush()
    assert played(out) == [0, 1, 2, 4]
    assert [o for o in out if isinstance(o, Gap)] == [Gap(3 * n, n, 1)]
    assert positions_are_contiguous(out)
