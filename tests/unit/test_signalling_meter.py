"""Per-second metering and its flush to the ledger (R-M8, R-M9, R-M10)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling.meter import Meter, MeterCheckpoint, MeterFlusher, UnknownCall, UsageReading
from signalling.model import Role

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
DOC, CLIENT = Role.CLINICIAN, Role.CLIENT
BOTH = frozenset({DOC, CLIENT})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class SinkDown(Exception):
    pass


@dataclass
class Ledger:
    """Stand-in for the server's usage table: idempotent per (call_id, sequence)."""

    entries: dict[tuple[str, int], UsageReading] = field(default_factory=dict)
    fail_before: int = 0  # next N batches fail before anything is written
    fail_after: int = 0  # next N batches are written, but the caller hears a failure
    batches: int = 0

    async def record_usage(self, readings: Sequence[UsageReading]) -> None:
        self.batches += 1
        if self.fail_before:
            self.fail_before -= 1
            raise SinkDown
        for reading in readings:
            key = (reading.call_id, reading.sequence)
            if key in self.entries:
                assert self.entries[key] == reading  # a retry is the very same reading
            self.entries[key] = reading
        if self.fail_after:
            self.fail_after -= 1
            raise SinkDown

    def billed(self, call_id: str) -> int:
        return sum(r.seconds for (cid, _), r in self.entries.items() if cid == call_id)

    def checkpoint(self, call_id: str) -> MeterCheckpoint:
        last = max(
            (r for (cid, _), r in self.entries.items() if cid == call_id), key=lambda r: r.sequence
        )
        return last.checkpoint


def test_only_seconds_with_both_connected_are_billed() -> None:  # R-M8
    meter = Meter()
    meter.start_call("c", "p", at(0), connected=frozenset({DOC}))
    meter.set_connected("c", CLIENT, True, at(10))
    meter.set_connected("c", CLIENT, False, at(25.5))  # R-C8: a drop pauses billing
    meter.set_connected("c", CLIENT, True, at(40))
    meter.end_call("c", at(50.7))
    (reading,) = meter.take_readings(at(99))
    assert (reading.seconds, reading.final, reading.sequence) == (26, True, 1)
    assert reading.carried_microseconds == 200_000
    assert "c" not in meter


def test_remainders_carry_across_readings() -> None:  # R-M8, R-M10
    meter = Meter()
    meter.start_call("c", "p", at(0), connected=BOTH)
    assert [r.seconds for r in meter.take_readings(at(1.6))] == [1]
    assert [r.seconds for r in meter.take_readings(at(2.2))] == [1]  # 0.6 + 0.6 = 1.2
    assert meter.take_readings(at(2.9)) == []  # nothing whole yet: no reading, no sequence
    (reading,) = meter.take_readings(at(3.0))
    assert (reading.sequence, reading.seconds, reading.billed_total_seconds) == (3, 1, 3)


def test_balance_never_stops_the_meter_and_unknown_calls_are_errors() -> None:  # R-M9
    meter = Meter()
    meter.start_call("c", "p", at(0), connected=BOTH)
    assert meter.billable_seconds("c", at(3600.9)) == 3600
    with pytest.raises(UnknownCall):
        meter.set_connected("nope", DOC, True, at(1))
    with pytest.raises(ValueError):
        meter.start_call("c", "p", at(0))


def test_clock_stepping_back_never_unbills() -> None:
    meter = Meter()
    meter.start_call("c", "p", at(10), connected=BOTH)
    assert meter.take_readings(at(5)) == []
    assert [r.seconds for r in meter.take_readings(at(12))] == [2]


def test_restore_continues_sequence_and_remainder() -> None:  # R-M10
    meter = Meter()
    meter.start_call("c", "p", at(0), connected=BOTH, resume_from=MeterCheckpoint(120, 7, 600_000))
    (reading,) = meter.take_readings(at(0.5))
    assert (reading.sequence, reading.seconds, reading.billed_total_seconds) == (8, 1, 121)


# A timeline step: wait some microseconds, then do one thing.
step = st.tuples(
    st.integers(0, 2_500_000),
    st.sampled_from(
        ["doc_on", "doc_off", "client_on", "client_off", "flush", "sink_down", "lost_ack", "move"]
    ),
)


