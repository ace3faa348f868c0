"""Sequence number and timestamp rewriting: mediasoup SeqManager semantics, no reused number."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from media.sequence import (
    MAX_STALE_IN_A_ROW,
    REORDER_WINDOW,
    SequenceRewriter,
    StreamRewriter,
)


def test_a_late_packet_from_before_a_rebase_is_refused_not_mapped_onto_a_sent_number() -> None:
    # The case of the issue: 100->8806, 101->8807, gap, 103->8808, late 102 got 8807 again.
    rewriter = SequenceRewriter(first_output=8806)
    assert rewriter.rewrite(100) == 8806
    assert rewriter.rewrite(101) == 8807
    rewriter.sync()  # the forwarder dropped packets (e.g. shed for backlog)
    assert rewriter.rewrite(103) == 8808
    assert rewriter.rewrite(102) is None
    assert rewriter.rewrite(101) is None  # a retransmission of one already sent
    assert rewriter.rewrite(104) == 8809


def test_reordered_packets_take_their_own_slot_and_duplicates_are_refused() -> None:
    rewriter = SequenceRewriter(first_output=10)
    assert rewriter.rewrite(65534) == 10
    assert rewriter.rewrite(1) == 13  # across the wrap; 65535 and 0 still to come
    assert rewriter.rewrite(0) == 12
    assert rewriter.rewrite(65535) == 11
    assert rewriter.rewrite(0) is None
    assert rewriter.rewrite(2) == 14


def test_dropped_inputs_are_closed_up_over() -> None:
    rewriter = SequenceRewriter(first_output=500)
    assert rewriter.rewrite(7) == 500
    rewriter.drop(8)
    rewriter.drop(9)
    assert rewriter.rewrite(10) == 501
    assert rewriter.rewrite(8) is None  # dropped: its slot was given away
    rewriter.drop(12)
    assert rewriter.rewrite(11) == 502  # late but not dropped: its own slot
    assert rewriter.rewrite(13) == 503


def test_stale_inputs_are_refused_and_a_source_jump_rebases() -> None:
    rewriter = SequenceRewriter(first_output=0)
    for seq in range(2 * REORDER_WINDOW):
        assert rewriter.rewrite(seq) == seq
    assert rewriter.rewrite(REORDER_WINDOW - 1) is None  # too old to be worth sending
    assert rewriter.rewrite(2 * REORDER_WINDOW) == 2 * REORDER_WINDOW
    # The source jumped far back: after a few refusals in a row it is a rebase.
    back = (2 * REORDER_WINDOW - 20000) & 0xFFFF
    jumped = [rewriter.rewrite(back + i) for i in range(MAX_STALE_IN_A_ROW)]
    assert jumped[:-1] == [None] * (MAX_STALE_IN_A_ROW - 1)
    assert jumped[-1] == 2 * REORDER_WINDOW + 1
    assert rewriter.rewrite(back + MAX_STALE_IN_A_ROW) == 2 * REORDER_WINDOW + 2


@dataclass(frozen=True)
class Arrival:
    index: int  # position in the sender's stream (its true order)
    action: str  # "forward" or "drop" (the forwarder chose not to send it)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, list[Arrival | None]]:
    """A sender's stream after loss, duplication and reordering; None = a rebase (sync)."""
    count = draw(st.integers(1, 300))
    first_seq = draw(st.integers(0, 0xFFFF))
    order: list[tuple[float, int]] = []
    for index in range(count):
        if draw(st.integers(0, 9)) == 0:
            continue  # lost upstream
        copies = 2 if draw(st.integers(0, 14)) == 0 else 1
        for _ in range(copies):
            # Displaced by up to 40 places (late packets, retransmissions).
            order.append((index + draw(st.integers(0, 40)) * draw(st.booleans()), index))
    order.sort(key=lambda item: item[0])
    events: list[Arrival | None] = []
    for _, index in order:
        if draw(st.integers(0, 24)) == 0:
            events.append(None)
        events.append(Arrival(index, "drop" if draw(st.integers(0, 11)) == 0 else "forward"))
    return first_seq, events


