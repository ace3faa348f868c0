"""When the ingress asks a sender again for missing video packets (media/nack.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media.nack import (
    DEFAULT_ROUND_TRIP_S,
    MAX_REQUESTS_PER_PACKET,
    MIN_REQUEST_INTERVAL_S,
    NackRequester,
)


def test_a_newly_missing_packet_is_asked_for_at_once_and_again_after_a_round_trip() -> None:
    requester = NackRequester()
    assert requester.due({7, 5}, now=10.0, round_trip_s=0.125) == [5, 7]
    # Within the round trip the answer may still be on its way: not again.
    assert requester.due({5, 7}, now=10.0625, round_trip_s=0.125) == []
    # A new gap meanwhile: only the new packet.
    assert requester.due({5, 7, 9}, now=10.0625, round_trip_s=0.125) == [9]
    # A round trip after the first request, the first two are due again.
    assert requester.due({5, 7, 9}, now=10.125, round_trip_s=0.125) == [5, 7]


def test_an_arrived_packet_is_forgotten_and_a_new_loss_of_it_counts_afresh() -> None:
    requester = NackRequester()
    for step in range(MAX_REQUESTS_PER_PACKET):
        assert requester.due({3}, now=float(step), round_trip_s=0.1) == [3]
    assert requester.due(set(), now=20.0, round_trip_s=0.1) == []
    # The same number missing again (after a wrap-around): a new packet to ask for.
    assert requester.due({3}, now=21.0, round_trip_s=0.1) == [3]


def test_each_packet_is_asked_for_at_most_the_limit() -> None:
    requester = NackRequester()
    asked = sum(len(requester.due({1, 2}, now=step * 1.0, round_trip_s=0.1)) for step in range(30))
    assert asked == 2 * MAX_REQUESTS_PER_PACKET


def test_without_a_measured_round_trip_the_default_one_applies() -> None:
    requester = NackRequester()
    assert requester.due({1}, now=0.0, round_trip_s=None) == [1]
    assert requester.due({1}, now=DEFAULT_ROUND_TRIP_S * 0.9, round_trip_s=None) == []
    assert requester.due({1}, now=DEFAULT_ROUND_TRIP_S, round_trip_s=None) == [1]


def test_a_tiny_round_trip_does_not_ask_more_often_than_the_minimum_interval() -> None:
    requester = NackRequester()
    assert requester.due({1}, now=0.0, round_trip_s=0.001) == [1]
    assert requester.due({1}, now=MIN_REQUEST_INTERVAL_S / 2, round_trip_s=0.001) == []
    assert requester.due({1}, now=MIN_REQUEST_INTERVAL_S, round_trip_s=0.001) == [1]
    # The ingress looks again no sooner than the minimum interval.
    assert requester.next_check_at == MIN_REQUEST_INTERVAL_S * 2


@given(
    st.lists(
        st.tuples(st.frozensets(st.integers(0, 40), max_size=12), st.floats(0, 0.5)),
        max_size=60,
    ),
    st.one_of(st.none(), st.floats(0.0, 0.4)),
)
def test_never_more_often_than_a_round_trip_nor_more_than_the_limit(
    steps: list[tuple[frozenset[int], float]], round_trip_s: float | None
) -> None:
    requester = NackRequester()
    interval = max(
        MIN_REQUEST_INTERVAL_S, DEFAULT_ROUND_TRIP_S if round_trip_s is None else round_trip_s
    )
    now = 0.0
    last_asked: dict[int, float] = {}
    times_asked: dict[int, int] = {}
    for missing, advance in steps:
        now += advance
        for seq in [seq for seq in last_asked if seq not in missing]:
            del last_asked[seq], times_asked[seq]  # arrived: forgotten
        wanted = requester.due(missing, now, round_trip_s)
        assert wanted == sorted(wanted) and set(wanted) <= missing
        for seq in missing:
            if seq not in last_asked:
                assert seq in wanted  # a new loss is asked for at once
        for seq in wanted:
            if seq in last_asked:
                assert now - last_asked[seq] >= interval
            last_asked[seq] = now
            times_asked[seq] = times_asked.get(seq, 0) + 1
            assert times_asked[seq] <= MAX_REQUESTS_PER_PACKET
