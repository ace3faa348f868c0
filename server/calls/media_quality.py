"""Media leg quality for people (``quality_stats`` to the clinician) and for Prometheus.

Per-leg gauges are labelled by call and role; a leg's series are removed when it closes,
so ``/metrics`` only ever lists the legs that exist (no unbounded label growth).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from media.leg import LegStatus
from media.stats import LegQuality
from signalling.model import Role
from signalling.protocol import QualityStats

_LABELS = ("call_id", "role")


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
        if labels not in self._exported:
            return
        self._exported.discard(labels)
        for gauge in self._per_leg:
            gauge.remove(*labels)  # a series never set is ignored

    def forget(self, call_id: str) -> None:
        for role in Role:
            self.forget_leg(call_id, role)

    @staticmethod
    def message(role: Role, quality: LegQuality) -> QualityStats:
        """What the clinician's quality indicator shows for ``role``'s connection.

        ``inbound`` is what the participant sends to the server, ``outbound`` what the
        server sends them; loss is what their browser reported losing of ours.
        """
        return QualityStats(
            role=role,
            round_trip_ms=round(quality.rtt_ms) if quality.rtt_ms is not None else None,
            packet_loss_pct=(
                round(quality.outbound_loss_pct, 1)
                if quality.outbound_loss_pct is not None
                else None
            ),
            inbound_kbps=round(quality.receive_kbps) if quality.receive_kbps is not None else None,
            outbound_kbps=round(quality.send_kbps) if quality.send_kbps is not None else None,
        )
