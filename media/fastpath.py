"""RTP on the bytes: what the fast path reads and rewrites without an `RtpPacket` (pure).

The common packet (one media SSRC, no CSRCs, the same header extension ids and mid on
both legs) is forwarded in the datagram callback: `aiortc_adapter.DatagramTap` sees the
SRTP datagram, unprotects it with the ingress leg's own SRTP session, and hands the plain
bytes to `forward.StreamForwarder.forward_bytes`, which reads the fixed header with
`struct` (`read_fixed_header`), patches payload type, sequence number, timestamp and SSRC
(`rewrite_fixed_header`; the marker bit, extensions and payload are kept byte for byte),
and the egress leg protects and sends it with its own SRTP session. The egress keeps the
bytes (`PacketHistory`); only a NACK makes it parse one back into an `RtpPacket` for
aiortc's RTX. Everything else (RTX, CSRCs, other extension ids, RTCP, DTLS, a leg not
yet connected) takes aiortc's own path, queue and `RtpPacket`s: the slow path.
"""

from __future__ import annotations

import struct
from typing import Any

# RFC 3550 5.1: V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
FIXED_HEADER = struct.Struct("!BBHII")
FIXED_HEADER_SIZE = FIXED_HEADER.size
MARKER_BIT = 0x80


def fast_path_ssrc(datagram: bytes) -> int:
    """The SSRC of an SRTP datagram the fast path may take (RTP without CSRCs), else -1.

    One call for the tap's per-datagram question: `is_rtp_not_rtcp` and not `has_csrcs`
    (version 2 and a CSRC count of 0 are the first octet's bits 0xCF), then `ssrc_of`.
    """
    if len(datagram) < FIXED_HEADER_SIZE or datagram[0] & 0xCF != 0x80:
        return -1
    if 192 <= datagram[1] <= 208:
        return -1
    return int.from_bytes(datagram[8:12], "big")


def is_rtp_not_rtcp(datagram: bytes) -> bool:
    """An SRTP (not SRTCP, DTLS or STUN) datagram, by RFC 5764/7983 demultiplexing."""
    return (
        len(datagram) >= FIXED_HEADER_SIZE
        and 127 < datagram[0] < 192
        # RTCP packet types 192-208 overlap payload types 64-80 with the marker set.
        and not 192 <= datagram[1] <= 208
    )


def has_csrcs(datagram: bytes) -> bool:
    return bool(datagram[0] & 0x0F)


def ssrc_of(datagram: bytes) -> int:
    return int.from_bytes(datagram[8:12], "big")


def read_fixed_header(data: bytes) -> tuple[int, int, int, int]:
    """(payload type, sequence number, timestamp, SSRC) of a plain RTP packet."""
    _, second, seq, ts, ssrc = FIXED_HEADER.unpack_from(data)
    return second & 0x7F, seq, ts, ssrc


def payload_offset(data: bytes) -> int:
    """Where the payload starts: after the fixed header, CSRCs and header extension."""
    first = data[0]
    offset = FIXED_HEADER_SIZE + 4 * (first & 0x0F)
    size = len(data)
    if first & 0x10:
        if size < offset + 4:
            return size
        offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    return offset if offset < size else size


def payload_end(data: bytes) -> int:
    """Where the payload ends: before any padding (the P bit's count in the last octet)."""
    if data[0] & 0x20 and data:
        return max(0, len(data) - data[-1])
    return len(data)


def rewrite_fixed_header(data: bytes, payload_type: int, seq: int, ts: int, ssrc: int) -> bytes:
    """A copy of `data` with these header fields; marker, extensions and payload kept."""
    return (
        FIXED_HEADER.pack(data[0], (data[1] & MARKER_BIT) | payload_type, seq, ts, ssrc)
        + data[FIXED_HEADER_SIZE:]
    )


def rewrite_fixed_header_into(
    buffer: Any, data: bytes, payload_type: int, seq: int, ts: int, ssrc: int
) -> None:
    """`rewrite_fixed_header` into a writable buffer (the SRTP session's own), no copy made."""
    size = len(data)
    buffer[0:size] = data
    FIXED_HEADER.pack_into(buffer, 0, data[0], (data[1] & MARKER_BIT) | payload_type, seq, ts, ssrc)


class PacketHistory:
    """The last `size` packets sent, by output sequence number (to answer NACKs).

    A slot keeps the packet as it arrived plus the header fields it was sent with: the
    sent bytes are rebuilt (`rewrite_fixed_header`) only for a packet a NACK asks for.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots: list[tuple[int, bytes, int, int, int] | None] = [None] * size

    def put(self, seq: int, data: bytes, payload_type: int, ts: int, ssrc: int) -> None:
        self._slots[seq % self._size] = (seq, data, payload_type, ts, ssrc)

    def get(self, seq: int) -> bytes | None:
        """The plain packet sent as `seq`, or None when its slot holds another."""
        slot = self._slots[seq % self._size]
        if slot is None or slot[0] != seq:
            return None
        return rewrite_fixed_header(slot[1], slot[2], seq, slot[3], slot[4])
