"""RFC 3550 RTP packets: parse what a PBX sends, build what the tests and simulator send.

Hand-written on purpose: a header is one `struct`, and the Python RTP code on PyPI comes
inside WebRTC stacks (aiortc) whose per-packet objects cost more than the ingest's whole
budget of a few microseconds a packet (bench/ingest.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")
RTP_VERSION = 2
MIN_HEADER = HEADER.size


class RtpError(ValueError):
    """A datagram that is not a usable RTP packet; `cause` is a short metrics label."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet, header fields decoded, padding removed from the payload."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile, data) of the header extension
    padding: int = 0  # bytes of padding the sender appended (0: none)
    version: int = RTP_VERSION


def is_rtcp(data: bytes) -> bool:
    """RTCP sent to an RTP port (RFC 5761 demultiplexing: packet types 192-223)."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def parse(data: bytes) -> RtpPacket:
    """Decode a datagram; raises RtpError (cause: too_short, bad_version, bad_header)."""
    n = len(data)
    if n < MIN_HEADER:
        raise RtpError("too_short", f"{n} bytes is shorter than an RTP header")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError("bad_version", f"RTP version {version}, expected 2")
    offset = MIN_HEADER
    cc = b0 & 0x0F
    csrcs: tuple[int, ...] = ()
    if cc:
        offset += 4 * cc
        if offset > n:
            raise RtpError("bad_header", f"CSRC list of {cc} runs past the packet")
        csrcs = struct.unpack_from(f"!{cc}I", data, MIN_HEADER)
    extension = None
    if b0 & 0x10:
        if offset + _EXT.size > n:
            raise RtpError("bad_header", "header extension runs past the packet")
        profile, words = _EXT.unpack_from(data, offset)
        start = offset + _EXT.size
        offset = start + 4 * words
        if offset > n:
            raise RtpError("bad_header", "header extension runs past the packet")
        extension = (profile, bytes(data[start:offset]))
    end = n
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or padding > n - offset:
            raise RtpError("bad_header", f"padding of {padding} bytes does not fit the packet")
        end -= padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(b1 & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
        padding=padding,
        version=version,
    )


def build(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    *,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension: tuple[int, bytes] | None = None,
    padding: int = 0,
    version: int = RTP_VERSION,
) -> bytes:
    """Encode one packet; extension data is zero-padded to whole 32-bit words."""
    if len(csrcs) > 15:
        raise ValueError("at most 15 CSRCs")
    if not 0 <= padding <= 255:
        raise ValueError("padding must be 0-255 bytes")
    b0 = (version & 3) << 6 | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrcs)
    b1 = (0x80 if marker else 0) | (payload_type & 0x7F)
    parts = [HEADER.pack(b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)]
    if csrcs:
        parts.append(struct.pack(f"!{len(csrcs)}I", *csrcs))
    if extension is not None:
        profile, data = extension
        words = (len(data) + 3) // 4
        parts.append(_EXT.pack(profile, words) + data.ljust(4 * words, b"\0"))
    parts.append(payload)
    if padding:
        parts.append(b"\0" * (padding - 1) + bytes([padding]))
    return b"".join(parts)
