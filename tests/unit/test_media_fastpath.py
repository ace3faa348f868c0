"""RTP on the bytes: the fast path's header rewrite gives what aiortc's parse + serialize gives."""

from __future__ import annotations

from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtcpPsfbPacket, RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from media.fastpath import (
    PacketHistory,
    fast_path_ssrc,
    has_csrcs,
    is_rtp_not_rtcp,
    payload_end,
    payload_offset,
    read_fixed_header,
    rewrite_fixed_header,
    rewrite_fixed_header_into,
    ssrc_of,
)

EXTENSIONS = HeaderExtensionsMap()
EXTENSIONS.configure(
    RTCRtpParameters(
        codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(
                id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
            ),
        ],
    )
)


def _packet(
    seq: int, ts: int, *, marker: bool, payload: bytes, abs_send_time: int | None
) -> RtpPacket:
    packet = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=ts)
    packet.ssrc = 0x11223344
    packet.payload = payload
    packet.extensions.mid = "1"
    packet.extensions.abs_send_time = abs_send_time
    return packet


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    payload=st.binary(min_size=1, max_size=1200),
    abs_send_time=st.none() | st.integers(0, 0xFFFFFF),
    out=st.tuples(st.integers(0, 127), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    out_ssrc=st.integers(0, 0xFFFFFFFF),
)
def test_byte_rewrite_equals_the_slow_paths_parse_and_serialize(
    seq: int,
    ts: int,
    marker: bool,
    payload: bytes,
    abs_send_time: int | None,
    out: tuple[int, int, int],
    out_ssrc: int,
) -> None:
    data = _packet(seq, ts, marker=marker, payload=payload, abs_send_time=abs_send_time).serialize(
        EXTENSIONS
    )
    assert is_rtp_not_rtcp(data) and not has_csrcs(data)
    assert ssrc_of(data) == 0x11223344
    assert read_fixed_header(data) == (96, seq, ts, 0x11223344)
    assert data[payload_offset(data) : payload_end(data)] == payload

    out_pt, out_seq, out_ts = out
    # The slow path: parse, set the fields, serialize with the (same) egress map.
    slow = RtpPacket.parse(data, EXTENSIONS)
    slow.payload_type, slow.sequence_number, slow.timestamp, slow.ssrc = (
        out_pt,
        out_seq,
        out_ts,
        out_ssrc,
    )
    fast = rewrite_fixed_header(data, out_pt, out_seq, out_ts, out_ssrc)
    assert fast == slow.serialize(EXTENSIONS)


def test_offsets_with_csrcs_and_padding() -> None:
    packet = RtpPacket(payload_type=111, sequence_number=7, timestamp=960)
    packet.csrc = [1, 2]
    packet.payload = b"opus"
    packet.padding_size = 4
    data = packet.serialize(EXTENSIONS)
    assert has_csrcs(data)
    assert payload_offset(data) == 12 + 8
    assert data[payload_offset(data) : payload_end(data)] == b"opus"
    # A header extension that claims more than the packet holds stays inside it.
    truncated = bytes([0x90, 96]) + bytes(10) + b"\xbe\xde\x00\x09"
    assert payload_offset(truncated) == len(truncated)


def test_demultiplexing_leaves_rtcp_dtls_and_stun_to_aiortc() -> None:
    pli = bytes(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2))
    assert not is_rtp_not_rtcp(pli)
    assert not is_rtp_not_rtcp(bytes([22, 0xFE, 0xFD]) + bytes(20))  # DTLS record
    assert not is_rtp_not_rtcp(bytes([0x00, 0x01]) + bytes(18))  # STUN binding request
    assert not is_rtp_not_rtcp(bytes([0x80, 96]) + bytes(5))  # too short for a header
    # Payload type 72 with the marker set reads as 200 (an SR): never taken for RTP.
    assert not is_rtp_not_rtcp(bytes([0x80, 0x80 | 72]) + bytes(10))


def test_history_answers_only_for_the_sequence_number_it_holds() -> None:
    history = PacketHistory(128)
    five = rewrite_fixed_header(bytes(12) + b"five", 96, 1, 2, 3)
    history.put(5, five, 96, 900, 7)
    history.put(133, five, 97, 1800, 7)  # same slot, newer packet
    assert history.get(5) is None
    assert history.get(6) is None
    # What was sent as 133: the stored packet with the header fields it was sent with.
    assert history.get(133) == rewrite_fixed_header(five, 97, 133, 1800, 7)
    assert read_fixed_header(history.get(133) or b"") == (97, 133, 1800, 7)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=12, max_size=300),
    fields=st.tuples(
        st.integers(0, 127),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
    ),
)
def test_rewrite_into_a_buffer_equals_the_copying_rewrite(
    data: bytes, fields: tuple[int, int, int, int]
) -> None:
    buffer = bytearray(400)
    rewrite_fixed_header_into(buffer, data, *fields)
    assert bytes(buffer[: len(data)]) == rewrite_fixed_header(data, *fields)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=0, max_size=40))
def test_fast_path_ssrc_is_the_three_questions_in_one(data: bytes) -> None:
    expected = ssrc_of(data) if is_rtp_not_rtcp(data) and not has_csrcs(data) else -1
    assert fast_path_ssrc(data) == expected
    # RTP headers (first octet 0x80-0x8F / 0x90-0x9F ...) are where it matters most.
    header = bytes([0x90, data[0] if data else 96]) + data.ljust(10, b"\0")
    expected = ssrc_of(header) if is_rtp_not_rtcp(header) and not has_csrcs(header) else -1
    assert fast_path_ssrc(header) == expected
