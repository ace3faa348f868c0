"""Media leg quality for people (``quality_stats`` to the clinician, and to the client
about their own connection) and for Prometheus.

What people are told follows the link as the server's legs measure it, both ways: loss of
what the participant sends us (RTP sequence gaps) and of what we send them (their
receiver reports), round trip, bitrates. A participant whose media stopped is
"reconnecting" and one without a leg is "absent": never figures from before they left.

Per-leg gauges are labelled by call and role; a leg's series are removed when it closes,
so ``/metrics`` only ever lists the legs that exist (no unbounded label growth).
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge

from media.leg import LegStatus
from media.stats import LegQuality
from signalling.model import Role
from signalling.protocol import QualityStats

_LABELS = ("call_id", "role")

# Where calls start to suffer: beyond ~2% loss or ~250 ms round trip speech and video
# visibly degrade; beyond ~8% or ~500 ms a conversation gets hard (ITU-T G.114, and what
# WebRTC services show as "poor").
FAIR_LOSS_PCT, POOR_LOSS_PCT = 2.0, 8.0
FAIR_RTT_MS, POOR_RTT_MS = 250.0, 500.0


class QualityLevel(StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    RECONNECTING = "reconnecting"  # a leg, but no media on it right now
    ABSENT = "absent"  # no leg at all: left, or not connected yet


def inbound_loss_pct(previous: LegQuality | None, current: LegQuality) -> float | None:
    """Share of the participant's packets lost on the way to us since the previous sample."""
    if previous is None:
        return None
    lost = max(0, current.inbound_packets_lost - previous.inbound_packets_lost)
    received = max(0, current.inbound_packets_received - previous.inbound_packets_received)
    if lost + received == 0:
        return None
    return 100.0 * lost / (lost + received)


def quality_level(
    status: LegStatus | None, quality: LegQuality | None, uplink_loss_pct: float | None
) -> QualityLevel:
    """Pure: what the indicator says about one participant's connection."""
    if status is None or status.connection_state in ("closed", "failed"):
        return QualityLevel.ABSENT
    if not status.is_live:
        return QualityLevel.RECONNECTING
    if quality is None:
        return QualityLevel.GOOD  # connected and carrying media; figures follow
    loss = max(
        (x for x in (quality.outbound_loss_pct, uplink_loss_pct) if x is not None), default=0.0
    )
    rtt = quality.rtt_ms or 0.0
    if loss > POOR_LOSS_PCT or rtt > POOR_RTT_MS:
        return QualityLevel.POOR
    if loss > FAIR_LOSS_PCT or rtt > FAIR_RTT_MS:
        return QualityLevel.FAIR
    return QualityLevel.GOOD


class LegQualityReporter:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(name, documentation, _LABELS, registry=registry)

        self._live = gauge(
            "videoconsult_media_leg_live", "1 while the leg is connected and carrying media"
        )
        self._rtt = gauge("videoconsult_media_leg_rtt_ms", "round trip server <-> browser, ms")
        self._loss = gauge(
            "videoconsult_media_leg_outbound_loss_pct",
            "share of our packets the browser reported lost, percent",
        )
        self._lost = gauge(
            "videoconsult_media_leg_inbound_packets_lost",
            "packets from the browser lost so far",
        )
        self._jitter = gauge(
            "videoconsult_media_leg_inbound_jitter_ms", "jitter of what the browser sends, ms"
        )
        self._receive = gauge(
            "videoconsult_media_leg_receive_kbps", "bitrate from the browser to the server"
        )
        self._send = gauge(
            "videoconsult_media_leg_send_kbps", "bitrate from the server to the browser"
        )
        self._legs_opened = Counter(
            "videoconsult_media_legs_opened",
            "media legs opened (offers answered)",
            registry=registry,
        )
        self._refreshes = Counter(
            "videoconsult_media_refreshes", "media refreshes asked for (R-C1)", registry=registry
        )
        self._per_leg = (
            self._live,
            self._rtt,
            self._loss,
            self._lost,
            self._jitter,
            self._receive,
            self._send,
        )
        self._exported: set[tuple[str, str]] = set()
        self._previous: dict[tuple[str, str], LegQuality] = {}

    def count_leg_opened(self) -> None:
        self._legs_opened.inc()

    def count_refresh(self) -> None:
        self._refreshes.inc()

    def export_status(self, call_id: str, role: Role, status: LegStatus) -> None:
        self._exported.add((call_id, role.value))
        self._live.labels(call_id, role.value).set(1 if status.is_live else 0)

    def export_quality(self, call_id: str, role: Role, quality: LegQuality) -> None:
        labels = (call_id, role.value)
        self._exported.add(labels)
        self._lost.labels(*labels).set(quality.inbound_packets_lost)
        for gauge, value in (
            (self._rtt, quality.rtt_ms),
            (self._loss, quality.outbound_loss_pct),
            (self._jitter, quality.inbound_jitter_ms),
            (self._receive, quality.receive_kbps),
            (self._send, quality.send_kbps),
        ):
            if value is not None:  # not measured yet: no sample rather than a made-up 0
                gauge.labels(*labels).set(value)

    def forget_leg(self, call_id: str, role: Role) -> None:
        labels = (call_id, role.value)
        self._previous.pop(labels, None)
        if labels not in self._exported:
            return
        self._exported.discard(labels)
        for gauge in self._per_leg:
            gauge.remove(*labels)  # a series never set is ignored

    def forget(self, call_id: str) -> None:
        for role in Role:
            self.forget_leg(call_id, role)

    def message(
        self, call_id: str, role: Role, status: LegStatus | None, quality: LegQuality | None
    ) -> QualityStats:
        """What the quality indicator shows for ``role``'s connection.

        ``inbound`` is what the participant sends to the server, ``outbound`` what the
        server sends them; loss is the worse of the two directions. Figures only while the
        participant's media is live: a stalled or missing leg has none to show.
        """
        key = (call_id, role.value)
        previous = self._previous.get(key)
        if quality is not None:
            self._previous[key] = quality
        uplink_loss = inbound_loss_pct(previous, quality) if quality is not None else None
        level = quality_level(status, quality, uplink_loss)
        if quality is None or level in (QualityLevel.RECONNECTING, QualityLevel.ABSENT):
            return QualityStats(role=role, level=level.value)
        losses = [x for x in (quality.outbound_loss_pct, uplink_loss) if x is not None]
        return QualityStats(
            role=role,
            level=level.value,
            round_trip_ms=round(quality.rtt_ms) if quality.rtt_ms is not None else None,
            packet_loss_pct=round(max(losses), 1) if losses else None,
            inbound_kbps=round(quality.receive_kbps) if quality.receive_kbps is not None else None,
            outbound_kbps=round(quality.send_kbps) if quality.send_kbps is not None else None,
        )
