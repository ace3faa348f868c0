"""Per-leg call quality, sampled from aiortc's `getStats()` every few seconds.

Whoever owns a leg calls `sample_leg_quality(leg.peer_connection, previous)` periodically
and keeps the result for the next call (bitrates are deltas between two samples).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# RTP clock rates of the codecs a leg negotiates (VP8/H264: 90 kHz; Opus: 48 kHz), to turn
# RTCP jitter (in timestamp units) into milliseconds.
_CLOCK_RATE_BY_KIND = {"video": 90000, "audio": 48000}


class StatsSource(Protocol):
    async def getStats(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class LegQuality:
    sampled_at: float  # time.monotonic()
    # Round trip between the server and the browser (RTCP SR/RR on what we send).
    rtt_ms: float | None
    # Browser -> server: packets lost so far, and inter-arrival jitter (worst kind).
    inbound_packets_lost: int
    inbound_jitter_ms: float | None
    # Server -> browser: fraction lost in the browser's last receiver report, in percent.
    outbound_loss_pct: float | None
    # Bitrates over the interval since the previous sample (None on the first sample).
    receive_kbps: float | None
    send_kbps: float | None
    bytes_received: int
    bytes_sent: int
    # Browser -> server packets that arrived so far (with the lost ones: the loss rate).
    inbound_packets_received: int = 0


def quality_from_report(
    report: Mapping[str, Any], previous: LegQuality | None, now: float
) -> LegQuality:
    """Pure: a `LegQuality` from a stats report (aiortc's RTCStats dataclasses)."""
    rtts: list[float] = []
    losses: list[float] = []
    jitters: list[float] = []
    lost = 0
    received = 0
    bytes_received = 0
    bytes_sent = 0
    for stats in report.values():
        kind = getattr(stats, "type", None)
        if kind == "inbound-rtp":
            lost += max(0, int(stats.packetsLost))
            received += int(getattr(stats, "packetsReceived", 0) or 0)
            rate = _CLOCK_RATE_BY_KIND.get(stats.kind)
            if rate:
                jitters.append(stats.jitter * 1000.0 / rate)
        elif kind == "remote-inbound-rtp":
            if stats.roundTripTime is not None:
                rtts.append(stats.roundTripTime * 1000.0)
            if stats.fractionLost is not None:
                # RTCP carries the fraction as an 8-bit fixed point number.
                losses.append(stats.fractionLost * 100.0 / 256.0)
        elif kind == "transport":
            bytes_received += int(stats.bytesReceived)
            bytes_sent += int(stats.bytesSent)

    receive_kbps = send_kbps = None
    if previous is not None and now > previous.sampled_at:
        seconds = now - previous.sampled_at
        receive_kbps = max(0, bytes_received - previous.bytes_received) * 8 / 1000 / seconds
        send_kbps = max(0, bytes_sent - previous.bytes_sent) * 8 / 1000 / seconds

    return LegQuality(
        sampled_at=now,
        rtt_ms=max(rtts) if rtts else None,
        inbound_packets_lost=lost,
        inbound_jitter_ms=max(jitters) if jitters else None,
        outbound_loss_pct=max(losses) if losses else None,
        receive_kbps=receive_kbps,
        send_kbps=send_kbps,
        bytes_received=bytes_received,
        bytes_sent=bytes_sent,
        inbound_packets_received=received,
    )


async def sample_leg_quality(source: StatsSource, previous: LegQuality | None) -> LegQuality:
    report = await source.getStats()
    return quality_from_report(report, previous, time.monotonic())
