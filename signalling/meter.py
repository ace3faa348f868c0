"""Per-second metering of live calls (R-M8..R-M10), and the flusher that records it.

Accounting is exact: time is kept in integer microseconds and whole seconds are billed as
they complete, the sub-second remainder carried to the next reading, so splitting a call
into readings never loses or adds a second. A second is billable only while the call is
in progress AND both clinician and client are connected (R-M8). The call is never cut off
(R-M9): the meter only counts.

Each reading has a per-call ``sequence`` (1, 2, 3, ...): the ledger records a reading at
most once, keyed by ``(call_id, sequence)``, so a retried batch cannot bill twice (R-M10).
A call taken over by another node resumes from a ``MeterCheckpoint`` of what was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self

from signalling.model import Role

log = logging.getLogger(__name__)

_US = 1_000_000


class UnknownCall(LookupError):
    """The meter is not metering this call (never started, or its final reading was taken)."""


@dataclass(frozen=True, slots=True)
class UsageReading:
    """Whole seconds billed for one call since its previous reading.

    ``billed_total_seconds`` and ``carried_microseconds`` are what a new owner needs to resume
    the call (``MeterCheckpoint``); ``final`` marks the last reading of an ended call.
    """

    call_id: str
    practice_id: str
    sequence: int
    seconds: int
    billed_total_seconds: int
    carried_microseconds: int
    final: bool
    at: datetime

    @property
    def checkpoint(self) -> MeterCheckpoint:
        return MeterCheckpoint(self.billed_total_seconds, self.sequence, self.carried_microseconds)


@dataclass(frozen=True, slots=True)
class MeterCheckpoint:
    """What the ledger holds for a call: seconds billed, last sequence, unbilled remainder."""

    billed_seconds: int = 0
    last_sequence: int = 0
    carried_microseconds: int = 0


@dataclass(slots=True)
class _CallMeter:
    practice_id: str
    accrued_us: int
    billed_seconds: int
    sequence: int
    connected: set[Role] = field(default_factory=set)
    billable_since: datetime | None = None
    ended: bool = False  # call over: the next reading is final
    released: bool = False  # handed to another node: the next reading closes it here

    def accrue(self, now: datetime) -> None:
        # A wall clock stepping back must neither un-bill time nor bill it twice.
        if self.billable_since is not None and now > self.billable_since:
            self.accrued_us += _microseconds(now - self.billable_since)
            self.billable_since = now

    def update_billable(self, now: datetime) -> None:
        self.accrue(now)
        billable = not (self.ended or self.released) and len(self.connected) == 2
        if billable and self.billable_since is None:
            self.billable_since = now
        elif not billable:
            self.billable_since = None


class Meter:
    """Billable time of every call this node owns. Not thread-safe: use from one event loop."""

    def __init__(self) -> None:
        self._calls: dict[str, _CallMeter] = {}

    def start_call(
        self,
        call_id: str,
        practice_id: str,
        now: datetime,
        connected: frozenset[Role] = frozenset(),
        resume_from: MeterCheckpoint | None = None,
    ) -> None:
        """Begin metering a call that went live, or resume one taken over (R-M10)."""
        if call_id in self._calls:
            raise ValueError(f"call {call_id} is already metered")
        checkpoint = resume_from or MeterCheckpoint()
        if not 0 <= checkpoint.carried_microseconds < _US:
            raise ValueError("carried_microseconds must be in [0, 1 s)")
        call = _CallMeter(
            practice_id=practice_id,
            accrued_us=checkpoint.billed_seconds * _US + checkpoint.carried_microseconds,
            billed_seconds=checkpoint.billed_seconds,
            sequence=checkpoint.last_sequence,
            connected=set(connected),
        )
        call.update_billable(now)
        self._calls[call_id] = call

    def set_connected(self, call_id: str, role: Role, connected: bool, now: datetime) -> None:
        call = self._live(call_id)
        if connected:
            call.connected.add(role)
        else:
            call.connected.discard(role)
        call.update_billable(now)

    def end_call(self, call_id: str, now: datetime) -> None:
        """Stop counting; the next ``take_readings`` returns the call's final reading."""
        call = self._live(call_id)
        call.ended = True
        call.update_billable(now)

    def release_call(self, call_id: str, now: datetime) -> None:
        """Stop metering here because another node takes the call over (graceful move).

        The next ``take_readings`` returns a closing reading, even of zero seconds, whose
        ``checkpoint`` (with the sub-second remainder) the new owner resumes from (R-M10).
        """
        call = self._live(call_id)
        call.released = True
        call.update_billable(now)

    @property
    def call_ids(self) -> list[str]:
        return list(self._calls)

    def take_readings(self, now: datetime) -> list[UsageReading]:
        """Seconds billed since the last readings, one reading per call that has any.

        Ended and released calls get a last reading (even of zero seconds) and are
        forgotten. Once returned, a reading is the caller's to record: the meter will not
        return it again.
        """
        readings: list[UsageReading] = []
        for call_id, call in list(self._calls.items()):
            call.accrue(now)
            seconds = call.accrued_us // _US - call.billed_seconds
            closing = call.ended or call.released
            if seconds == 0 and not closing:
                continue
            call.billed_seconds += seconds
            call.sequence += 1
            readings.append(
                UsageReading(
                    call_id=call_id,
                    practice_id=call.practice_id,
                    sequence=call.sequence,
                    seconds=seconds,
                    billed_total_seconds=call.billed_seconds,
                    carried_microseconds=call.accrued_us - call.billed_seconds * _US,
                    final=call.ended,
                    at=now,
                )
            )
            if closing:
                del self._calls[call_id]
        return readings

    def billable_seconds(self, call_id: str, now: datetime) -> int:
        """Whole seconds billable so far (recorded or not), for a ticking display."""
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCall(call_id)
        running = call.billable_since
        extra = max(0, _microseconds(now - running)) if running is not None else 0
        return (call.accrued_us + extra) // _US

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def _live(self, call_id: str) -> _CallMeter:
        call = self._calls.get(call_id)
        if call is None or call.ended or call.released:
            raise UnknownCall(call_id)
        return call


