"""RFC 3550 parsing and building: every header feature, and every way a datagram is wrong."""

from __future__ import annotations

import pytest

from pipeline.media.rtp import RtpError, build, is_rtcp, parse


def test_plain_packet_round_trip() -> None:
    data = build(0, 65535, 0xFFFFFFFF, 0xDEADBEEF, b"\x01\x02\x03", marker=True)
    assert len(data) == 12 + 3
    p = parse(data)
    assert (p.version, p.payload_type, p.sequence, p.timestamp, p.ssrc) == (
        2,
        0,
        65535,
        0xFFFFFFFF,
        0xDEADBEEF,
    )
    assert p.marker and p.payload == b"\x01\x02\x03"
    assert p.csrcs == () and p.extension is None and p.padding == 0


def test_csrc_extension_and_padding_are_stripped_from_the_payload() -> None:
    data = build(
        111, 7, 960, 42, b"opus!", csrcs=(1, 2, 3), extension=(0xBEDE, b"\x10\xff"), padding=7
    )
    assert len(data) == 12 + 12 + 4 + 4 + 5 + 7
    p = parse(data)
    assert p.csrcs == (1, 2, 3)
    assert p.extension == (0xBEDE, b"\x10\xff\x00\x00")  # padded to a 32-bit word
    assert p.padding == 7
    assert p.payload == b"opus!"
    assert not p.marker and p.payload_type == 111


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"", "too_short"),
        (b"\x80\x00\x00\x01\x00\x00\x00", "too_short"),
        (build(0, 1, 1, 1, b"x", version=1), "bad_version"),
        (build(0, 1, 1, 1, b"x", version=0), "bad_version"),
        # CSRC count says 4 but the packet ends after the fixed header.
        (bytes([0x84]) + build(0, 1, 1, 1, b"")[1:], "bad_header"),
        # Extension bit set, no room for the extension header.
        (bytes([0x90]) + build(0, 1, 1, 1, b"")[1:] + b"\x00", "bad_header"),
        # Extension claims 5 words, has 1.
        (
            bytes([0x90]) + build(0, 1, 1, 1, b"")[1:] + b"\xbe\xde\x00\x05" + b"\0" * 4,
            "bad_header",
        ),
        # Padding bit with a count larger than the payload, and with a zero count.
        (bytes([0xA0]) + build(0, 1, 1, 1, b"ab")[1:] + b"\x09", "bad_header"),
        (bytes([0xA0]) + build(0, 1, 1, 1, b"ab")[1:] + b"\x00", "bad_header"),
    ],
)
def test_bad_datagrams_raise_with_a_cause(data: bytes, cause: str) -> None:
    with pytest.raises(RtpError) as exc:
        parse(data)
    assert exc.value.cause == cause


def test_empty_payload_is_legal_rtp() -> None:
    assert parse(build(0, 1, 2, 3, b"")).payload == b""


def test_rtcp_is_told_apart_from_rtp() -> None:
    sender_report = bytes([0x80, 200, 0x00, 0x06]) + b"\0" * 24
    assert is_rtcp(sender_report)
    assert not is_rtcp(build(0, 1, 1, 1, b"x"))
    assert not is_rtcp(build(0, 1, 1, 1, b"x", marker=True))
    assert not is_rtcp(build(101, 1, 1, 1, b"abcd", marker=True))
