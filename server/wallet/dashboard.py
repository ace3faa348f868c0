"""What the admin minutes dashboard shows (R-A1): usage by day, clinician and call, live
calls, and the CSV exports. Every figure is read from the ledger, so it adds up to it.

Days are the practice's days (its time zone), not UTC's.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime

import msgspec

from server.db import Executor
from server.wallet.bundles import format_balance, pounds


class DayUsage(msgspec.Struct, frozen=True):
    day: date
    seconds: int
    calls: int


class ClinicianUsage(msgspec.Struct, frozen=True):
    clinician_id: uuid.UUID | None
    clinician_name: str | None
    seconds: int
    calls: int


class CallUsage(msgspec.Struct, frozen=True):
    call_id: uuid.UUID
    appointment_id: uuid.UUID
    clinician_id: uuid.UUID
    clinician_name: str
    state: str
    opened_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    seconds: int  # billed within the period
    client_name: str = ""  # whom the call was with (the dashboard names them)


class LiveCall(msgspec.Struct, frozen=True):
    call_id: uuid.UUID
    appointment_id: uuid.UUID
    clinician_id: uuid.UUID
    clinician_name: str
    state: str
    opened_at: datetime
    started_at: datetime | None
    billed_seconds: int
    expected_seconds: int
    client_name: str = ""


class LiveSnapshot(msgspec.Struct, frozen=True):
    now: datetime
    balance_seconds: int
    balance_display: str
    calls: list[LiveCall]


# Usage entries of the practice whose local day falls in [start, end].
_PERIOD = """
    SELECT e.*, (e.created_at AT TIME ZONE p.timezone)::date AS local_day
    FROM ledger_entries e JOIN practices p ON p.id = e.practice_id
    WHERE e.practice_id = $1 AND e.kind = 'usage'
      AND e.created_at >= ($2::date::timestamp AT TIME ZONE p.timezone)
      AND e.created_at < (($3::date + 1)::timestamp AT TIME ZONE p.timezone)