def _microseconds(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


# --- flushing to the ledger -------------------------------------------------------------


class UsageSink(Protocol):
    """Records readings in the ledger: one call per flush, for all calls of the node.

    Must be idempotent per ``(call_id, sequence)``: a batch may be retried after a failure
    whose outcome was unknown (e.g. the commit succeeded but the reply was lost).
    """

    async def record_usage(self, readings: Sequence[UsageReading]) -> None: ...


class MeterFlusher:
    """Every ``interval`` seconds (<= 2), hands the meter's new readings to the sink.

    A batch the sink refused is kept and retried as it is, same sequences, before any new
    readings are taken; meanwhile the meter keeps counting, so an outage delays seconds but
    never loses them. Use as ``async with MeterFlusher(...)``: leaving does a final flush.
    """

    def __init__(
        self,
        meter: Meter,
        sink: UsageSink,
        clock: Callable[[], datetime],
        interval: float = 1.0,
        final_attempts: int = 3,
    ) -> None:
        if not 0 < interval <= 2:
            raise ValueError("interval must be in (0, 2] seconds")
        self._meter = meter
        self._sink = sink
        self._clock = clock
        self._interval = interval
        self._final_attempts = final_attempts
        self._pending: list[UsageReading] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pending(self) -> Sequence[UsageReading]:
        """Readings taken from the meter that the sink has not yet accepted."""
        return tuple(self._pending)

    async def flush(self) -> int:
        """Record everything billed up to now; returns how many readings were recorded.

        On a sink failure the exception propagates and the unrecorded batch is kept.
        """
        recorded = 0
        async with self._lock:
            for _ in range(2):  # the batch kept from a failure first, then fresh readings
                if not self._pending:
                    self._pending = self._meter.take_readings(self._clock())
                if not self._pending:
                    break
                await self._sink.record_usage(tuple(self._pending))
                recorded += len(self._pending)
                self._pending = []
        return recorded

    def request_flush(self) -> None:
        """Flush soon, without waiting for the interval (e.g. a call just ended)."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self.flush()
            except Exception:
                log.warning(
                    "usage flush failed; %d readings kept", len(self._pending), exc_info=True
                )

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.run(), name="meter-flusher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> Sequence[UsageReading]:
        """Stop the loop and flush what is left. Returns readings still unrecorded, if any."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for attempt in range(1, self._final_attempts + 1):
            try:
                await self.flush()
                break
            except Exception:
                log.warning("final usage flush failed (attempt %d)", attempt, exc_info=True)
        if self._pending:
            log.error("%d usage readings could not be recorded", len(self._pending))
        return self.pending
