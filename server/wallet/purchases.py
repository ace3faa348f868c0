"""Purchases of minute bundles: the records, and the one place their state changes.

    pending ──► awaiting_approval ──► credited ──► reversed
       │               │                 ▲
       └───────────────┴──► failed       └── (pending/awaiting_approval ──► credited)

``apply_outcome`` moves a purchase by what the provider said, under ``SELECT ... FOR
UPDATE``, in the caller's transaction; crediting and reversing write the ledger entry in
that same transaction. Whatever the order or number of callbacks, returns and retries,
a purchase is credited at most once and reversed at most once — and the ledger's unique
index on (purchase_id, kind) backs that up should this code ever be bypassed.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from server.db import Executor
from server.wallet import ledger
from server.wallet.bundles import BundlePrice
from server.wallet.payments.provider import OutcomeKind, ProviderOutcome
from server.webhooks.events import emit_event

log = logging.getLogger(__name__)


class PurchaseStatus(enum.StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    CREDITED = "credited"
    FAILED = "failed"
    REVERSED = "reversed"


UNSETTLED = frozenset({PurchaseStatus.PENDING, PurchaseStatus.AWAITING_APPROVAL})

# (current status, provider outcome) -> next status. Pairs not listed change nothing: a late
# or repeated callback (confirmed after reversed, failed after failed) is acknowledged and
# ignored. "approved" needs a capture first and is handled by the flow, not here.
_NEXT: dict[tuple[PurchaseStatus, OutcomeKind], PurchaseStatus] = {
    (PurchaseStatus.PENDING, "awaiting_approval"): PurchaseStatus.AWAITING_APPROVAL,
    (PurchaseStatus.PENDING, "confirmed"): PurchaseStatus.CREDITED,
    (PurchaseStatus.PENDING, "failed"): PurchaseStatus.FAILED,
    (PurchaseStatus.PENDING, "reversed"): PurchaseStatus.FAILED,
    (PurchaseStatus.AWAITING_APPROVAL, "confirmed"): PurchaseStatus.CREDITED,
    (PurchaseStatus.AWAITING_APPROVAL, "failed"): PurchaseStatus.FAILED,
    (PurchaseStatus.AWAITING_APPROVAL, "reversed"): PurchaseStatus.FAILED,
    (PurchaseStatus.CREDITED, "failed"): PurchaseStatus.REVERSED,
    (PurchaseStatus.CREDITED, "reversed"): PurchaseStatus.REVERSED,
}


class Purchase(msgspec.Struct, frozen=True):
    id: uuid.UUID
    practice_id: uuid.UUID
    requested_by: uuid.UUID
    idempotency_key: str
    bundle_minutes: int
    seconds: int
    vat_rate_bp: int
    net_pence: int
    vat_pence: int
    gross_pence: int
    method: str
    provider: str
    provider_payment_id: str | None
    provider_capture_id: str | None
    provider_status: str | None
    approve_url: str | None
    status: str
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    credited_at: datetime | None
    reversed_at: datetime | None


class IdempotencyKeyReused(Exception):
    """The key was used for a different bundle: a client bug, not a double click."""


@dataclass(frozen=True)
class Transition:
    purchase: Purchase
    changed: bool
    ledger_seconds: int  # what this transition moved the balance by (0 if nothing)


_COLUMNS = (
    "id, practice_id, requested_by, idempotency_key, bundle_minutes, seconds, vat_rate_bp, "
    "net_pence, vat_pence, gross_pence, method, provider, provider_payment_id, "
    "provider_capture_id, provider_status, approve_url, status, failure_reason, created_at, "
    "updated_at, credited_at, reversed_at"
)


def _purchase(row: asyncpg.Record) -> Purchase:
    return Purchase(**dict(row))


async def create_purchase(
    db: Executor,
    practice_id: uuid.UUID,
    requested_by: uuid.UUID,
    idempotency_key: str,
    price: BundlePrice,
    method: str,
    provider: str,
) -> tuple[Purchase, bool]:
    """The purchase for this attempt, and whether this call created it.

    A second request with the same key (a double click, a browser retry) gets the first
    attempt back; the unique index decides the race, not a read-then-write.
    """
    row = await db.fetchrow(
        f"""INSERT INTO minute_purchases
                (practice_id, requested_by, idempotency_key, bundle_minutes, seconds,
                 vat_rate_bp, net_pence, vat_pence, gross_pence, method, provider)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (practice_id, idempotency_key) DO NOTHING
            RETURNING {_COLUMNS}""",
        practice_id,
        requested_by,
        idempotency_key,
        price.minutes,
        price.seconds,
        price.vat_rate_bp,
        price.net_pence,
        price.vat_pence,
        price.gross_pence,
        method,
        provider,
    )
    if row is not None:
        return _purchase(row), True
    existing = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM minute_purchases WHERE practice_id = $1 AND idempotency_key = $2",
        practice_id,
        idempotency_key,
    )
    assert existing is not None
    purchase = _purchase(existing)
    if purchase.bundle_minutes != price.minutes:
        raise IdempotencyKeyReused(idempotency_key)
    return purchase, False


async def get_purchase(
    db: Executor, practice_id: uuid.UUID, purchase_id: uuid.UUID
) -> Purchase | None:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM minute_purchases WHERE id = $1 AND practice_id = $2",
        purchase_id,
        practice_id,
    )
    return _purchase(row) if row else None


async def read_purchase(db: Executor, purchase_id: uuid.UUID) -> Purchase:
    """A purchase by id alone, for code that already knows whose it is."""
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM minute_purchases WHERE id = $1", purchase_id)
    if row is None:
        raise LookupError(f"purchase {purchase_id} not found")
    return _purchase(row)


async def list_purchases(db: Executor, practice_id: uuid.UUID, limit: int = 100) -> list[Purchase]:
    rows = await db.fetch(
        f"""SELECT {_COLUMNS} FROM minute_purchases WHERE practice_id = $1
            ORDER BY created_at DESC, id LIMIT $2""",
        practice_id,
        limit,
    )
    return [_purchase(row) for row in rows]


async def find_for_provider(
    db: Executor,
    provider: str,
    *,
    purchase_id: uuid.UUID | None = None,
    payment_id: str | None = None,
    capture_id: str | None = None,
) -> Purchase | None:
    """A provider's purchase by our id (PayPal custom_id), its payment id or capture id.

    For provider callbacks, which are not scoped by a logged-in practice; the caller has
    verified the callback's signature first.
    """
    if purchase_id is not None:
        where, value = "id = $2", str(purchase_id)
    elif payment_id is not None:
        where, value = "provider_payment_id = $2", payment_id
    elif capture_id is not None:
        where, value = "provider_capture_id = $2", capture_id
    else:
        return None
    cast = "::uuid" if purchase_id is not None else ""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM minute_purchases WHERE provider = $1 AND {where}{cast}",
        provider,
        value,
    )
    return _purchase(row) if row else None


async def unsettled_purchases(
    db: Executor, older_than_seconds: float, limit: int = 50
) -> list[Purchase]:
    rows = await db.fetch(
        f"""SELECT {_COLUMNS} FROM minute_purchases
            WHERE status IN ('pending', 'awaiting_approval')
              AND updated_at < now() - make_interval(secs => $1)
            ORDER BY created_at LIMIT $2""",
        older_than_seconds,
        limit,
    )
    return [_purchase(row) for row in rows]


async def apply_outcome(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    purchase_id: uuid.UUID,
    outcome: ProviderOutcome,
) -> Transition:
    """Move the purchase by the provider's outcome; call inside a transaction.

    Provider references (payment id, capture id, approve URL) are recorded once and never
    overwritten by a different value: a callback naming another payment is refused.
    """
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM minute_purchases WHERE id = $1 FOR UPDATE", purchase_id
    )
    if row is None:
        raise LookupError(f"purchase {purchase_id} not found")
    current = _purchase(row)
    _check_references(current, outcome)
    status = PurchaseStatus(current.status)
    next_status = _NEXT.get((status, outcome.kind))
    if (
        next_status is PurchaseStatus.CREDITED
        and outcome.amount_pence is not None
        and outcome.amount_pence != current.gross_pence
    ):
        # Never credit minutes for a payment of another amount than the bundle's price.
        log.error(
            "purchase %s: provider took %s pence, bundle costs %s; not credited",
            current.id,
            outcome.amount_pence,
            current.gross_pence,
        )
        next_status = PurchaseStatus.FAILED if status in UNSETTLED else None
        outcome = ProviderOutcome(
            "failed", outcome.provider_status, reason="amount does not match the bundle price"
        )

    moved = 0
    if next_status is PurchaseStatus.CREDITED:
        await ledger.post_entry(
            conn, current.practice_id, "purchase", current.seconds, purchase_id=current.id
        )
        moved = current.seconds
        await emit_event(
            conn,
            current.practice_id,
            "minutes.purchased",
            {
                "purchase_id": str(current.id),
                "minutes": current.bundle_minutes,
                "gross_pence": current.gross_pence,
                "method": current.method,
            },
        )
    elif next_status is PurchaseStatus.REVERSED:
        await ledger.post_entry(
            conn,
            current.practice_id,
            "reversal",
            -current.seconds,
            purchase_id=current.id,
            note=outcome.reason,
        )
        moved = -current.seconds

    # A late or repeated callback that changes nothing must not rewrite the history either.
    record = next_status is not None or status in UNSETTLED
    updated = await conn.fetchrow(
        f"""UPDATE minute_purchases SET
                status = coalesce($2, status),
                provider_payment_id = coalesce(provider_payment_id, $3),
                provider_capture_id = coalesce(provider_capture_id, $4),
                approve_url = coalesce($5, approve_url),
                provider_status = coalesce($6, provider_status),
                failure_reason = CASE WHEN $2 IN ('failed', 'reversed') THEN $7
                                      ELSE failure_reason END,
                credited_at = CASE WHEN $2 = 'credited' THEN now() ELSE credited_at END,
                reversed_at = CASE WHEN $2 = 'reversed' THEN now() ELSE reversed_at END,
                updated_at = now()
            WHERE id = $1
            RETURNING {_COLUMNS}""",
        current.id,
        next_status.value if next_status else None,
        outcome.payment_id,
        outcome.capture_id,
        outcome.approve_url if record else None,
        outcome.provider_status if record else None,
        outcome.reason,
    )
    assert updated is not None
    return Transition(_purchase(updated), next_status is not None, moved)


class ReferenceMismatch(Exception):
    """A provider answer names a different payment than the one this purchase holds."""


def _check_references(current: Purchase, outcome: ProviderOutcome) -> None:
    for held, told in (
        (current.provider_payment_id, outcome.payment_id),
        (current.provider_capture_id, outcome.capture_id),
    ):
        if held is not None and told is not None and held != told:
            raise ReferenceMismatch(f"purchase {current.id} holds {held}, provider said {told}")


async def mark_failed(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    purchase_id: uuid.UUID,
    reason: str,
    provider_status: str = "refused",
) -> Transition:
    """The provider refused the request outright (or the payer cancelled at PayPal)."""
    return await apply_outcome(
        conn, purchase_id, ProviderOutcome("failed", provider_status, reason=reason)
    )