@settings(max_examples=200, deadline=None)
@given(timeline=st.lists(step, max_size=40), start_both=st.booleans())
def test_billed_seconds_equal_both_connected_time(  # R-M8, R-M10
    timeline: list[tuple[int, str]], start_both: bool
) -> None:
    asyncio.run(_billed_seconds_equal_both_connected_time(timeline, start_both))


async def _billed_seconds_equal_both_connected_time(
    timeline: list[tuple[int, str]], start_both: bool
) -> None:
    clock = [T0]
    ledger = Ledger()
    connected = set(BOTH if start_both else ())
    meter = Meter()
    meter.start_call("c", "p", T0, connected=frozenset(connected))
    flusher = MeterFlusher(meter, ledger, clock=lambda: clock[0])
    live_us = 0
    for wait_us, action in timeline:
        if len(connected) == 2:
            live_us += wait_us
        clock[0] += timedelta(microseconds=wait_us)
        now = clock[0]
        if action.endswith(("_on", "_off")):
            role = DOC if action.startswith("doc") else CLIENT
            on = action.endswith("_on")
            meter.set_connected("c", role, on, now)
            connected.add(role) if on else connected.discard(role)
        elif action in ("flush", "sink_down", "lost_ack"):
            ledger.fail_before = action == "sink_down"
            ledger.fail_after = action == "lost_ack"
            try:
                await flusher.flush()
            except SinkDown:
                assert flusher.pending  # R-M10: the batch is kept for the retry
        else:  # graceful move to another node: release, flush, resume from the ledger
            meter.release_call("c", now)
            assert await flusher.close() == ()
            resume = ledger.checkpoint("c")  # the closing reading is always recorded
            meter = Meter()
            meter.start_call("c", "p", now, connected=frozenset(connected), resume_from=resume)
            flusher = MeterFlusher(meter, ledger, clock=lambda: clock[0])
    meter.end_call("c", clock[0])
    assert await flusher.close() == ()
    assert ledger.billed("c") == live_us // 1_000_000
    sequences = sorted(seq for (_, seq) in ledger.entries)
    assert sequences == list(range(1, len(sequences) + 1))  # none lost, none doubled
    assert ledger.entries[("c", sequences[-1])].final


async def test_flusher_retries_the_same_batch_then_takes_new_readings() -> None:  # R-M10
    clock = [T0]
    meter = Meter()
    meter.start_call("a", "p", T0, connected=BOTH)
    meter.start_call("b", "p", T0, connected=BOTH)
    ledger = Ledger(fail_before=1)
    flusher = MeterFlusher(meter, ledger, clock=lambda: clock[0])
    clock[0] = at(3)
    with pytest.raises(SinkDown):
        await flusher.flush()
    kept = flusher.pending
    assert [(r.call_id, r.seconds) for r in kept] == [("a", 3), ("b", 3)]
    clock[0] = at(5)
    assert await flusher.flush() == 4  # the kept batch as it was, then the 2 s since
    assert ledger.billed("a") == ledger.billed("b") == 5
    assert ledger.batches == 3  # one statement per flush for all calls of the node


async def test_flusher_loop_flushes_often_and_finally_on_close() -> None:  # R-M10
    clock = [T0]
    meter = Meter()
    meter.start_call("c", "p", T0, connected=BOTH)
    ledger = Ledger()
    async with MeterFlusher(meter, ledger, clock=lambda: clock[0], interval=0.01) as flusher:
        clock[0] = at(2)
        for _ in range(200):
            if ledger.billed("c") == 2:
                break
            await asyncio.sleep(0.005)
        assert ledger.billed("c") == 2
        clock[0] = at(3.5)
        meter.end_call("c", clock[0])
        flusher.request_flush()
    assert ledger.billed("c") == 3
    assert any(r.final for r in ledger.entries.values())


async def test_close_reports_what_it_could_not_record() -> None:
    meter = Meter()
    meter.start_call("c", "p", T0, connected=BOTH)
    ledger = Ledger(fail_before=10)
    flusher = MeterFlusher(meter, ledger, clock=lambda: at(4), final_attempts=2)
    left = await flusher.close()
    assert [r.seconds for r in left] == [4]
