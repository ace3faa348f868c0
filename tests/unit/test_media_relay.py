"""Relay wiring and forwarder decisions before media flows (real legs, not connected)."""

from __future__ import annotations

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.forward import StreamForwarder
from media.leg import MediaLeg
from media.relay import Relay, Side
from tests.e2e.conftest_media import LOOPBACK_CONFIG

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def _leg(label: str) -> MediaLeg:
    return MediaLeg(LOOPBACK_CONFIG, label=label)


async def test_attach_wires_each_side_and_a_refresh_replaces_only_that_side() -> None:
    relay = Relay()
    clinician, client, clinician_again = _leg("clinician"), _leg("client"), _leg("clinician")
    try:
        await relay.attach(Side.CLINICIAN, clinician)
        await relay.attach(Side.CLIENT, client)
        for kind in ("audio", "video"):
            ingress, egress = clinician.ingress(kind), client.egress(kind)
            assert ingress is not None and egress is not None
            assert ingress.consumer is relay.stream(Side.CLINICIAN, kind)
            assert (
                egress.on_keyframe_request == relay.stream(Side.CLINICIAN, kind).on_keyframe_request
            )

        await relay.attach(Side.CLINICIAN, clinician_again)  # Refresh
        assert relay.endpoint(Side.CLINICIAN) is clinician_again
        old, new = clinician.ingress("video"), clinician_again.ingress("video")
        assert old is not None and new is not None
        assert old.consumer is None and new.consumer is relay.stream(Side.CLINICIAN, "video")
        client_video = client.ingress("video")
        assert client_video is not None
        assert client_video.consumer is relay.stream(Side.CLIENT, "video")

        relay.detach(Side.CLINICIAN, clinician)  # the replaced leg closing: changes nothing
        assert relay.endpoint(Side.CLINICIAN) is clinician_again
        relay.detach(Side.CLINICIAN)
        assert relay.endpoint(Side.CLINICIAN) is None and new.consumer is None
        # The client's media no longer has anywhere to go.
        egress = clinician_again.egress("video")
        assert egress is not None and egress.on_keyframe_request is None
    finally:
        relay.close()
        for leg in (clinician, client, clinician_again):
            await leg.close()


async def test_alone_media_is_dropped_on_whichever_path_is_allowed() -> None:
    for fast_path in (True, False):
        forwarder = StreamForwarder("video", fast_path=fast_path)
        leg = _leg("clinician")
        try:
            forwarder.connect_ingress(leg.ingress("video"))
            assert forwarder.waiting_for_keyframe and not forwarder.takes_bytes
            forwarder.forward_packet(RtpPacket(payload_type=96, sequence_number=1), VP8)
            assert forwarder.counters.dropped == 1 and forwarder.counters.forwarded == 0
            # Nobody to send to: the fast path may read and drop it, unless disallowed.
            assert forwarder.takes_bytes is fast_path
        finally:
            await leg.close()


async def test_an_egress_leg_not_yet_connected_drops_and_holds_video_for_a_keyframe() -> None:
    forwarder = StreamForwarder("video")
    sender, receiver = _leg("clinician"), _leg("client")
    try:
        forwarder.connect_ingress(sender.ingress("video"))
        forwarder.connect_egress(receiver.egress("video"))
        forwarder.shed(7)  # an ingress backlog shed goes the same way
        forwarder.forward_packet(RtpPacket(payload_type=96, sequence_number=8), VP8)
        assert forwarder.counters.dropped == 2 and forwarder.waiting_for_keyframe
        # Not checked against a connected egress yet: stays on the slow path.
        assert not forwarder.takes_bytes
    finally:
        await sender.close()
        await receiver.close()
