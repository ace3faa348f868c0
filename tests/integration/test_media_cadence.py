"""`PollCadence` on a real uvloop loop with a real UDP socket and a sender thread.

While datagrams arrive fast, the loop reads them in batches, once per interval, each
delayed by at most about one interval; when they stop, the cadence switches itself off and
the loop sleeps in its poll again (timers fire on time). Without the cadence every
datagram is read on its own (the control run). Each scenario runs its own uvloop loop, as
`videoconsult serve` does; on the standard asyncio loop the cadence stays off.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from media.cadence import PollCadence, counting_loop_class

INTERVAL_S = 0.010
RATE_PER_S = 2000  # about 6 calls' media
_STAMP = struct.Struct("!d")
_SENDER = """
import socket, struct, time
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start, sent = time.monotonic(), 0
while (now := time.monotonic()) - start < {seconds}:
    while sent < int((now - start) * {rate}):
        out.sendto(struct.pack("!d", 0.0) + bytes(200), ("127.0.0.1", {port}))
        sent += 1
    time.sleep(0.0005)
"""
T = TypeVar("T")


def on_counting_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on the loop `videoconsult serve` runs on."""
    with asyncio.Runner(loop_factory=counting_loop_class(uvloop.Loop)) as runner:
        return runner.run(main)


class Receiver(asyncio.DatagramProtocol):
    def __init__(self, cadence: PollCadence | None) -> None:
        self.cadence = cadence
        self.arrivals: list[tuple[float, float]] = []  # (sent at, read at)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.arrivals.append((_STAMP.unpack_from(data)[0], time.monotonic()))
        if self.cadence is not None:
            self.cadence.add(1)


def send_steadily(address: tuple[str, int], seconds: float, rate: int = RATE_PER_S) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic()) - start < seconds:
            due = int((now - start) * rate)
            while sent < due:
                out.sendto(_STAMP.pack(time.monotonic()) + bytes(200), address)
                sent += 1
            time.sleep(0.0005)


def reads_per_batch(arrivals: list[tuple[float, float]]) -> float:
    """Datagrams per batch: reads within 0.2 ms of the previous one are one poll's batch."""
    batches = 1 + sum(1 for (_, a), (_, b) in itertools.pairwise(arrivals) if b - a > 0.0002)
    return len(arrivals) / batches


async def receive_for(seconds: float, cadence: PollCadence | None) -> Receiver:
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(
        lambda: Receiver(cadence), local_addr=("127.0.0.1", 0)
    )
    try:
        address = transport.get_extra_info("sockname")[:2]
        await asyncio.to_thread(send_steadily, address, seconds)
        await asyncio.sleep(0.05)
    finally:
        transport.close()
    return receiver


def test_fast_media_is_read_in_batches_at_most_an_interval_late() -> None:
    on_counting_uvloop(fast_media_is_read_in_batches())


async def fast_media_is_read_in_batches() -> None:
    cadence = PollCadence(INTERVAL_S, min_datagrams_per_tick=4, check_interval_s=0.05)
    task = asyncio.create_task(cadence.run())
    try:
        receiver = await receive_for(1.5, cadence)
        assert cadence.ticks > 50
        # Skip the first check interval (not yet ticking).
        steady = receiver.arrivals[len(receiver.arrivals) // 4 :]
        assert reads_per_batch(steady) >= 5
        delays = sorted(read - sent for sent, read in steady)
        assert statistics.median(delays) <= INTERVAL_S
        assert delays[int(len(delays) * 0.95)] <= INTERVAL_S + 0.015
        # The media stopped: the cadence stops ticking, the loop blocks in its poll again.
        await asyncio.sleep(0.2)
        assert not cadence.ticking
        ticks = cadence.ticks
        started = time.monotonic()
        await asyncio.sleep(0.05)
        assert cadence.ticks <= ticks + 1
        assert time.monotonic() - started < 0.05 + INTERVAL_S
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not cadence.ticking


def test_without_the_cadence_each_datagram_is_read_on_its_own() -> None:
    receiver = on_counting_uvloop(receive_for(0.5, None))
    assert reads_per_batch(receiver.arrivals) < 2


def test_a_coroutine_awaiting_many_times_is_not_paused_at_each_step() -> None:
    on_counting_uvloop(awaits_run_at_full_speed())


async def awaits_run_at_full_speed() -> None:
    # An offer being answered, a request and its queries: many loop iterations in a row,
    # while media flows (a sender thread; its datagrams schedule no callbacks).
    cadence = PollCadence(INTERVAL_S, min_datagrams_per_tick=4, check_interval_s=0.05)
    task = asyncio.create_task(cadence.run())
    media = asyncio.create_task(receive_for(1.0, cadence))
    try:
        await asyncio.sleep(0.3)
        assert cadence.ticking
        started = time.monotonic()
        for _ in range(200):
            await asyncio.sleep(0)
        # Paused at each step, 200 steps would take 2 s.
        assert time.monotonic() - started < 20 * INTERVAL_S
        await media
    finally:
        task.cancel()
        await asyncio.gather(task, media, return_exceptions=True)


def test_on_plain_uvloop_it_stays_off() -> None:
    # Without the callback count it cannot tell pending work from idleness.
    uvloop.run(stays_off())


async def test_on_the_standard_asyncio_loop_it_stays_off() -> None:
    await stays_off()


async def stays_off() -> None:
    cadence = PollCadence(INTERVAL_S, min_datagrams_per_tick=1, check_interval_s=0.02)
    task = asyncio.create_task(cadence.run())
    cadence.add(10_000)
    await asyncio.sleep(0.1)
    assert task.done() and not cadence.ticking and cadence.ticks == 0


def test_a_busy_loop_is_never_put_to_sleep() -> None:
    on_counting_uvloop(a_busy_loop_is_never_put_to_sleep())


async def a_busy_loop_is_never_put_to_sleep() -> None:
    # Every iteration takes longer than the interval (1,000 datagrams a second, each
    # hogging the loop for 2 ms and scheduling nothing): the cadence must not add pauses.
    # Its own rate checks (timers, so callbacks) are rare: they would excuse a pause anyway.
    cadence = PollCadence(INTERVAL_S, min_datagrams_per_tick=1, check_interval_s=0.15)
    task = asyncio.create_task(cadence.run())

    class Hog(Receiver):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            cadence.add(100)
            hog_until = time.perf_counter() + 0.002
            while time.perf_counter() < hog_until:
                pass

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Hog(None), local_addr=("127.0.0.1", 0)
    )
    # From another process: a thread here would wait for the GIL the hog holds.
    port = transport.get_extra_info("sockname")[1]
    sender = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for at the end
        [sys.executable, "-c", _SENDER.format(port=port, rate=1000, seconds=3)]
    )
    try:
        # The sender's interpreter may take a while to start on a loaded machine: from its
        # first datagrams on, two rate checks (0.3 s) turn the cadence on.
        deadline = time.monotonic() + 2.5
        while not cadence.ticking and time.monotonic() < deadline:  # noqa: ASYNC110 - a flag
            await asyncio.sleep(0.05)
        assert cadence.ticking
        ticks, paused = cadence.ticks, cadence.paused_s
        await asyncio.sleep(0.3)
        # Ticking all along, and next to no pause: the iterations outlasted the interval.
        assert cadence.ticks > ticks
        assert cadence.paused_s - paused <= INTERVAL_S
    finally:
        sender.wait(timeout=10)
        transport.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
