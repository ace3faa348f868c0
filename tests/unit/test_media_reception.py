"""The fast path's reception state equals aiortc's, packet for packet.

`FastStreamStatistics.add_fields` and `FastNackGenerator.add_seq` take a packet's sequence
number and timestamp as integers; aiortc's `StreamStatistics.add` and `NackGenerator.add`
take an `RtpPacket`. Fed the same packets in any order, with loss, duplicates and
wrap-arounds, they must end in the same state (receiver reports and NACKs are built from
it), and report missing packets at the same moments.
"""

from __future__ import annotations

from unittest import mock

from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from media.aiortc_adapter.reception import FastNackGenerator, FastStreamStatistics


def _state(stats: StreamStatistics) -> tuple[object, ...]:
    return (
        stats.base_seq,
        stats.max_seq,
        stats.cycles,
        stats.packets_received,
        stats.packets_expected,
        stats.packets_lost,
        stats.jitter,
        stats._jitter_q4,
        stats._last_arrival,
        stats._last_timestamp,
    )


# Sequence numbers as steps from a random start (mostly forward, some back: reordering,
# duplicates, loss, wrap), timestamps and arrival clocks alongside.
_packets = st.tuples(
    st.integers(0, 0xFFFF),
    st.lists(
        st.tuples(
            st.integers(-40, 300),
            st.integers(0, 6000),
            st.floats(0.0, 0.2, allow_nan=False),
        ),
        min_size=1,
        max_size=120,
    ),
)


@settings(max_examples=300, deadline=None)
@given(packets=_packets, clock_rate=st.sampled_from([48000, 90000]))
def test_statistics_from_fields_equal_aiortcs_from_packets(
    packets: tuple[int, list[tuple[int, int, float]]], clock_rate: int
) -> None:
    start, steps = packets
    theirs, ours = StreamStatistics(clock_rate), FastStreamStatistics(clock_rate)
    seq, ts, now = start, 1000, 1_700_000_000.0
    for step, ts_step, elapsed in steps:
        seq, ts, now = (seq + step) & 0xFFFF, (ts + ts_step) & 0xFFFFFFFF, now + elapsed
        packet = RtpPacket(sequence_number=seq, timestamp=ts)
        with mock.patch("time.time", return_value=now):
            theirs.add(packet)
            ours.add_fields(seq, ts)
        assert _state(ours) == _state(theirs)


@settings(max_examples=300, deadline=None)
@given(packets=_packets)
def test_missing_packets_from_a_number_equal_aiortcs_from_packets(
    packets: tuple[int, list[tuple[int, int, float]]],
) -> None:
    start, steps = packets
    theirs, ours = NackGenerator(), FastNackGenerator()
    seq = start
    for step, _, _ in steps:
        seq = (seq + step) & 0xFFFF
        assert ours.add_seq(seq) == theirs.add(RtpPacket(sequence_number=seq))
        assert (ours.max_seq, ours.missing) == (theirs.max_seq, theirs.missing)


def test_the_slow_paths_add_still_works_on_the_fast_objects() -> None:
    stats, nack = FastStreamStatistics(90000), FastNackGenerator()
    for seq in (10, 11, 14):
        stats.add(RtpPacket(sequence_number=seq, timestamp=seq * 3000))
        nack.add(RtpPacket(sequence_number=seq))
    stats.add_fields(15, 45000)
    assert nack.add_seq(17)
    assert (stats.max_seq, stats.packets_received, stats.packets_lost) == (15, 4, 2)
    assert nack.missing == {12, 13, 15, 16}  # 15 went to the statistics only
