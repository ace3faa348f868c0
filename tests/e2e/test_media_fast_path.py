"""The fast path (bytes in the datagram callback) against the slow path (aiortc's RtpPackets).

Two aiortc peers through two server legs and the relay, in-process, as in
test_media_forwarding.py; each scenario runs on both paths, and what the receiving peer
gets is compared with what the sending peer sent.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiortc.codecs import is_rtx
from aiortc.rtp import RtpPacket, is_rtcp

from media.aiortc_adapter import MAX_SOCKET_QUEUE_BYTES
from media.leg import LegSettings, MediaLeg
from media.relay import Relay, Side
from tests.e2e.conftest_media import BrowserPeer, close_all, connect, new_leg, wait_for

pytestmark = pytest.mark.timeout(40)


@dataclass(frozen=True)
class Seen:
    seq: int
    ts: int
    marker: int
    payload: bytes
    abs_send_time: int | None


def record_sent_video(peer: BrowserPeer) -> list[Seen]:
    """What the peer's video sender puts on the wire (plain RTP, before SRTP)."""
    sender: Any = next(s for s in peer.pc.getSenders() if s.kind == "video")
    transport: Any = sender.transport
    extensions = transport._rtp_header_extensions_map
    sent: list[Seen] = []
    original = transport._send_rtp

    async def send_rtp(data: bytes) -> None:
        if not is_rtcp(data):
            packet = RtpPacket.parse(data, extensions)
            if packet.ssrc == sender._ssrc:
                sent.append(_seen(packet))
        await original(data)

    transport._send_rtp = send_rtp
    return sent


def record_received(peer: BrowserPeer, kind: str) -> tuple[list[Seen], list[Seen]]:
    """(media, retransmissions) as the peer's receiver of `kind` gets them."""
    receiver: Any = next(t.receiver for t in peer.pc.getTransceivers() if t.kind == kind)
    media: list[Seen] = []
    retransmitted: list[Seen] = []
    original = receiver._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = receiver._RTCRtpReceiver__codecs.get(packet.payload_type)
        if codec is not None and is_rtx(codec):
            retransmitted.append(_seen(packet))
        elif codec is not None:
            media.append(_seen(packet))
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle
    return media, retransmitted


def _seen(packet: RtpPacket) -> Seen:
    return Seen(
        packet.sequence_number,
        packet.timestamp,
        packet.marker,
        packet.payload,
        packet.extensions.abs_send_time,
    )


def assert_forwarded_unchanged(sent: list[Seen], received: list[Seen]) -> None:
    """Received = a stretch of what was sent, renumbered by a constant offset, in order."""
    assert len(received) > 50
    by_payload = {item.payload: index for index, item in enumerate(sent)}
    start = by_payload[received[0].payload]
    stretch = sent[start : start + len(received)]
    assert [r.payload for r in received] == [s.payload for s in stretch]
    assert [r.marker for r in received] == [s.marker for s in stretch]
    assert [r.abs_send_time for r in received] == [s.abs_send_time for s in stretch]
    seq_offsets = {(r.seq - s.seq) & 0xFFFF for r, s in zip(received, stretch, strict=True)}
    ts_offsets = {(r.ts - s.ts) & 0xFFFFFFFF for r, s in zip(received, stretch, strict=True)}
    assert len(seq_offsets) == 1 and len(ts_offsets) == 1


def assert_no_decoder_threads(*legs: MediaLeg) -> None:
    for leg in legs:
        for kind in ("audio", "video"):
            port = leg.ingress(kind)
            assert port is not None
            receiver: Any = port.receiver
            assert receiver._RTCRtpReceiver__decoder_thread is None


async def start_call(fast_path: bool) -> tuple[BrowserPeer, BrowserPeer, MediaLeg, MediaLeg, Relay]:
    clinician, client = BrowserPeer("clinician", 60), BrowserPeer("client", 200)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay(fast_path=fast_path)
    await connect(clinician, leg_a)
    await relay.attach(Side.CLINICIAN, leg_a)
    await connect(client, leg_b)
    await relay.attach(Side.CLIENT, leg_b)
    return clinician, client, leg_a, leg_b, relay


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "slow"])
async def test_both_paths_forward_the_same_packets(fast_path: bool) -> None:
    clinician, client, leg_a, leg_b, relay = await start_call(fast_path)
    try:
        sent = record_sent_video(clinician)
        received, _ = record_received(client, "video")
        await wait_for(lambda: len(received) > 80, within=10)
        assert_forwarded_unchanged(sent, received)
        video = relay.stream(Side.CLINICIAN, "video").counters
        audio = relay.stream(Side.CLIENT, "audio").counters
        if fast_path:
            # After the first packet of each stream (which aiortc routes), all are fast.
            assert video.forwarded - video.forwarded_on_fast_path <= 2
            assert audio.forwarded - audio.forwarded_on_fast_path <= 2
        else:
            assert video.forwarded_on_fast_path == audio.forwarded_on_fast_path == 0
        assert video.forwarded > 80 and audio.forwarded > 50
        # The participant stays live for the meter on either path (R-M8).
        assert leg_a.status.is_live and leg_b.status.is_live
        assert_no_decoder_threads(leg_a, leg_b)
        assert not [t for t in threading.enumerate() if t.name.endswith("-decoder")][4:]
    finally:
        await close_all(clinician, client, leg_a, leg_b)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "slow"])
