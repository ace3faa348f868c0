"""Two aiortc peers (clinician, client) through two server legs and the relay, in-process.

As in aiortc's own tests: peers exchange offer/answer directly and we poll predicates.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from aiortc.rtp import RtpPacket

from media.aiortc_adapter import MAX_INGRESS_BACKLOG_PACKETS
from media.call import CallMedia
from media.leg import LegSettings, LegStatus, MediaLeg
from media.relay import Relay, Side
from media.stats import sample_leg_quality
from tests.e2e.conftest_media import (
    LOOPBACK_CONFIG,
    BrowserPeer,
    close_all,
    connect,
    new_leg,
    reconnect,
    wait_for,
)

CLINICIAN_LUMA, CLIENT_LUMA = 60, 200

pytestmark = pytest.mark.timeout(30)


def both_connected(*legs: MediaLeg) -> bool:
    return all(leg.status.connection_state == "connected" for leg in legs)


def luma_of_last(peer: BrowserPeer) -> float:
    return peer.received.video_lumas[-1] if peer.received.video_lumas else -1.0


def assert_server_never_decoded_or_encoded(*legs: MediaLeg) -> None:
    for leg in legs:
        for kind in ("audio", "video"):
            ingress = leg.ingress(kind)
            egress = leg.egress(kind)
            assert ingress is not None and egress is not None
            receiver: Any = ingress.receiver
            # decoder_worker never calls task_done(): unfinished_tasks counts every frame
            # ever queued for decoding.
            assert receiver._RTCRtpReceiver__decoder_queue.unfinished_tasks == 0
            assert receiver.track._queue.qsize() == 0
            sender: Any = egress.sender
            assert sender._RTCRtpSender__encoder is None


async def test_media_flows_both_ways_without_decoding() -> None:
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay()
    try:
        await connect(clinician, leg_a)
        await relay.attach(Side.CLINICIAN, leg_a)
        await connect(client, leg_b)
        await relay.attach(Side.CLIENT, leg_b)
        await wait_for(lambda: both_connected(leg_a, leg_b), within=5)
        connected_at = time.monotonic()

        # First video frame within 1 s of connecting, both ways.
        await wait_for(
            lambda: clinician.received.video_frames > 0 and client.received.video_frames > 0,
            within=1.0,
        )
        await wait_for(
            lambda: clinician.received.video_frames >= 20 and client.received.audio_frames >= 20,
            within=3,
        )
        first = [p.received.first_video_at for p in (clinician, client)]
        assert all(t is not None and t - connected_at < 1.0 for t in first)
        # Each side sees the other's picture, not its own.
        assert abs(luma_of_last(clinician) - CLIENT_LUMA) < 10
        assert abs(luma_of_last(client) - CLINICIAN_LUMA) < 10
        assert clinician.received.audio_frames > 0 and client.received.audio_frames > 0
        assert leg_a.status == LegStatus("connected", media_flowing=True)
        assert_server_never_decoded_or_encoded(leg_a, leg_b)
        for side in Side:
            assert relay.stream(side, "video").counters.forwarded > 0
            assert relay.stream(side, "audio").counters.forwarded > 0
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_late_joiner_gets_a_keyframe_at_once() -> None:
    # aiortc's VP8 encoder, like Chromium's, sends no periodic keyframes (gop 3000): the
    # late joiner only sees video quickly if its PLI reaches the clinician's encoder.
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay()
    try:
        await connect(clinician, leg_a)
        await relay.attach(Side.CLINICIAN, leg_a)
        await wait_for(lambda: both_connected(leg_a), within=5)
        video_in = leg_a.ingress("video")
        assert video_in is not None
        # Alone: the clinician's media is read and dropped, nothing piles up.
        await wait_for(lambda: video_in.packets_received > 30, within=3)
        await asyncio.sleep(0.5)
        assert_server_never_decoded_or_encoded(leg_a)
        assert relay.stream(Side.CLINICIAN, "video").counters.forwarded == 0

        await connect(client, leg_b)
        await relay.attach(Side.CLIENT, leg_b)
        await wait_for(lambda: both_connected(leg_b), within=5)
        took = await wait_for(lambda: client.received.video_frames > 0, within=1.0)
        assert took < 1.0
        assert relay.stream(Side.CLINICIAN, "video").counters.keyframe_requests_upstream >= 1
        assert abs(luma_of_last(client) - CLINICIAN_LUMA) < 10
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_refresh_one_leg_mid_call_other_leg_uninterrupted() -> None:
    statuses: list[tuple[Side, LegStatus]] = []
    call = CallMedia(
        LOOPBACK_CONFIG,
        on_status=lambda side, status: statuses.append((side, status)),
    )
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    try:
        await _join(call, Side.CLINICIAN, clinician)
        await _join(call, Side.CLIENT, client)
        await wait_for(
            lambda: clinician.received.video_frames > 10 and client.received.video_frames > 10
        )
        leg_b = call.leg(Side.CLIENT)
        old_leg_a = call.leg(Side.CLINICIAN)
        assert leg_b is not None and old_leg_a is not None
        tracks_at_client = len(client._consumers)
        statuses_before_refresh = len(statuses)

        # The clinician presses Refresh: the page builds a new peer connection.
        clinician = await reconnect(clinician, "clinician")
        refreshed_at = time.monotonic()
        await _join(call, Side.CLINICIAN, clinician)
        assert old_leg_a.closed and call.leg(Side.CLINICIAN) is not old_leg_a

        # Media back both ways within 2 s of the refresh.
        clinician_frames = client.received.video_frames
        await wait_for(
            lambda: (
                clinician.received.video_frames > 0
                and client.received.video_frames > clinician_frames + 5
            ),
            within=2.0,
        )
        assert time.monotonic() - refreshed_at < 2.0
        assert abs(luma_of_last(client) - CLINICIAN_LUMA) < 10
        assert abs(luma_of_last(clinician) - CLIENT_LUMA) < 10
        # The client's leg never left "connected", and its peer saw the same tracks
        # continue (no renegotiation, no new track).
        after_refresh = statuses[statuses_before_refresh:]
        assert all(
            s.connection_state == "connected" for side, s in after_refresh if side is Side.CLIENT
        )
        # The old leg may report "closed" (the page went away), but never after the new
        # leg has taken the clinician's place.
        clinician_states = [
            s.connection_state for side, s in after_refresh if side is Side.CLINICIAN
        ]
        assert clinician_states[-1] == "connected"
        assert "closed" not in clinician_states[clinician_states.index("connecting") :]
        assert leg_b.status.connection_state == "connected"
        assert len(client._consumers) == tracks_at_client
        assert "closed" not in client.states
    finally:
        await close_all(clinician, client)
        await call.close()


async def test_closing_legs_is_seen_by_the_peers() -> None:
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay()
    try:
        await connect(clinician, leg_a)
        await connect(client, leg_b)
        await relay.attach(Side.CLINICIAN, leg_a)
        await relay.attach(Side.CLIENT, leg_b)
        await wait_for(lambda: clinician.received.video_frames > 0)
        relay.close()
        await leg_a.close()
        await leg_b.close()
        assert leg_a.status == LegStatus("closed", media_flowing=False)
        await wait_for(
            lambda: (
                clinician.pc.connectionState in ("closed", "failed")
                and client.pc.connectionState in ("closed", "failed")
            ),
            within=3,
        )
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_silent_leg_reported_within_2s_and_again_on_recovery() -> None:
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay()
    seen: list[LegStatus] = []
    leg_a.subscribe(lambda leg, status: seen.append(status))
    blackout = _Blackout(clinician)
    try:
        await connect(clinician, leg_a)
        await connect(client, leg_b)
        await relay.attach(Side.CLINICIAN, leg_a)
        await relay.attach(Side.CLIENT, leg_b)
        await wait_for(lambda: leg_a.status.is_live and leg_b.status.is_live, within=5)

        # The clinician's network dies: nothing reaches the server, ICE still "connected".
        blackout.start()
        took = await wait_for(lambda: not leg_a.status.media_flowing, within=2.0)
        assert took < 2.0
        assert leg_a.status.connection_state == "connected"
        assert leg_b.status.is_live

        blackout.stop()
        await wait_for(lambda: leg_a.status.is_live, within=2.0)
        # Video comes back too: the gate asked the clinician for a keyframe.
        frames = client.received.video_frames
        await wait_for(lambda: client.received.video_frames > frames + 5, within=2.0)
        flowing = [s.media_flowing for s in seen if s.connection_state == "connected"]
        assert flowing[-3:] == [True, False, True]
    finally:
        blackout.stop()
        await close_all(clinician, client, leg_a, leg_b)


async def test_slow_egress_sheds_video_until_keyframe_and_recovers() -> None:
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay()
    try:
        await connect(clinician, leg_a)
        await connect(client, leg_b)
        await relay.attach(Side.CLINICIAN, leg_a)
        await relay.attach(Side.CLIENT, leg_b)
        await wait_for(lambda: client.received.video_frames > 5)
        stream = relay.stream(Side.CLINICIAN, "video")
        requests_before = stream.counters.keyframe_requests_upstream

        # The client's socket stops draining: asyncio would buffer without bound.
        egress = leg_b.egress("video")
        assert egress is not None
        socket_transport = _socket_transport(leg_b)
        real_size = socket_transport.get_write_buffer_size
        socket_transport.get_write_buffer_size = lambda: 10 * 1024 * 1024
        try:
            await wait_for(lambda: stream.counters.dropped > 20, within=2)
            assert stream.waiting_for_keyframe
        finally:
            socket_transport.get_write_buffer_size = real_size
        frames = client.received.video_frames
        # Recovery needs a keyframe, which is requested upstream.
        await wait_for(lambda: client.received.video_frames > frames + 5, within=2)
        assert stream.counters.keyframe_requests_upstream > requests_before
        assert not stream.waiting_for_keyframe
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_flood_keeps_queues_bounded() -> None:
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay()
    try:
        await connect(clinician, leg_a)
        await connect(client, leg_b)
        await relay.attach(Side.CLINICIAN, leg_a)
        await relay.attach(Side.CLIENT, leg_b)
        await wait_for(lambda: client.received.audio_frames > 5)

        # The clinician pushes audio packets ~100x faster than real time for ~1 s.
        audio_sender: Any = next(s for s in clinician.pc.getSenders() if s.kind == "audio")
        transport: Any = audio_sender.transport
        audio_in: Any = leg_a.ingress("audio")
        payload_type = next(iter(audio_in.receiver._RTCRtpReceiver__codecs))
        sent = 0
        deadline = time.monotonic() + 1.0
        seq, ts = 1000, 0
        while time.monotonic() < deadline:
            for _ in range(50):
                packet = RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=ts)
                # A second source: the real one's SRTP replay window is its own.
                packet.ssrc = (audio_sender._ssrc + 1) & 0xFFFFFFFF
                packet.payload = b"\xf8\xff\xfe"  # Opus silence
                await transport._send_rtp(packet.serialize(transport._rtp_header_extensions_map))
                seq, ts, sent = (seq + 1) & 0xFFFF, ts + 960, sent + 1
            await asyncio.sleep(0)
        assert sent > 3000

        ingress = leg_a.ingress("audio")
        egress = leg_b.egress("audio")
        assert ingress is not None and egress is not None
        assert ingress.max_backlog_seen <= MAX_INGRESS_BACKLOG_PACKETS + 50
        assert egress.max_backlog_bytes_seen <= 256 * 1024
        # Real media still goes through afterwards, at normal latency.
        frames = client.received.video_frames
        await wait_for(lambda: client.received.video_frames > frames + 10, within=3)
        assert leg_a.status.is_live and leg_b.status.is_live
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_mdns_candidates_are_ignored() -> None:
    leg = new_leg("clinician")
    try:
        added = await leg.add_remote_candidate(
            "candidate:1 1 udp 2122260223 2f1e4b1c-0000-4000-8000-000000000000.local "
            "54321 typ host generation 0",
            "0",
            0,
        )
        assert added is False
    finally:
        await leg.close()


# --- helpers --------------------------------------------------------------------------------


async def _join(call: CallMedia, side: Side, peer: BrowserPeer) -> None:
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    answer = await call.open_leg(side, peer.pc.localDescription.sdp)
    await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


def _socket_transport(leg: MediaLeg) -> Any:
    egress = leg.egress("video")
    assert egress is not None
    connection: Any = egress.sender.transport.transport._connection
    return connection._nominated[1].protocol.transport


class _Blackout:
    """Drops everything a peer sends over DTLS/SRTP, while ICE keep-alives still pass."""

    def __init__(self, peer: BrowserPeer) -> None:
        self._peer = peer
        self._patched: list[Any] = []

    def start(self) -> None:
        async def drop(data: bytes) -> None:
            return None

        for transceiver in self._peer.pc.getTransceivers():
            # RTCIceTransport binds `_send = connection.send` once: replace that binding.
            ice: Any = transceiver.sender.transport.transport
            if ice not in self._patched:
                ice._send = drop
                self._patched.append(ice)

    def stop(self) -> None:
        for ice in self._patched:
            ice._send = ice._connection.send
        self._patched.clear()


async def test_trickled_candidates_connect_and_mdns_ones_are_dropped() -> None:
    clinician = BrowserPeer("clinician", CLINICIAN_LUMA)
    leg = new_leg("clinician")
    try:
        await clinician.pc.setLocalDescription(await clinician.pc.createOffer())
        lines = clinician.pc.localDescription.sdp.splitlines()
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        bare_offer = "\r\n".join(
            line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        answer = await leg.accept_offer(bare_offer + "\r\n")
        await clinician.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        mdns = "candidate:9 1 udp 2122260223 0f0e0d0c-0b0a-4909-8807-060504030201.local 9 typ host"
        assert await leg.add_remote_candidate(mdns, "0", 0) is False
        assert candidates
        for candidate in candidates:
            assert await leg.add_remote_candidate(candidate, "0", 0) is True
        assert await leg.add_remote_candidate(None) is True  # end of candidates
        await wait_for(lambda: leg.status.is_live, within=5)
    finally:
        await close_all(clinician, leg)


async def test_server_initiated_offer_and_quality_sampling() -> None:
    clinician, client = BrowserPeer("clinician", CLINICIAN_LUMA), BrowserPeer("client", CLIENT_LUMA)
    leg_a, leg_b = new_leg("clinician"), new_leg("client")
    relay = Relay()
    try:
        # The server offers to the clinician; the client offers to the server.
        offer = await leg_a.create_offer()
        await clinician.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await clinician.pc.setLocalDescription(await clinician.pc.createAnswer())
        await leg_a.accept_answer(clinician.pc.localDescription.sdp)
        await connect(client, leg_b)
        await relay.attach(Side.CLINICIAN, leg_a)
        await relay.attach(Side.CLIENT, leg_b)
        await wait_for(
            lambda: client.received.video_frames > 0 and clinician.received.video_frames > 0
        )

        first = await sample_leg_quality(leg_a.peer_connection, None)
        quality = first
        deadline = time.monotonic() + 4
        while quality.rtt_ms is None and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            quality = await sample_leg_quality(leg_a.peer_connection, first)
        # Round trip from our forwarded stream's SR and the clinician's RR.
        assert quality.rtt_ms is not None and 0 <= quality.rtt_ms < 100
        assert quality.receive_kbps is not None and quality.receive_kbps > 0
        assert quality.send_kbps is not None and quality.send_kbps > 0
        assert quality.inbound_jitter_ms is not None
    finally:
        await close_all(clinician, client, leg_a, leg_b)


async def test_public_address_override_in_the_answer() -> None:
    clinician = BrowserPeer("clinician", CLINICIAN_LUMA)
    leg = new_leg("clinician", LegSettings(public_ip="203.0.113.9"))
    try:
        await clinician.pc.setLocalDescription(await clinician.pc.createOffer())
        answer = await leg.accept_offer(clinician.pc.localDescription.sdp)
        host_candidates = [
            line
            for line in answer.splitlines()
            if line.startswith("a=candidate:") and " typ host" in line
        ]
        ipv4 = [line.split()[4] for line in host_candidates if "." in line.split()[4]]
        assert ipv4 and set(ipv4) == {"203.0.113.9"}
    finally:
        await close_all(clinician, leg)