@settings(max_examples=150, deadline=None)
@given(arrivals(), st.integers(0, 0xFFFF))
def test_outputs_strictly_increase_in_stream_order_and_are_never_reused(
    case: tuple[int, list[Arrival | None]], first_output: int
) -> None:
    first_seq, events = case
    rewriter = SequenceRewriter(first_output)
    epoch = 0
    sent: list[tuple[int, int, int]] = []  # (epoch, index, unwrapped output)
    outputs: set[int] = set()
    highest: int | None = None
    epoch_started = -1
    for event in events:
        if event is None:
            rewriter.sync()
            epoch += 1
            continue
        seq = (first_seq + event.index) & 0xFFFF
        if event.action == "drop":
            rewriter.drop(seq)
            continue
        out = rewriter.rewrite(seq)
        if out is None:
            continue
        assert out not in outputs, f"output {out} handed out twice"
        outputs.add(out)
        # Fewer than 2^15 outputs: unwrap each against the first one.
        unwrapped = (out - first_output) & 0xFFFF
        sent.append((epoch, event.index, unwrapped))
        if epoch != epoch_started:
            # After a rebase the stream continues right after the highest number sent.
            assert highest is None or unwrapped == highest + 1
            epoch_started = epoch
        if highest is None or unwrapped > highest:
            highest = unwrapped
    # In the sender's order (a rebase starts a later stretch), outputs strictly increase.
    in_stream_order = sorted(sent)
    assert all(a[2] < b[2] for a, b in itertools.pairwise(in_stream_order)), (
        "an output number went backwards in stream order"
    )


def test_stream_keeps_one_continuous_timeline_across_sources() -> None:
    rewriter = StreamRewriter(90000, rng=random.Random(1))
    out = [
        rewriter.rewrite(111, seq, 1000 + 3000 * i, now=i / 30)
        for i, seq in enumerate(range(65530, 65540))
    ]
    pairs = [pair for pair in out if pair is not None]
    assert len(pairs) == 10
    seqs = [s for s, _ in pairs]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    assert all((b - a) & 0xFFFFFFFF == 3000 for (_, a), (_, b) in itertools.pairwise(pairs))

    # The ingress leg is rebuilt: new SSRC, unrelated sequence numbers and timestamps.
    last_seq, last_ts = pairs[-1]
    moved = rewriter.rewrite(222, 7, 123456789, now=9 / 30 + 0.5)
    assert moved is not None
    seq, ts = moved
    assert seq == (last_seq + 1) & 0xFFFF
    assert (ts - last_ts) & 0xFFFFFFFF == 45000  # 0.5 s at 90 kHz
    following = rewriter.rewrite(222, 8, 123456789 + 3000, now=10)
    assert following is not None and following[0] == (seq + 1) & 0xFFFF


def test_stream_gap_after_drops_and_late_packets_keep_their_place() -> None:
    rewriter = StreamRewriter(48000, rng=random.Random(2))
    first = rewriter.rewrite(5, 100, 0, now=0)
    second = rewriter.rewrite(5, 102, 960, now=0.02)  # 101 lost upstream: gap kept
    assert first is not None and second is not None
    assert second[0] == (first[0] + 2) & 0xFFFF
    late = rewriter.rewrite(5, 101, 960, now=0.03)  # arrives late: its own slot
    assert late is not None and late[0] == (first[0] + 1) & 0xFFFF
    rewriter.mark_gap()  # we dropped 103..110 ourselves
    after = rewriter.rewrite(5, 111, 960 * 11, now=0.2)
    assert after is not None and after[0] == (second[0] + 1) & 0xFFFF
    assert rewriter.rewrite(5, 104, 960 * 4, now=0.21) is None  # from before the rebase