async def test_a_nack_is_answered_with_rtx_from_the_egress_history(fast_path: bool) -> None:
    clinician, client, leg_a, leg_b, _ = await start_call(fast_path)
    try:
        received, retransmitted = record_received(client, "video")
        await wait_for(lambda: len(received) > 30, within=10)
        egress = leg_b.egress("video")
        assert egress is not None
        wanted = received[-5]
        receiver: Any = next(t.receiver for t in client.pc.getTransceivers() if t.kind == "video")
        await receiver._send_rtcp_nack(egress.ssrc, [wanted.seq])
        await wait_for(lambda: len(retransmitted) > 0, within=3)
        # RFC 4588: the original sequence number, then the original payload.
        rtx = retransmitted[0]
        assert int.from_bytes(rtx.payload[:2], "big") == wanted.seq
        assert rtx.payload[2:] == wanted.payload
    finally:
        await close_all(clinician, client, leg_a, leg_b)


def lose_one_packet_and_its_first_retransmission(peer: BrowserPeer) -> list[int]:
    """From now on, the peer's next video packet (its original and the first
    retransmission asked for) never reaches the server: as on a lossy uplink. Returns the
    sequence numbers the peer was asked to retransmit, each time it was asked."""
    sender: Any = next(s for s in peer.pc.getSenders() if s.kind == "video")
    transport: Any = sender.transport
    extensions = transport._rtp_header_extensions_map
    original_send, original_retransmit = transport._send_rtp, sender._retransmit
    lost: list[int] = []  # [the lost packet's seq], once chosen
    asked: list[int] = []

    async def send_rtp(data: bytes) -> None:
        if not lost and not is_rtcp(data):
            packet = RtpPacket.parse(data, extensions)
            if packet.ssrc == sender._ssrc:
                lost.append(packet.sequence_number)
                return
        await original_send(data)

    async def retransmit(seq: int) -> None:
        asked.append(seq)
        if lost and seq == lost[0] and asked.count(seq) == 1:
            return  # the first retransmission is lost too
        await original_retransmit(seq)

    transport._send_rtp = send_rtp
    sender._retransmit = retransmit
    return asked


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "slow"])
async def test_a_packet_whose_retransmission_was_lost_is_asked_for_again(
    fast_path: bool,
) -> None:
    # aiortc's receiver asks again only when a new gap appears; on a clean stretch after a
    # loss that may be seconds away, and the far end's picture waits (media/nack.py).
    clinician, client, leg_a, leg_b, _ = await start_call(fast_path)
    try:
        await wait_for(lambda: client.received.video_frames > 10, within=10)
        received, _ = record_received(client, "video")
        asked = lose_one_packet_and_its_first_retransmission(clinician)
        # Asked twice with no other loss in between (the first answer was lost) ...
        await wait_for(lambda: len(asked) >= 2, within=3)
        assert len(set(asked)) == 1, asked
        # ... and the second answer reached the receiving peer: no gap is left behind the
        # packet it waited for.
        await wait_for(lambda: len(received) > 20, within=3)
        await wait_for(lambda: _no_gaps(sorted(r.seq for r in received)), within=3)
    finally:
        await close_all(clinician, client, leg_a, leg_b)


def _no_gaps(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "slow"])
async def test_feedback_passes_upstream_on_both_paths(fast_path: bool) -> None:
    clinician, client, leg_a, leg_b, relay = await start_call(fast_path)
    try:
        stream = relay.stream(Side.CLINICIAN, "video")
        await wait_for(lambda: client.received.video_frames > 10, within=10)
        # PLI from the receiving browser reaches the sending one.
        before = stream.counters.keyframe_requests_upstream
        egress = leg_b.egress("video")
        assert egress is not None
        receiver: Any = next(t.receiver for t in client.pc.getTransceivers() if t.kind == "video")
        await asyncio.sleep(0.3)  # past the keyframe request rate limit
        await receiver._send_rtcp_pli(egress.ssrc)
        await wait_for(lambda: stream.counters.keyframe_requests_upstream > before, within=2)
        assert stream.counters.keyframe_requests_from_receiver >= 1
        # REMB from the receiving peer (abs-send-time is forwarded as sent) goes upstream.
        await wait_for(lambda: stream.counters.bandwidth_estimates_passed > 0, within=5)
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_shed_ingress_backlog_goes_through_the_drop_path_and_recovers() -> None:
    # The slow path is where an ingress backlog can build (aioice's queue).
    clinician, client, leg_a, leg_b, relay = await start_call(fast_path=False)
    try:
        await wait_for(lambda: client.received.video_frames > 5, within=10)
        stream = relay.stream(Side.CLINICIAN, "video")
        ingress: Any = leg_a.ingress("video")
        requests_before = stream.counters.keyframe_requests_upstream
        real_backlog = ingress.backlog_packets
        ingress.backlog_packets = lambda: 10_000  # the loop fell far behind
        try:
            await wait_for(lambda: ingress.packets_shed > 10, within=3)
            assert stream.waiting_for_keyframe
            assert stream.counters.dropped >= ingress.packets_shed
        finally:
            ingress.backlog_packets = real_backlog
        frames = client.received.video_frames
        await wait_for(lambda: client.received.video_frames > frames + 5, within=3)
        assert stream.counters.keyframe_requests_upstream > requests_before
        assert not stream.waiting_for_keyframe
    finally:
        await close_all(clinician, client, leg_a, leg_b)


