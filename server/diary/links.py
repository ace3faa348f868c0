"""One-time video links: the URL token, its check, and the link's life (R-B1, R-C5..R-C7).

The database stores only a random link id per video appointment. The token in the URL is
``base64url(link_id || HMAC-SHA256(key, "video-link:" || link_id)[:16])``: 32 bytes, 43
characters. Opening a link recomputes the MAC and compares it in constant time, so

- a guessed or tampered token is refused before any query (it needs the 128-bit MAC);
- a copy of the database alone cannot produce a valid token (the key is not in it);
- the summary can show the URL again at any time (it is derived, not stored).

A link is ``active`` until its call ends, the call is abandoned at the waiting room, or
the appointment is cancelled (``revoked``); none of these ever reverses, and closing a link
cancels the scheduled messages that carry it, in the same transaction (R-B10).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.auth.tokens import constant_time_equal
from server.db import Executor
from server.diary.appointments import AppointmentForCall, appointment_for_link

_MAC_BYTES = 16
_TOKEN_BYTES = 16 + _MAC_BYTES
_TOKEN_CHARS = 43  # base64url of 32 bytes, unpadded
_MAC_LABEL = b"video-link:"
NOT_AVAILABLE_MESSAGE = "This call is no longer available"


class LinkState(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"  # its call took place and ended (R-C5)
    ABANDONED = "abandoned"  # closed at the waiting room without a call (R-C7)
    REVOKED = "revoked"  # the appointment was cancelled


class LinkSigner:
    """Turns link ids into URL tokens and back, under the server's secret key."""

    def __init__(self, secret_key: str, base_url: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to sign video links")
        self._key = secret_key.encode()
        self._base_url = base_url.rstrip("/")

    def _mac(self, link_id: uuid.UUID) -> bytes:
        digest = hmac.new(self._key, _MAC_LABEL + link_id.bytes, hashlib.sha256).digest()
        return digest[:_MAC_BYTES]

    def token(self, link_id: uuid.UUID) -> str:
        raw = link_id.bytes + self._mac(link_id)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def url(self, link_id: uuid.UUID) -> str:
        return f"{self._base_url}/v/{self.token(link_id)}"

    def link_id(self, token: str) -> uuid.UUID | None:
        """The link id a token names, or None if it is malformed or its MAC is wrong."""
        if len(token) != _TOKEN_CHARS or not token.isascii():
            return None
        try:
            raw = base64.b64decode(token + "=", altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _TOKEN_BYTES:
            return None
        link_id = uuid.UUID(bytes=raw[:16])
        # Comparing the whole re-derived token (in constant time) checks the MAC and also
        # refuses the non-canonical base64 spellings of the same bytes.
        if not constant_time_equal(self.token(link_id), token):
            return None
        return link_id


def is_available(
    link_state: str,
    appointment_status: str,
    ends_at: datetime,
    now: datetime,
    grace: timedelta,
) -> bool:
    """Whether a client opening the link may still go on to the call (R-C6)."""
    return (
        link_state == LinkState.ACTIVE and appointment_status == "booked" and now <= ends_at + grace
    )


@dataclass(frozen=True)
class Link:
    id: uuid.UUID
    appointment_id: uuid.UUID
    state: LinkState
    closed_at: datetime | None
    close_reason: str | None


# --- SQL -----------------------------------------------------------------------------------


async def insert_links(
    db: Executor,
    practice_id: uuid.UUID,
    link_ids: Sequence[uuid.UUID],
    appointment_ids: Sequence[uuid.UUID],
) -> None:
    await db.execute(
        """INSERT INTO video_links (id, practice_id, appointment_id)
           SELECT link_id, $1, appointment_id
           FROM unnest($2::uuid[], $3::uuid[]) AS t(link_id, appointment_id)""",
        practice_id,
        list(link_ids),
        list(appointment_ids),
    )


async def close_link(
    db: Executor, link_id: uuid.UUID, state: LinkState, reason: str
) -> LinkState | None:
    """Move an active link to ``state`` (ended, abandoned or revoked); idempotent.

    Returns the link's state afterwards: ``state`` if it was active (or already so), the
    earlier final state if it was already closed another way, None if there is no such link.
    Run it in the caller's transaction so the link closes with the call's own change.
    """
    if state is LinkState.ACTIVE:
        raise ValueError("a link cannot be reopened")
    closed = await db.fetchval(
        """UPDATE video_links SET state = $2, closed_at = now(), close_reason = $3
           WHERE id = $1 AND state = 'active' RETURNING state""",
        link_id,
        state.value,
        reason,
    )
    if closed is not None:
        await cancel_messages_carrying(db, [link_id], reason)
        return LinkState(closed)
    current = await db.fetchval("SELECT state FROM video_links WHERE id = $1", link_id)
    return LinkState(current) if current is not None else None


async def end_link(
    db: Executor, link_id: uuid.UUID, reason: str = "call ended"
) -> LinkState | None:
    """The call engine's hook when a call ends (R-C5)."""
    return await close_link(db, link_id, LinkState.ENDED, reason)


async def abandon_link(
    db: Executor, link_id: uuid.UUID, reason: str = "abandoned at the waiting room"
) -> LinkState | None:
    """The call engine's hook when the clinician abandons at the waiting room (R-C7)."""
    return await close_link(db, link_id, LinkState.ABANDONED, reason)


async def revoke_links_of(db: Executor, appointment_ids: Sequence[uuid.UUID], reason: str) -> None:
    revoked = await db.fetch(
        """UPDATE video_links SET state = 'revoked', closed_at = now(), close_reason = $2
           WHERE appointment_id = ANY($1::uuid[]) AND state = 'active' RETURNING id""",
        list(appointment_ids),
        reason,
    )
    await cancel_messages_carrying(db, [r["id"] for r in revoked], reason)


async def cancel_messages_carrying(db: Executor, link_ids: Sequence[uuid.UUID], reason: str) -> int:
    """Messages die with their link (R-B10): scheduled ones carrying it are cancelled.

    Run in the transaction that closes the link, so no reminder outlives it. A message a
    worker has claimed meanwhile is caught by the worker's own check before it sends.
    """
    if not link_ids:
        return 0
    result = await db.execute(
        """UPDATE outbox_messages SET status = 'cancelled', cancel_reason = $2
           WHERE link_id = ANY($1::uuid[]) AND status = 'scheduled'""",
        list(link_ids),
        reason,
    )
    return int(result.split()[-1])


async def resolve_token(db: Executor, signer: LinkSigner, token: str) -> AppointmentForCall | None:
    """The appointment (with its practice, clinician and link) a URL token opens, or None.

    None for a malformed, tampered, guessed or unknown token alike; no query is made unless
    the MAC is right. The caller still checks the link's state (``is_available``).
    """
    link_id = signer.link_id(token)
    if link_id is None:
        return None
    return await appointment_for_link(db, link_id)


async def link_of(db: Executor, appointment_id: uuid.UUID) -> Link | None:
    row = await db.fetchrow(
        """SELECT id, appointment_id, state, closed_at, close_reason FROM video_links
           WHERE appointment_id = $1""",
        appointment_id,
    )
    if row is None:
        return None
    return Link(
        row["id"],
        row["appointment_id"],
        LinkState(row["state"]),
        row["closed_at"],
        row["close_reason"],
    )


async def link_is_active(db: Executor, link_id: uuid.UUID) -> bool:
    state = await db.fetchval("SELECT state FROM video_links WHERE id = $1", link_id)
    return bool(state == LinkState.ACTIVE)
