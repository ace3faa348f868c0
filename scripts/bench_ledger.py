"""Benchmark: recording usage for many live calls in ONE statement vs one statement per call.

Every round hands the ledger one meter reading per live call (what a node's flusher does
every second or two), first as a single batch (``record_usage`` with all readings: one SQL
statement), then one ``record_usage`` call per reading (one statement per call), against the
same real PostgreSQL in the same run, alternating which goes first. Prints progress on
stderr and, as its last stdout line, one JSON object of figures.

    python scripts/bench_ledger.py                 # embedded PostgreSQL in a temp folder
    python scripts/bench_ledger.py --database-url postgresql://...   # an existing server
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
from dataclasses import dataclass
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.db import apply_migrations, dsn_with_database
from server.embedded import EmbeddedServices
from server.wallet.ledger import ledger_mismatches
from server.wallet.usage import record_usage


@dataclass(frozen=True)
class Reading:
    call_id: uuid.UUID
    practice_id: uuid.UUID
    sequence: int
    seconds: int


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _seed(
    pool: asyncpg.Pool, calls: int, practices: int
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Practices with one clinician each, and ``calls`` calls in progress spread over them."""
    out: list[tuple[uuid.UUID, uuid.UUID]] = []
    async with pool.acquire() as conn, conn.transaction():
        owners = []
        for n in range(practices):
            practice = await conn.fetchval(
                "INSERT INTO practices (name) VALUES ($1) RETURNING id", f"Bench practice {n}"
            )
            clinician = await conn.fetchval(
                """INSERT INTO users (practice_id, email, name, password_hash, roles)
                   VALUES ($1, $2, 'Bench clinician', 'x', '{clinician}') RETURNING id""",
                practice,
                f"bench-{n}-{uuid.uuid4().hex[:6]}@example.test",
            )
            client = await conn.fetchval(
                "INSERT INTO clients (practice_id, name) VALUES ($1, 'Bench client') RETURNING id",
                practice,
            )
            kind = await conn.fetchval(
                """INSERT INTO appointment_types (practice_id, name, duration_minutes, is_video)
                   VALUES ($1, 'Video', 50, true) RETURNING id""",
                practice,
            )
            owners.append((practice, clinician, client, kind))
        for n in range(calls):
            practice, clinician, client, kind = owners[n % practices]
            appointment = uuid.uuid4()
            await conn.execute(
                """INSERT INTO appointments (id, practice_id, clinician_id, client_id, type_id,
                                             starts_at, ends_at)
                   VALUES ($1, $2, $3, $4, $5, now(), now() + interval '50 minutes')""",
                appointment,
                practice,
                clinician,
                client,
                kind,
            )
            call = await conn.fetchval(
                """INSERT INTO calls (practice_id, appointment_id, clinician_id, state,
                                      expected_seconds, started_at)
                   VALUES ($1, $2, $3, 'in_progress', 3000, now()) RETURNING id""",
                practice,
                appointment,
                clinician,
            )
            out.append((call, practice))
    return out


async def _run(
    database_url: str, calls: int, rounds: int, practices: int, budget: float
) -> dict[str, object]:
    bench_db = f"vc_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE DATABASE {bench_db}")
    await admin.close()
    url = dsn_with_database(database_url, bench_db)
    try:
        await apply_migrations(url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        assert pool is not None
        try:
            _log(f"seeding {calls} live calls in {practices} practices ...")
            live = await _seed(pool, calls, practices)
            sequence = 0
            batched: list[float] = []
            per_call: list[float] = []
            started = time.monotonic()
            for round_no in range(rounds):
                if time.monotonic() - started > budget:
                    _log(f"time budget of {budget:g} s reached after {round_no} rounds")
                    break
                order = ("batched", "per_call") if round_no % 2 == 0 else ("per_call", "batched")
                for mode in order:
                    sequence += 1
                    readings = [Reading(c, p, sequence, 1 + (sequence % 2)) for c, p in live]
                    t0 = time.perf_counter()
                    if mode == "batched":
                        result = await record_usage(pool, readings)
                        assert result.recorded == calls
                        batched.append(time.perf_counter() - t0)
                    else:
                        for reading in readings:
                            await record_usage(pool, [reading])
                        per_call.append(time.perf_counter() - t0)
                _log(
                    f"round {round_no + 1}/{rounds}: one statement {batched[-1] * 1000:.1f} ms, "
                    f"one per call {per_call[-1] * 1000:.1f} ms"
                )
            mismatches = await ledger_mismatches(pool)
            entries = await pool.fetchval("SELECT count(*) FROM ledger_entries")
        finally:
            await pool.close()
    finally:
        admin = await asyncpg.connect(database_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {bench_db} WITH (FORCE)")
        await admin.close()
    batched_p50 = statistics.median(batched)
    per_call_p50 = statistics.median(per_call)
    return {
        "live_calls": calls,
        "rounds": len(batched),
        "batched_rows_per_s": round(calls / batched_p50),
        "per_call_rows_per_s": round(calls / per_call_p50),
        "batched_flush_ms_p50": round(batched_p50 * 1000, 1),
        "per_call_flush_ms_p50": round(per_call_p50 * 1000, 1),
        "speedup_ratio": round(per_call_p50 / batched_p50, 1),
        "ledger_entries": int(entries),
        "ledger_mismatches": len(mismatches),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", help="PostgreSQL server URL (default: embedded, in a temp folder)"
    )
    parser.add_argument(
        "--calls", type=int, default=1000, help="live calls per flush (default 1000)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="flushes of each kind (default 6)")
    parser.add_argument("--practices", type=int, default=50, help="practices the calls belong to")
    parser.add_argument(
        "--max-seconds", type=float, default=120, help="stop starting rounds after this"
    )
    args = parser.parse_args()
    if args.calls < 1 or args.rounds < 1 or args.practices < 1:
        parser.error("--calls, --rounds and --practices must be at least 1")
    if args.database_url:
        figures = asyncio.run(
            _run(args.database_url, args.calls, args.rounds, args.practices, args.max_seconds)
        )
    else:
        with (
            tempfile.TemporaryDirectory(prefix="vc-bench-") as folder,
            EmbeddedServices(Path(folder)) as services,
        ):
            _log("embedded PostgreSQL started")
            figures = asyncio.run(
                _run(
                    services.database_url, args.calls, args.rounds, args.practices, args.max_seconds
                )
            )
    print(json.dumps(figures), flush=True)
    return 0 if figures["ledger_mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
