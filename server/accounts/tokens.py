"""One-time account links (table ``account_tokens``, migration 009)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from server.db import Executor

Purpose = Literal["invite", "reset"]
_TOKEN_BYTES = 32  # 256 bits: guessing one is out of reach, so a plain hash suffices


@dataclass(frozen=True)
class Redeemed:
    user_id: uuid.UUID
    purpose: Purpose


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(db: Executor, user_id: uuid.UUID, purpose: Purpose, ttl: timedelta) -> str:
    """A new link's token (shown once, in the email); older unused ones of the purpose die."""
    token = base64.urlsafe_b64encode(secrets.token_bytes(_TOKEN_BYTES)).decode().rstrip("=")
    await db.execute(
        """UPDATE account_tokens SET used_at = now()
           WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL""",
        user_id,
        purpose,
    )
    await db.execute(
        """INSERT INTO account_tokens (id, user_id, purpose, token_hash, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        uuid.uuid4(),
        user_id,
        purpose,
        _hash(token),
        datetime.now(UTC) + ttl,
    )
    return token


async def redeem(db: Executor, token: str) -> Redeemed | None:
    """Use the link once: None when unknown, used, expired, or its user is deactivated."""
    if not token or len(token) > 100:
        return None
    row = await db.fetchrow(
        """UPDATE account_tokens t SET used_at = now()
           FROM users u
           WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now()
             AND u.id = t.user_id AND u.active
           RETURNING t.user_id, t.purpose""",
        _hash(token),
    )
    return None if row is None else Redeemed(row["user_id"], row["purpose"])
