"""Leg quality from aiortc stats reports."""

from __future__ import annotations

from datetime import UTC, datetime

from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

from media.stats import quality_from_report

T = datetime(2025, 1, 1, tzinfo=UTC)


def _report(bytes_received: int, bytes_sent: int) -> dict[str, object]:
    return {
        "in-v": RTCInboundRtpStreamStats(
            timestamp=T,
            type="inbound-rtp",
            id="in-v",
            ssrc=1,
            kind="video",
            transportId="t",
            packetsReceived=100,
            packetsLost=3,
            jitter=900,
        ),
        "in-a": RTCInboundRtpStreamStats(
            timestamp=T,
            type="inbound-rtp",
            id="in-a",
            ssrc=2,
            kind="audio",
            transportId="t",
            packetsReceived=100,
            packetsLost=1,
            jitter=96,
        ),
        "rin-v": RTCRemoteInboundRtpStreamStats(
            timestamp=T,
            type="remote-inbound-rtp",
            id="rin-v",
            ssrc=3,
            kind="video",
            transportId="t",
            packetsReceived=90,
            packetsLost=2,
            jitter=0,
            roundTripTime=0.040,
            fractionLost=64,
        ),
        "t": RTCTransportStats(
            timestamp=T,
            type="transport",
            id="t",
            packetsSent=1,
            packetsReceived=1,
            bytesSent=bytes_sent,
            bytesReceived=bytes_received,
            iceRole="controlled",
            dtlsState="connected",
        ),
    }


def test_quality_from_report() -> None:
    first = quality_from_report(_report(10_000, 20_000), None, now=100.0)
    assert first.rtt_ms == 40.0
    assert first.inbound_packets_lost == 4
    assert first.inbound_jitter_ms == 10.0  # 900 ticks at 90 kHz
    assert first.outbound_loss_pct == 25.0  # 64/256
    assert first.receive_kbps is None and first.send_kbps is None

    second = quality_from_report(_report(135_000, 20_000), first, now=102.0)
    assert second.receive_kbps == 500.0
    assert second.send_kbps == 0.0


def test_quality_of_an_empty_report() -> None:
    quality = quality_from_report({}, None, now=1.0)
    assert quality.rtt_ms is None and quality.inbound_jitter_ms is None
    assert quality.inbound_packets_lost == 0
