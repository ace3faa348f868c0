"""The quality indicator's judgement: it follows both directions of the link, and says
"reconnecting" or "absent" (with no figures) when the participant's media is not there."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry

from media.leg import LegStatus
from media.stats import LegQuality
from server.calls.media_quality import (
    LegQualityReporter,
    QualityLevel,
    inbound_loss_pct,
    quality_level,
)
from signalling.model import Role

LIVE = LegStatus("connected", media_flowing=True)
STALLED = LegStatus("connected", media_flowing=False)


def sample(
    *, at: float = 0.0, rtt: float | None = 20.0, downlink_loss: float | None = 0.0,
    lost: int = 0, received: int = 0,
) -> LegQuality:  # fmt: skip
    return LegQuality(
        sampled_at=at,
        rtt_ms=rtt,
        inbound_packets_lost=lost,
        inbound_jitter_ms=2.0,
        outbound_loss_pct=downlink_loss,
        receive_kbps=800.0,
        send_kbps=700.0,
        bytes_received=0,
        bytes_sent=0,
        inbound_packets_received=received,
    )


def test_uplink_loss_is_the_share_lost_since_the_previous_sample() -> None:
    first = sample(lost=10, received=1000)
    later = sample(lost=60, received=1950)  # 50 lost, 950 arrived
    assert inbound_loss_pct(first, later) == pytest.approx(5.0)
    assert inbound_loss_pct(None, later) is None
    assert inbound_loss_pct(later, later) is None  # nothing arrived: no figure, not 0 %


@pytest.mark.parametrize(
    ("quality", "uplink", "level"),
    [
        (sample(), 0.0, QualityLevel.GOOD),
        (sample(), 3.0, QualityLevel.FAIR),  # the client's uplink loses packets
        (sample(downlink_loss=3.0), None, QualityLevel.FAIR),  # their downlink does
        (sample(), 10.0, QualityLevel.POOR),
        (sample(downlink_loss=12.0), 0.0, QualityLevel.POOR),
        (sample(rtt=300.0), 0.0, QualityLevel.FAIR),
        (sample(rtt=700.0), 0.0, QualityLevel.POOR),
        (sample(rtt=None, downlink_loss=None), None, QualityLevel.GOOD),
    ],
)
def test_level_follows_loss_both_ways_and_round_trip(
    quality: LegQuality, uplink: float | None, level: QualityLevel
) -> None:
    assert quality_level(LIVE, quality, uplink) is level


def test_stalled_or_missing_media_is_never_good() -> None:
    perfect = sample(rtt=1.0)
    assert quality_level(STALLED, perfect, 0.0) is QualityLevel.RECONNECTING
    assert quality_level(LegStatus("connecting", False), perfect, 0.0) is (
        QualityLevel.RECONNECTING
    )
    assert quality_level(LegStatus("failed", False), perfect, 0.0) is QualityLevel.ABSENT
    assert quality_level(None, None, None) is QualityLevel.ABSENT


def test_messages_carry_figures_only_while_media_is_live() -> None:
    reporter = LegQualityReporter(CollectorRegistry())
    first = reporter.message("call-1", Role.CLIENT, LIVE, sample(lost=0, received=100))
    assert first.level == "good" and first.round_trip_ms == 20 and first.packet_loss_pct == 0.0
    lossy = reporter.message(
        "call-1", Role.CLIENT, LIVE, sample(at=3.0, lost=20, received=280, downlink_loss=1.0)
    )
    # 20 of 200 packets lost on the way up: the worse direction is shown.
    assert lossy.level == "poor" and lossy.packet_loss_pct == 10.0
    stalled = reporter.message("call-1", Role.CLIENT, STALLED, sample(at=6.0, rtt=1.0))
    assert stalled.level == "reconnecting"
    assert (stalled.round_trip_ms, stalled.packet_loss_pct, stalled.inbound_kbps) == (
        None,
        None,
        None,
    )
    gone = reporter.message("call-1", Role.CLIENT, None, None)
    assert gone.level == "absent" and gone.round_trip_ms is None
    # Another call's samples are its own.
    other = reporter.message("call-2", Role.CLIENT, LIVE, dataclasses.replace(sample(), rtt_ms=5.0))
    assert other.packet_loss_pct == 0.0