"""


async def usage_by_day(
    db: Executor, practice_id: uuid.UUID, start: date, end: date
) -> list[DayUsage]:
    rows = await db.fetch(
        f"""WITH period AS ({_PERIOD})
            SELECT d::date AS day, coalesce(-sum(p.seconds), 0) AS seconds,
                   count(DISTINCT p.call_id) AS calls
            FROM generate_series($2::date, $3::date, interval '1 day') AS d
            LEFT JOIN period p ON p.local_day = d::date
            GROUP BY d ORDER BY d""",
        practice_id,
        start,
        end,
    )
    return [DayUsage(r["day"], int(r["seconds"]), int(r["calls"])) for r in rows]


async def usage_by_clinician(
    db: Executor, practice_id: uuid.UUID, start: date, end: date
) -> list[ClinicianUsage]:
    rows = await db.fetch(
        f"""WITH period AS ({_PERIOD})
            SELECT p.clinician_id, u.name AS clinician_name, -sum(p.seconds) AS seconds,
                   count(DISTINCT p.call_id) AS calls
            FROM period p LEFT JOIN users u ON u.id = p.clinician_id
            GROUP BY p.clinician_id, u.name
            ORDER BY seconds DESC, clinician_name""",
        practice_id,
        start,
        end,
    )
    return [
        ClinicianUsage(r["clinician_id"], r["clinician_name"], int(r["seconds"]), int(r["calls"]))
        for r in rows
    ]


async def usage_by_call(
    db: Executor, practice_id: uuid.UUID, start: date, end: date, limit: int = 500
) -> list[CallUsage]:
    rows = await db.fetch(
        f"""WITH period AS ({_PERIOD}),
            per_call AS (SELECT call_id, -sum(seconds) AS seconds FROM period GROUP BY call_id)
            SELECT c.id AS call_id, c.appointment_id, c.clinician_id, u.name AS clinician_name,
                   c.state, c.opened_at, c.started_at, c.ended_at, pc.seconds,
                   cl.name AS client_name
            FROM per_call pc JOIN calls c ON c.id = pc.call_id JOIN users u ON u.id = c.clinician_id
            JOIN appointments a ON a.id = c.appointment_id JOIN clients cl ON cl.id = a.client_id
            ORDER BY c.opened_at DESC, c.id
            LIMIT $4""",
        practice_id,
        start,
        end,
        limit,
    )
    return [CallUsage(**{**dict(r), "seconds": int(r["seconds"])}) for r in rows]


async def live_snapshot(db: Executor, practice_id: uuid.UUID) -> LiveSnapshot:
    """Calls open now (waiting room or in progress), with the balance, for the ticking view."""
    head = await db.fetchrow(
        """SELECT now() AS now, coalesce((SELECT balance_seconds FROM wallets
                                          WHERE practice_id = $1), 0) AS balance""",
        practice_id,
    )
    assert head is not None
    now, balance = head["now"], head["balance"]
    rows = await db.fetch(
        """SELECT c.id AS call_id, c.appointment_id, c.clinician_id,
                  u.name AS clinician_name, c.state, c.opened_at, c.started_at,
                  c.billed_seconds, c.expected_seconds, cl.name AS client_name
           FROM calls c JOIN users u ON u.id = c.clinician_id
           JOIN appointments a ON a.id = c.appointment_id JOIN clients cl ON cl.id = a.client_id
           WHERE c.practice_id = $1 AND c.state IN ('waiting_room_open', 'in_progress')
           ORDER BY c.opened_at, c.id""",
        practice_id,
    )
    return LiveSnapshot(
        now,
        int(balance),
        format_balance(int(balance)),
        [LiveCall(**dict(r)) for r in rows],
    )


# --- CSV -----------------------------------------------------------------------------------

USAGE_CSV_HEADER = (
    "call_id",
    "appointment_id",
    "clinician",
    "state",
    "opened_at",
    "started_at",
    "ended_at",
    "billed_seconds",
    "billed_minutes",
)

PURCHASES_CSV_HEADER = (
    "purchase_id",
    "created_at",
    "requested_by",
    "bundle_minutes",
    "net",
    "vat",
    "total",
    "method",
    "provider",
    "provider_payment_id",
    "status",
    "credited_at",
    "reversed_at",
    "failure_reason",
    "ledger_seconds",
)


def usage_csv(calls: Sequence[CallUsage]) -> str:
    rows: list[Iterable[object]] = [USAGE_CSV_HEADER]
    for call in calls:
        rows.append(
            (
                call.call_id,
                call.appointment_id,
                call.clinician_name,
                call.state,
                _iso(call.opened_at),
                _iso(call.started_at),
                _iso(call.ended_at),
                call.seconds,
                _minutes(call.seconds),
            )
        )
    return _csv(rows)


async def purchases_csv(db: Executor, practice_id: uuid.UUID) -> str:
    records = await db.fetch(
        """SELECT m.id, m.created_at, u.name AS requested_by, m.bundle_minutes, m.net_pence,
                  m.vat_pence, m.gross_pence, m.method, m.provider, m.provider_payment_id,
                  m.status, m.credited_at, m.reversed_at, m.failure_reason,
                  coalesce((SELECT sum(e.seconds) FROM ledger_entries e
                            WHERE e.purchase_id = m.id), 0) AS ledger_seconds
           FROM minute_purchases m JOIN users u ON u.id = m.requested_by
           WHERE m.practice_id = $1 ORDER BY m.created_at, m.id""",
        practice_id,
    )
    rows: list[Iterable[object]] = [PURCHASES_CSV_HEADER]
    for r in records:
        rows.append(
            (
                r["id"],
                _iso(r["created_at"]),
                r["requested_by"],
                r["bundle_minutes"],
                pounds(r["net_pence"]),
                pounds(r["vat_pence"]),
                pounds(r["gross_pence"]),
                r["method"],
                r["provider"],
                r["provider_payment_id"] or "",
                r["status"],
                _iso(r["credited_at"]),
                _iso(r["reversed_at"]),
                r["failure_reason"] or "",
                int(r["ledger_seconds"]),
            )
        )
    return _csv(rows)


def _minutes(seconds: int) -> str:
    """Seconds as minutes with two decimals, in integers (no float rounding)."""
    hundredths = (seconds * 100 + 30) // 60
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _csv(rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell starting with these as a formula (CSV injection).
    if text and text[0] in "=+-@\t\r" and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
