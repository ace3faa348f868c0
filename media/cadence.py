"""`PollCadence`: wake the event loop once per interval for media, not once per datagram.

On a lightly loaded node every datagram arrives alone: the event loop sleeps in epoll,
the kernel wakes it for one packet, and the loop's whole iteration (the wake-up, the poll,
uvloop's bookkeeping) is paid for that one packet. Measured on a 2-core machine, a node
forwarding 8 calls spent some 75 µs of CPU per forwarded packet; the same code at 40
calls, where the loop is always busy and each poll returns many datagrams, 39 µs. So
while media flows fast enough, the cadence makes the loop poll at most once per
`interval_s`: a callback at the end of each loop iteration sleeps out the rest of the
interval (never when the iteration itself took longer), and the next poll then returns
everything that arrived meanwhile in one go.

The price is latency: a packet waits at most one interval (on average half) before it is
read, so the interval must stay well inside the added-latency budget (+10 ms for video).
Below `min_datagrams_per_tick` datagrams per interval batching saves less than the
cadence's own wake-ups cost (at one call, some 300 datagrams a second, 2-4 per tick saved
nothing measurable and cost their latency), so it switches itself off, and on again when
the rate returns; it is re-judged every `check_interval_s` from the counts the legs' datagram taps
report (`add`, once per 16 datagrams). The decision is `wants_ticks` (pure).

A pause must never hold up other work: a coroutine that awaits twenty times (an offer
being answered, a request and its queries) needs twenty loop iterations, and a pause in
each would add twenty intervals. So the loop counts the callbacks scheduled on it
(`counting_loop_class`: `call_soon`, the way every task step and future callback is
queued), and a tick pauses only when nothing but itself was scheduled since the last one:
while anything else is pending the loop runs at full speed.

It needs such a counting loop, and one that drains a socket in one poll: uvloop (libuv)
reads up to 32 datagrams per readiness, while the standard asyncio loop reads one per
socket per iteration (there a pause would be paid once per queued datagram). On any other
loop it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def wants_ticks(
    datagrams: int, seconds: float, interval_s: float, min_datagrams_per_tick: float
) -> bool:
    """Does a rate of `datagrams` per `seconds` fill a tick of `interval_s` enough to pay?"""
    if seconds <= 0 or interval_s <= 0:
        return False
    return datagrams / seconds * interval_s >= min_datagrams_per_tick


def counting_loop_class(base: type[Any]) -> type[Any]:
    """`base` (an event loop class) counting the callbacks scheduled on it."""

    # Bound once: every future callback and task step passes here (no `super()` per call).
    base_call_soon = base.call_soon
    base_call_soon_threadsafe = base.call_soon_threadsafe

    class CountingLoop(base):  # type: ignore[misc]
        """Counts `call_soon` (and its thread-safe form): the cadence's sign of work."""

        callbacks_scheduled = 0

        def call_soon(self, callback: Any, *args: Any, context: Any = None) -> Any:
            self.callbacks_scheduled += 1
            return base_call_soon(self, callback, *args, context=context)

        def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
            self.callbacks_scheduled += 1
            return base_call_soon_threadsafe(self, callback, *args, context=context)

    CountingLoop.__name__ = CountingLoop.__qualname__ = f"Counting{base.__name__}"
    return CountingLoop


def supports_cadence(loop: asyncio.AbstractEventLoop) -> bool:
    """A counting uvloop loop: it drains a socket per poll, and shows pending work."""
    drains = any(cls.__module__.split(".")[0] == "uvloop" for cls in type(loop).__mro__)
    return drains and hasattr(loop, "callbacks_scheduled")


class PollCadence:
    """The node's media poll cadence (see the module docstring); one per event loop."""

    def __init__(
        self,
        interval_s: float,
        *,
        min_datagrams_per_tick: float = 6.0,
        check_interval_s: float = 0.25,
    ) -> None:
        if not 0 <= interval_s <= 0.02:
            raise ValueError("the media poll interval must be 0 (off) to 20 ms")
        self.interval_s = interval_s
        self.min_datagrams_per_tick = min_datagrams_per_tick
        self.check_interval_s = check_interval_s
        self.datagrams = 0  # as reported by the taps, since start
        self.ticks = 0
        self.paused_s = 0.0  # time the loop slept in ticks, since start
        self.ticking = False
        self._last_tick_at = 0.0
        self._scheduled_seen = 0
        self._loop: Any = None

    def add(self, datagrams: int) -> None:
        """A tap read this many more datagrams."""
        self.datagrams += datagrams

    async def run(self) -> None:
        """Judge the rate every `check_interval_s` and tick while it pays (until cancelled)."""
        if self.interval_s <= 0:
            return
        self._loop = asyncio.get_running_loop()
        if not supports_cadence(self._loop):
            log.info("media poll cadence off on %s (needs a counting uvloop)", type(self._loop))
            return
        counted, counted_at = self.datagrams, time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.check_interval_s)
                now = time.monotonic()
                wanted = wants_ticks(
                    self.datagrams - counted,
                    now - counted_at,
                    self.interval_s,
                    self.min_datagrams_per_tick,
                )
                counted, counted_at = self.datagrams, now
                if wanted and not self.ticking:
                    self.ticking = True
                    self._last_tick_at = now
                    self._loop.call_soon(self._tick)
                elif not wanted:
                    self.ticking = False  # the running chain ends at its next tick
        finally:
            self.ticking = False

    def _tick(self) -> None:
        if not self.ticking:
            return
        loop = self._loop
        if loop.callbacks_scheduled == self._scheduled_seen:
            # Nothing else was scheduled since the last tick: let datagrams gather.
            pause = self.interval_s - (time.monotonic() - self._last_tick_at)
            if pause > 0:
                time.sleep(pause)
                self.paused_s += pause
        self._last_tick_at = time.monotonic()
        self.ticks += 1
        # Always one callback ready: the loop polls without blocking, right after this.
        loop.call_soon(self._tick)
        self._scheduled_seen = loop.callbacks_scheduled
