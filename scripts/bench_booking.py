"""Benchmark: booking a 52-week video series vs booking one video appointment.

Each series booking writes, in one transaction, 52 appointments, 52 links and 53 messages
(the recurring confirmation plus 52 reminders; the client has an email address only), after
a clash check of all 52 occurrences. The baseline is a single video booking (1 appointment,
1 link, 2 messages), measured in the same run, interleaved with the series so both see the
same machine. Both go through ``server.diary.booking.book``, the function the API calls.

Without ``--database-url`` a private PostgreSQL is started (``server.embedded``); with one,
a scratch database is created on that server and dropped afterwards. Loopback or unix
socket only. Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from server import practices  # noqa: E402
from server.db import apply_migrations, dsn_with_database  # noqa: E402
from server.diary.booking import BookingRequest, book  # noqa: E402
from server.diary.recurrence import Frequency, Rule  # noqa: E402
from server.embedded import EmbeddedServices  # noqa: E402

WEEKS = 52
SLOTS_PER_CLINICIAN = 7 * 24  # one-hour slots in a week: weekly series never overlap


def log(message: str) -> None:
    print(f"[bench_booking {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Diary:
    """A practice with clinicians handed out so that no two bookings ever clash."""

    def __init__(self, pool: asyncpg.Pool, practice_id: uuid.UUID) -> None:
        self.pool = pool
        self.practice_id = practice_id
        self.client_id = uuid.UUID(int=0)
        self.type_id = uuid.UUID(int=0)
        self._clinicians: list[uuid.UUID] = []
        self._slot = SLOTS_PER_CLINICIAN
        # Next Monday 00:00 UTC, a week out: every reminder time is in the future.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.base = today + timedelta(days=7 + (7 - today.weekday()) % 7)

    async def setup(self) -> None:
        client = await practices.create_client(
            self.pool, self.practice_id, "Bench Client", email="bench@example.test"
        )
        video = await practices.create_appointment_type(
            self.pool, self.practice_id, "Video consultation", 50, True
        )
        self.client_id, self.type_id = client.id, video.id

    async def next_slot(self) -> tuple[uuid.UUID, datetime]:
        if self._slot >= SLOTS_PER_CLINICIAN:
            user = await practices.create_user(
                self.pool,
                self.practice_id,
                f"clinician-{uuid.uuid4().hex[:8]}@bench.test",
                "Dr Bench",
                "bench-password-1",
                ["clinician"],
            )
            self._clinicians.append(user.id)
            self._slot = 0
        slot = self._slot
        self._slot += 1
        return self._clinicians[-1], self.base + timedelta(hours=slot)

    async def timed_booking(self, series: bool) -> float:
        clinician, start = await self.next_slot()
        rule = (
            Rule(Frequency.WEEKLY, (start + timedelta(weeks=WEEKS - 1)).date()) if series else None
        )
        request = BookingRequest(clinician, self.client_id, self.type_id, start, rule)
        began = time.perf_counter()
        result = await book(self.pool, self.practice_id, None, request)
        elapsed = (time.perf_counter() - began) * 1000
        expected = (WEEKS, WEEKS + 1) if series else (1, 2)
        if (len(result.booked), result.messages_queued) != expected:
            raise RuntimeError(f"unexpected booking size: {result}")
        return elapsed


async def run(database_url: str, repeats: int, warmup: int, time_limit: float) -> dict[str, float]:
    await apply_migrations(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    assert pool is not None
    try:
        practice = await practices.create_practice(pool, "Bench Practice", phone="01632 960999")
        diary = Diary(pool, practice.id)
        await diary.setup()
        for _ in range(warmup):
            await diary.timed_booking(series=True)
            await diary.timed_booking(series=False)
        series_ms: list[float] = []
        single_ms: list[float] = []
        deadline = time.monotonic() + time_limit
        for index in range(repeats):
            series_ms.append(await diary.timed_booking(series=True))
            single_ms.append(await diary.timed_booking(series=False))
            if (index + 1) % 10 == 0:
                log(
                    f"{index + 1}/{repeats}: series p50 {statistics.median(series_ms):.1f} ms, "
                    f"single p50 {statistics.median(single_ms):.1f} ms"
                )
            if time.monotonic() > deadline:
                log(f"time limit reached after {index + 1} repeats")
                break
        rows = await pool.fetchrow(
            """SELECT (SELECT count(*) FROM appointments) AS appointments,
                      (SELECT count(*) FROM video_links) AS links,
                      (SELECT count(*) FROM outbox_messages) AS messages"""
        )
        assert rows is not None
        log(f"written: {dict(rows)}")
    finally:
        await pool.close()
    series_p50 = statistics.median(series_ms)
    single_p50 = statistics.median(single_ms)
    return {
        "repeats": len(series_ms),
        "series_appointments": WEEKS,
        "series_messages": WEEKS + 1,
        "series_ms_p50": round(series_p50, 2),
        "series_ms_p99": round(percentile(series_ms, 0.99), 2),
        "single_ms_p50": round(single_p50, 2),
        "single_ms_p99": round(percentile(single_ms, 0.99), 2),
        "series_vs_single_p50_ratio": round(series_p50 / single_p50, 2),
        "series_ms_per_appointment_p50": round(series_p50 / WEEKS, 3),
    }


async def with_scratch_database(
    admin_url: str, repeats: int, warmup: int, time_limit: float
) -> dict[str, float]:
    name = "bench_booking_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        return await run(dsn_with_database(admin_url, name), repeats, warmup, time_limit)
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server to use (a scratch database is created on it); "
        "default: start an embedded one",
    )
    parser.add_argument("--repeats", type=int, default=40, help="timed bookings of each kind")
    parser.add_argument("--warmup", type=int, default=3, help="untimed bookings of each kind")
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="stop the timed loop after this many s"
    )
    args = parser.parse_args()
    if args.database_url:
        figures = asyncio.run(
            with_scratch_database(args.database_url, args.repeats, args.warmup, args.time_limit)
        )
    else:
        with tempfile.TemporaryDirectory(prefix="bench_booking_") as folder:
            log("starting embedded PostgreSQL and Redis")
            with EmbeddedServices(Path(folder)) as services:
                figures = asyncio.run(
                    with_scratch_database(
                        services.database_url, args.repeats, args.warmup, args.time_limit
                    )
                )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
