"""Webhook endpoints, pending deliveries and the delivery log (tables of 008_webhooks.sql).

Deliveries follow the outbox's claim / send / record protocol (server/diary/outbox.py): a
claim locks due rows with SKIP LOCKED and gives them a lease and a claim token, and the
outcome is recorded only while the token still matches, so two workers never deliver the
same event at once.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from server.db import Executor


class Endpoint(msgspec.Struct, frozen=True):
    url: str
    enabled: bool
    secret_salt: str
    updated_at: datetime


@dataclass(frozen=True)
class ClaimedDelivery:
    event_id: uuid.UUID
    practice_id: uuid.UUID
    event_type: str
    created_at: datetime
    payload: str  # the event's data, JSON text
    url: str
    secret_salt: str
    attempts: int  # including this one
    claim_token: uuid.UUID


class DeliveryLogEntry(msgspec.Struct, frozen=True):
    event_id: uuid.UUID
    webhook_id: str
    type: str
    created_at: datetime
    status: str  # pending, delivered, failed, or not_sent (no endpoint when it happened)
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


def new_salt() -> str:
    return secrets.token_hex(16)


async def get_endpoint(db: Executor, practice_id: uuid.UUID) -> Endpoint | None:
    row = await db.fetchrow(
        "SELECT url, enabled, secret_salt, updated_at FROM webhook_endpoints"
        " WHERE practice_id = $1",
        practice_id,
    )
    return None if row is None else Endpoint(**dict(row))


async def save_endpoint(
    db: Executor, practice_id: uuid.UUID, url: str, enabled: bool, rotate_secret: bool
) -> Endpoint:
    row = await db.fetchrow(
        """INSERT INTO webhook_endpoints (practice_id, url, enabled, secret_salt)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (practice_id) DO UPDATE SET
               url = EXCLUDED.url, enabled = EXCLUDED.enabled, updated_at = now(),
               secret_salt = CASE WHEN $5 THEN EXCLUDED.secret_salt
                                  ELSE webhook_endpoints.secret_salt END
           RETURNING url, enabled, secret_salt, updated_at""",
        practice_id,
        url,
        enabled,
        new_salt(),
        rotate_secret,
    )
    assert row is not None
    return Endpoint(**dict(row))


async def delete_endpoint(db: Executor, practice_id: uuid.UUID) -> bool:
    # Pending deliveries of a removed endpoint would go nowhere: they fail with a reason.
    await db.execute(
        """UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint removed',
                  claimed_until = NULL, claim_token = NULL
           WHERE practice_id = $1 AND status = 'pending'""",
        practice_id,
    )
    return await db.execute(
        "DELETE FROM webhook_endpoints WHERE practice_id = $1", practice_id
    ) == ("DELETE 1")


async def claim_due(db: Executor, limit: int, lease_seconds: float) -> list[ClaimedDelivery]:
    token = uuid.uuid4()
    rows = await db.fetch(
        """WITH due AS (
               SELECT d.event_id FROM webhook_deliveries d
               WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                 AND (d.claimed_until IS NULL OR d.claimed_until < now())
               ORDER BY d.next_attempt_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
           UPDATE webhook_deliveries d
           SET claimed_until = now() + make_interval(secs => $2), claim_token = $3,
               attempts = d.attempts + 1
           FROM due, webhook_events ev, webhook_endpoints e
           WHERE d.event_id = due.event_id AND ev.id = d.event_id
             AND e.practice_id = d.practice_id
           RETURNING d.event_id, d.practice_id, ev.type, ev.created_at, ev.payload::text,
                     e.url, e.secret_salt, d.attempts""",
        limit,
        lease_seconds,
        token,
    )
    return [
        ClaimedDelivery(
            r["event_id"],
            r["practice_id"],
            r["type"],
            r["created_at"],
            r["payload"],
            r["url"],
            r["secret_salt"],
            r["attempts"],
            token,
        )
        for r in rows
    ]


async def record_attempt(
    pool: asyncpg.Pool,
    delivery: ClaimedDelivery,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_in_seconds: float | None,
) -> bool:
    """Log one attempt and move the delivery: delivered (no error), retry later, or failed."""
    delivered = error is None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO webhook_attempts (event_id, status_code, error, duration_ms)
               VALUES ($1, $2, $3, $4)""",
            delivery.event_id,
            status_code,
            None if error is None else error[:1000],
            duration_ms,
        )
        done = await conn.fetchval(
            """UPDATE webhook_deliveries SET
                   status = CASE WHEN $3 THEN 'delivered'
                                 WHEN $4::float8 IS NULL THEN 'failed' ELSE status END,
                   delivered_at = CASE WHEN $3 THEN now() ELSE delivered_at END,
                   next_attempt_at = CASE WHEN $3 OR $4::float8 IS NULL THEN next_attempt_at
                                          ELSE now() + make_interval(secs => $4::float8) END,
                   last_status = $5, last_error = $6, claimed_until = NULL, claim_token = NULL
               WHERE event_id = $1 AND claim_token = $2 RETURNING event_id""",
            delivery.event_id,
            delivery.claim_token,
            delivered,
            retry_in_seconds,
            status_code,
            None if error is None else error[:1000],
        )
    return done is not None


async def release(db: Executor, deliveries: Sequence[ClaimedDelivery]) -> None:
    """Give back claimed deliveries that were not attempted (e.g. on shutdown)."""
    if not deliveries:
        return
    await db.execute(
        """UPDATE webhook_deliveries
           SET claimed_until = NULL, claim_token = NULL, attempts = attempts - 1
           WHERE event_id = ANY($1::uuid[]) AND claim_token = $2""",
        [d.event_id for d in deliveries],
        deliveries[0].claim_token,
    )


async def delivery_log(
    db: Executor, practice_id: uuid.UUID, limit: int = 50
) -> list[DeliveryLogEntry]:
    rows = await db.fetch(
        """SELECT ev.id, ev.type, ev.created_at, coalesce(d.status, 'not_sent') AS status,
                  coalesce(d.attempts, 0) AS attempts, d.last_status, d.last_error,
                  d.delivered_at
           FROM webhook_events ev LEFT JOIN webhook_deliveries d ON d.event_id = ev.id
           WHERE ev.practice_id = $1
           ORDER BY ev.created_at DESC, ev.id
           LIMIT $2""",
        practice_id,
        limit,
    )
    return [
        DeliveryLogEntry(
            r["id"],
            "msg_" + r["id"].hex,
            r["type"],
            r["created_at"],
            r["status"],
            r["attempts"],
            r["last_status"],
            r["last_error"],
            r["delivered_at"],
        )
        for r in rows
    ]
