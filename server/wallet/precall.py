"""The pre-call check run by "Switch to Video" before the waiting room opens (R-M7).

    balance <= 0                          -> blocked (a site admin is offered the bundles)
    0 < available < appointment length    -> warn_insufficient (may go on)
    otherwise                             -> ok

"available" is the balance less what calls *in progress* in the practice still expect to
use (their expected length less what they have billed), so two clinicians cannot both
count the same minutes; an open waiting room with nobody admitted commits nothing (R-M7).
A practice whose balance is positive but fully committed gets a warning, not a refusal:
the seed refuses only a balance of zero or below. The warning speaks in minutes: the
balance, what live calls hold, and the appointment's length.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Literal

import msgspec

from server.db import Executor
from server.wallet.bundles import BundlePrice, format_balance, price_list

PrecallOutcome = Literal["ok", "warn_insufficient", "blocked"]

FUNDS_EXHAUSTED = (
    "Video minutes are exhausted. Please ask a site administrator to buy more minutes "
    "before starting a video consultation."
)


class PrecallResult(msgspec.Struct, frozen=True):
    outcome: PrecallOutcome
    appointment_seconds: int
    balance_seconds: int
    committed_seconds: int  # still expected by calls in progress in the practice
    available_seconds: int  # balance - committed
    needed_seconds: int  # how much more this appointment needs (0 when ok)
    balance_display: str
    needed_minutes: int  # needed_seconds rounded up to whole minutes
    can_buy: bool
    message: str | None
    bundles: list[BundlePrice]  # only offered to a site admin, only when short


class AppointmentLength(msgspec.Struct, frozen=True):
    seconds: int
    is_video: bool
    cancelled: bool


_BALANCE_AND_COMMITTED = """
SELECT coalesce((SELECT balance_seconds FROM wallets WHERE practice_id = $1), 0) AS balance,
       coalesce((SELECT sum(greatest(expected_seconds - billed_seconds, 0)) FROM calls
                 WHERE practice_id = $1 AND state = 'in_progress'
                   AND ($2::uuid IS NULL OR appointment_id <> $2)), 0) AS committed,
       (SELECT vat_rate_bp FROM practices WHERE id = $1) AS vat_rate_bp
"""


async def precall_check(
    db: Executor,
    practice_id: uuid.UUID,
    appointment_seconds: int,
    roles: Collection[str],
    *,
    exclude_appointment_id: uuid.UUID | None = None,
) -> PrecallResult:
    """Decide whether a call of ``appointment_seconds`` may open, and what to show.

    ``exclude_appointment_id`` leaves that appointment's own open call (if any) out of the
    committed minutes, for a re-check of a call that is already open.
    """
    if appointment_seconds < 0:
        raise ValueError("appointment_seconds must not be negative")
    row = await db.fetchrow(_BALANCE_AND_COMMITTED, practice_id, exclude_appointment_id)
    assert row is not None
    balance = int(row["balance"])
    committed = int(row["committed"])
    vat_rate_bp = int(row["vat_rate_bp"]) if row["vat_rate_bp"] is not None else 2000
    available = balance - committed
    is_admin = "site_admin" in roles

    outcome: PrecallOutcome
    if balance <= 0:
        outcome = "blocked"
    elif available < appointment_seconds:
        outcome = "warn_insufficient"
    else:
        outcome = "ok"
    needed = 0 if outcome == "ok" else max(appointment_seconds - max(available, 0), 0)
    message = _message(outcome, is_admin, balance, committed, appointment_seconds)
    offer = is_admin and outcome != "ok"
    return PrecallResult(
        outcome=outcome,
        appointment_seconds=appointment_seconds,
        balance_seconds=balance,
        committed_seconds=committed,
        available_seconds=available,
        needed_seconds=needed,
        balance_display=format_balance(balance),
        needed_minutes=-(-needed // 60),
        can_buy=is_admin,
        message=message,
        bundles=price_list(vat_rate_bp) if offer else [],
    )


def _message(
    outcome: PrecallOutcome, is_admin: bool, balance: int, committed: int, length: int
) -> str | None:
    if outcome == "ok":
        return None
    if outcome == "blocked":
        if not is_admin:
            return FUNDS_EXHAUSTED
        return (
            f"Your video minutes balance is {format_balance(balance)}. Buy more minutes to "
            "start this video consultation."
        )
    held = f", of which calls in progress still hold {minutes(committed)}" if committed else ""
    text = (
        f"Your balance is {minutes(balance)}{held}, so "
        f"{minutes(max(balance - committed, 0))} are available, but this appointment is "
        f"{minutes(length)} long. You can start the call; if the minutes run out it carries "
        "on and the balance goes negative."
    )
    if is_admin:
        text += " You can buy more minutes now."
    return text


async def appointment_length(
    db: Executor, practice_id: uuid.UUID, appointment_id: uuid.UUID
) -> AppointmentLength | None:
    """The appointment's length in the diary (end - start), or None if not this practice's."""
    row = await db.fetchrow(
        """SELECT extract(epoch FROM a.ends_at - a.starts_at)::bigint AS seconds,
                  t.is_video, a.status = 'cancelled' AS cancelled
           FROM appointments a JOIN appointment_types t ON t.id = a.type_id
           WHERE a.id = $1 AND a.practice_id = $2""",
        appointment_id,
        practice_id,
    )
    if row is None:
        return None
    return AppointmentLength(int(row["seconds"]), bool(row["is_video"]), bool(row["cancelled"]))


def minutes(seconds: int) -> str:
    """Whole minutes for the warning ("9 minutes"), rounded down: never more than there is."""
    whole = max(seconds, 0) // 60
    return "1 minute" if whole == 1 else f"{whole} minutes"
