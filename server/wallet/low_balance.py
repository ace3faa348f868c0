"""Low-balance alert: once per crossing of the practice's threshold (default 60 minutes).

``track_low_balance`` runs after every change of balance, in its transaction (the meter's
flush, a purchase, a reversal, an adjustment). A wallet below its threshold with no alert
yet is marked and, in the same statement's transaction, an email to each active site admin
is queued in the outbox and the ``minutes.low`` event emitted. The mark is cleared once the
balance is back at or above the threshold, so the next fall alerts again. Two nodes flushing
at once cannot both alert: the UPDATE's row lock makes the second see the mark.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from server.db import Executor
from server.wallet.bundles import format_balance
from server.webhooks.events import emit_event

_REARM = """
UPDATE wallets w SET low_balance_alerted_at = NULL
FROM practices p
WHERE w.practice_id = ANY($1::uuid[]) AND p.id = w.practice_id
  AND w.low_balance_alerted_at IS NOT NULL
  AND w.balance_seconds >= p.low_balance_minutes * 60
"""

_CROSSED = """
UPDATE wallets w SET low_balance_alerted_at = now()
FROM practices p
WHERE w.practice_id = ANY($1::uuid[]) AND p.id = w.practice_id
  AND w.low_balance_alerted_at IS NULL
  AND p.low_balance_minutes > 0
  AND w.balance_seconds < p.low_balance_minutes * 60
RETURNING w.practice_id, w.balance_seconds, p.low_balance_minutes, p.name
"""

_QUEUE_ALERTS = """
INSERT INTO outbox_messages (id, practice_id, trigger, channel, recipient, subject, body,
                             send_at, next_attempt_at)
SELECT gen_random_uuid(), u.practice_id, 'minutes_low', 'email', u.email, $2, $3, $4, $4
FROM users u
WHERE u.practice_id = $1 AND u.active AND 'site_admin' = ANY(u.roles)
"""


async def track_low_balance(db: Executor, practice_ids: Sequence[uuid.UUID]) -> int:
    """Re-arm wallets back above their threshold; alert those newly below. Returns alerts."""
    if not practice_ids:
        return 0
    ids = sorted(set(practice_ids))  # the same lock order as the usage flush
    await db.execute(_REARM, ids)
    crossed = await db.fetch(_CROSSED, ids)
    now = datetime.now(UTC)
    for row in crossed:
        balance = int(row["balance_seconds"])
        threshold = int(row["low_balance_minutes"])
        subject = f"Video minutes running low: {format_balance(balance)} left"
        body = (
            f"The video minutes of {row['name']} are down to {format_balance(balance)}, below "
            f"the alert level of {threshold} min.\n\nCalls are never cut off, but once the "
            "balance reaches zero no new call can start. A site admin can buy a bundle on the "
            "Video minutes page.\n"
        )
        await db.execute(_QUEUE_ALERTS, row["practice_id"], subject, body, now)
        await emit_event(
            db,
            row["practice_id"],
            "minutes.low",
            {"balance_seconds": balance, "threshold_minutes": threshold},
            at=now,
        )
    return len(crossed)
