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
cadence's own wake-ups cost, so it switches itself off, and on again when the rate
returns; it is re-judged every `check_interval_s` from the counts the legs' datagram taps
report (`add`, once per 16 datagrams). The decision is `wants_ticks` (pure).

It needs a loop that drains a socket in one poll: uvloop (libuv) reads up to 32 datagrams
per readiness; the standard asyncio loop reads one per socket per iteration, so there a
tick's pause would be paid once per queued datagram. On any other loop it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


def wants_ticks(
    datagrams: int, seconds: float, interval_s: float, min_datagrams_per_tick: float
) -> bool:
    """Does a rate of `datagrams` per `seconds` fill a tick of `interval_s` enough to pay?"""
    if seconds <= 0 or interval_s <= 0:
        return False
    return datagrams / seconds * interval_s >= min_datagrams_per_tick


def drains_sockets_per_poll(loop: asyncio.AbstractEventLoop) -> bool:
    """uvloop's loop: a socket's readiness is served by reading it until empty (up to 32)."""
    return type(loop).__module__.split(".")[0] == "uvloop"


class PollCadence:
    """The node's media poll cadence (see the module docstring); one per event loop."""

    def __init__(
        self,
        interval_s: float,
        *,
        min_datagrams_per_tick: float = 4.0,
        check_interval_s: float = 0.25,
    ) -> None:
        if not 0 <= interval_s <= 0.02:
            raise ValueError("the media poll interval must be 0 (off) to 20 ms")
        self.interval_s = interval_s
        self.min_datagrams_per_tick = min_datagrams_per_tick
        self.check_interval_s = check_interval_s
        self.datagrams = 0  # as reported by the taps, since start
        self.ticks = 0
        self.ticking = False
        self._last_tick_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, datagrams: int) -> None:
        """A tap read this many more datagrams."""
        self.datagrams += datagrams

    async def run(self) -> None:
        """Judge the rate every `check_interval_s` and tick while it pays (until cancelled)."""
        if self.interval_s <= 0:
            return
        self._loop = asyncio.get_running_loop()
        if not drains_sockets_per_poll(self._loop):
            log.info("media poll cadence off: %s reads one datagram per poll", type(self._loop))
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
        pause = self.interval_s - (time.monotonic() - self._last_tick_at)
        if pause > 0:
            # Nothing else to do this iteration: let datagrams gather for one poll.
            time.sleep(pause)
        self._last_tick_at = time.monotonic()
        self.ticks += 1
        assert self._loop is not None
        # Always one callback ready: the loop polls without blocking, right after this.
        self._loop.call_soon(self._tick)
