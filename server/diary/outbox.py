"""The outbox: client messages as rows, claimed and sent by a worker in every node (R-B6).

A message is written in the transaction of the change that causes it (booking, cancelling,
moving), so it exists exactly when that change does. Sending:

1. **claim** (one short statement): due ``scheduled`` rows that nobody holds are locked with
   ``FOR UPDATE SKIP LOCKED`` and given a lease (``claimed_until``) and a claim token; the
   attempt is counted now, so a message that kills its worker still runs out of attempts.
2. **send**, outside any transaction.
3. **record** the outcome, only if the claim token still matches: ``sent``; or a retry time
   with exponential back-off; or ``failed`` after the last attempt.

Two workers never hold the same row at once: the second skips locked rows and then sees the
lease. A worker that dies mid-send holds the row until its lease lapses, after which another
worker retries it. The lease must outlast a send (the worker stops starting sends close to
its end), so a message is sent twice only if a worker dies after the mail server accepted it
and before step 3 -- the one window no outbox can close; the Message-ID header (the row id)
lets the receiving side spot such a repeat.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from server.db import Executor
from server.diary.templates import Channel, Trigger


@dataclass(frozen=True)
class NewMessage:
    id: uuid.UUID
    practice_id: uuid.UUID
    appointment_id: uuid.UUID | None
    series_id: uuid.UUID | None
    link_id: uuid.UUID | None
    trigger: Trigger
    channel: Channel
    recipient: str
    subject: str  # stored form: may hold {video_link}, braces escaped
    body: str
    send_at: datetime


@dataclass(frozen=True)
class ClaimedMessage:
    id: uuid.UUID
    channel: Channel
    recipient: str
    subject: str
    body: str
    link_id: uuid.UUID | None
    attempts: int  # including this one
    claim_token: uuid.UUID


class HistoryEntry(msgspec.Struct, frozen=True):
    id: uuid.UUID
    appointment_id: uuid.UUID | None
    link_id: uuid.UUID | None
    trigger: str
    channel: str
    recipient: str
    subject: str
    body: str
    status: str
    send_at: datetime
    sent_at: datetime | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    cancel_reason: str | None
    delivery_status: str | None
    delivery_error: str | None
    delivery_status_at: datetime | None


async def insert_messages(db: Executor, messages: Sequence[NewMessage]) -> None:
    if not messages:
        return
    await db.execute(
        """INSERT INTO outbox_messages
               (id, practice_id, appointment_id, series_id, link_id, trigger, channel,
                recipient, subject, body, send_at, next_attempt_at)
           SELECT id, practice_id, appointment_id, series_id, link_id, trigger, channel,
                  recipient, subject, body, send_at, send_at
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[],
                       $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
                AS m(id, practice_id, appointment_id, series_id, link_id, trigger, channel,
                     recipient, subject, body, send_at)""",
        [m.id for m in messages],
        [m.practice_id for m in messages],
        [m.appointment_id for m in messages],
        [m.series_id for m in messages],
        [m.link_id for m in messages],
        [m.trigger.value for m in messages],
        [m.channel.value for m in messages],
        [m.recipient for m in messages],
        [m.subject for m in messages],
        [m.body for m in messages],
        [m.send_at for m in messages],
    )


async def claim_due(db: Executor, limit: int, lease_seconds: float) -> list[ClaimedMessage]:
    token = uuid.uuid4()
    rows = await db.fetch(
        """WITH due AS (
               SELECT id FROM outbox_messages
               WHERE status = 'scheduled' AND next_attempt_at <= now()
                 AND (claimed_until IS NULL OR claimed_until < now())
               ORDER BY next_attempt_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
           UPDATE outbox_messages m
           SET claimed_until = now() + make_interval(secs => $2), claim_token = $3,
               attempts = m.attempts + 1
           FROM due WHERE m.id = due.id
           RETURNING m.id, m.channel, m.recipient, m.subject, m.body, m.link_id, m.attempts""",
        limit,
        lease_seconds,
        token,
    )
    return [
        ClaimedMessage(
            r["id"],
            Channel(r["channel"]),
            r["recipient"],
            r["subject"],
            r["body"],
            r["link_id"],
            r["attempts"],
            token,
        )
        for r in rows
    ]


async def mark_sent(db: Executor, message: ClaimedMessage) -> bool:
    """Record a delivery. Also over a cancellation made while it was being sent: it went."""
    done = await db.fetchval(
        """UPDATE outbox_messages
           SET status = 'sent', sent_at = now(), claimed_until = NULL, claim_token = NULL
           WHERE id = $1 AND claim_token = $2 RETURNING id""",
        message.id,
        message.claim_token,
    )
    return done is not None


async def cancel_claimed(db: Executor, message: ClaimedMessage, reason: str) -> bool:
    """A claimed message that must not go (its link died after the claim): cancelled."""
    done = await db.fetchval(
        """UPDATE outbox_messages
           SET status = 'cancelled', cancel_reason = $3, claimed_until = NULL,
               claim_token = NULL
           WHERE id = $1 AND claim_token = $2 AND status = 'scheduled' RETURNING id""",
        message.id,
        message.claim_token,
        reason,
    )
    return done is not None


async def record_failure(
    db: Executor, message: ClaimedMessage, error: str, retry_in_seconds: float | None
) -> bool:
    """A failed attempt: try again in ``retry_in_seconds``, or None for ``failed`` for good."""
    done = await db.fetchval(
        """UPDATE outbox_messages
           SET status = CASE WHEN status = 'scheduled' AND $4::float8 IS NULL
                             THEN 'failed' ELSE status END,
               next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at
                                      ELSE now() + make_interval(secs => $4::float8) END,
               last_error = $3, claimed_until = NULL, claim_token = NULL
           WHERE id = $1 AND claim_token = $2 RETURNING id""",
        message.id,
        message.claim_token,
        error[:1000],
        retry_in_seconds,
    )
    return done is not None


async def record_bounce(db: Executor, message_id: uuid.UUID, error: str) -> None:
    """The mail server refused the recipient for good: kept as the message's delivery report."""
    await db.execute(
        """UPDATE outbox_messages SET delivery_status = 'bounced', delivery_error = $2,
                  delivery_status_at = now()
           WHERE id = $1""",
        message_id,
        error[:1000],
    )


async def release(db: Executor, messages: Sequence[ClaimedMessage]) -> None:
    """Give back claimed messages that were not attempted (e.g. on shutdown)."""
    if not messages:
        return
    await db.execute(
        """UPDATE outbox_messages
           SET claimed_until = NULL, claim_token = NULL, attempts = attempts - 1
           WHERE id = ANY($1::uuid[]) AND claim_token = $2""",
        [m.id for m in messages],
        messages[0].claim_token,
    )


async def cancel_scheduled(
    db: Executor,
    appointment_ids: Sequence[uuid.UUID],
    triggers: Sequence[Trigger],
    reason: str,
) -> int:
    result = await db.execute(
        """UPDATE outbox_messages SET status = 'cancelled', cancel_reason = $3
           WHERE appointment_id = ANY($1::uuid[]) AND trigger = ANY($2::text[])
             AND status = 'scheduled'""",
        list(appointment_ids),
        [t.value for t in triggers],
        reason,
    )
    return int(result.split()[-1])


async def history(
    db: Executor, practice_id: uuid.UUID, appointment_id: uuid.UUID, series_id: uuid.UUID | None
) -> list[HistoryEntry]:
    """The appointment's messages, plus its series' confirmation (sent with the first)."""
    rows = await db.fetch(
        """SELECT id, appointment_id, link_id, trigger, channel, recipient, subject, body,
                  status, send_at, sent_at, attempts, next_attempt_at, last_error,
                  cancel_reason, delivery_status, delivery_error, delivery_status_at
           FROM outbox_messages
           WHERE practice_id = $1
             AND (appointment_id = $2
                  OR (series_id = $3 AND trigger = 'recurring_video_appointment_booked'))
           ORDER BY send_at, created_at, channel""",
        practice_id,
        appointment_id,
        series_id,
    )
    return [HistoryEntry(**dict(r)) for r in rows]