def _leg_socket_address(leg: MediaLeg) -> tuple[str, int]:
    """Where the leg's nominated ICE pair receives (its local UDP socket)."""
    ingress: Any = leg.ingress("video")
    pair = ingress.transport.transport._connection._nominated[1]
    address: tuple[str, int] = pair.protocol.transport.get_extra_info("sockname")[:2]
    return address


def _flood(address: tuple[str, int], stop: threading.Event) -> None:
    """SRTP-looking datagrams no stream owns, as fast as one thread sends: the node's loop
    cannot keep up, and the kernel queues the participant's media behind them."""
    junk = bytes([0x80, 96]) + bytes(10) + bytes(1188)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        while not stop.is_set():
            for _ in range(200):
                out.sendto(junk, address)
            time.sleep(0.001)


async def test_a_backlogged_socket_sheds_through_the_drop_path_and_recovers() -> None:
    # The fast path's backlog is the kernel's socket queue: a real one, built by a flood.
    clinician, client, leg_a, leg_b, relay = await start_call(fast_path=True)
    try:
        await wait_for(lambda: client.received.video_frames > 5, within=10)
        stream = relay.stream(Side.CLINICIAN, "video")
        ingress: Any = leg_a.ingress("video")
        tap = next(iter(leg_a._taps.values()))
        assert stream.counters.forwarded_on_fast_path > 0 and ingress.packets_shed == 0
        requests_before = stream.counters.keyframe_requests_upstream
        stop = threading.Event()
        flooder = threading.Thread(target=_flood, args=(_leg_socket_address(leg_a), stop))
        flooder.start()
        try:
            await wait_for(lambda: ingress.packets_shed > 5, within=10)
            # R-M8: the participant stays live (billed) through the flood, for longer than
            # the silence that would end it (shed media counts as received).
            until = time.monotonic() + 2 * LegSettings().silence_timeout_s
            while time.monotonic() < until:
                assert leg_a.status.is_live, "the participant's media must keep them live"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            flooder.join()
        assert tap.largest_queue_seen > MAX_SOCKET_QUEUE_BYTES
        # Shed media went through the forwarder's drop path: held, keyframe asked for.
        assert stream.counters.dropped >= ingress.packets_shed
        assert stream.counters.keyframe_requests_upstream > requests_before
        # ... and counted as received: the node asked nobody to send it again.
        assert ingress.packets_received >= ingress.packets_shed + stream.counters.forwarded
        frames = client.received.video_frames
        await wait_for(lambda: client.received.video_frames > frames + 10, within=10)
        assert not stream.waiting_for_keyframe and not tap.backlogged
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_shed_media_keeps_the_participant_live_for_the_meter() -> None:
    # R-M8: a participant whose media arrives is billed, also while the node sheds it.
    clinician, client, leg_a, leg_b, relay = await start_call(fast_path=True)
    try:
        await wait_for(lambda: client.received.video_frames > 5, within=10)
        ingress: Any = leg_a.ingress("video")
        codec = next(iter(ingress._codecs.values()))
        stream = relay.stream(Side.CLINICIAN, "video")
        dropped = stream.counters.dropped
        shed_at = time.monotonic()
        packet = RtpPacket(payload_type=codec.payloadType, ssrc=ingress.media_ssrc)
        packet.sequence_number, packet.payload = 1, b"\x90\x80\x00shed"
        ingress.receive_plain(packet.serialize(), shed=True)
        assert ingress.last_packet_at >= shed_at  # what the meter's liveness reads
        assert stream.counters.dropped == dropped + 1  # and it went the drop path
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_a_socket_closed_under_the_fast_path_drops_instead_of_raising() -> None:
    clinician, client, leg_a, leg_b, relay = await start_call(fast_path=True)
    try:
        await wait_for(lambda: client.received.video_frames > 5, within=10)
        stream = relay.stream(Side.CLINICIAN, "audio")
        assert stream.counters.forwarded_on_fast_path > 0
        egress = leg_b.egress("audio")
        assert egress is not None
        await wait_for(lambda: egress.last_feedback_at is not None, within=3)  # the peer's RRs
        connection: Any = leg_b.peer_connection.getTransceivers()[0].sender.transport.transport
        pair = connection._connection._nominated[1]
        dropped = stream.counters.dropped
        # ICE closes the socket (consent expired) before the DTLS transport notices.
        pair.protocol.transport.close()
        await wait_for(lambda: stream.counters.dropped > dropped + 5, within=3)
        assert leg_a.status.is_live  # the sender's leg is untouched
    finally:
        await close_all(clinician, client, leg_a, leg_b)
