"""JSON Web Tokens: staff sessions and clients' one-call tokens.

HS256 under the server's secret key, algorithm pinned on decode, and ``exp``, ``aud``,
``iss``, ``sub`` and ``jti`` required. The two audiences keep a client's call token from
ever being accepted as a staff session, and the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
STAFF_AUDIENCE = "videoconsult:staff"
CALL_AUDIENCE = "videoconsult:call"
_REQUIRED = ["exp", "aud", "iss", "sub", "jti", "iat"]


def constant_time_equal(expected: str, sent: str) -> bool:
    """Compare a secret with what a request sent, in constant time. ``hmac.compare_digest``
    raises on non-ASCII text (a 500 for ``X-CSRF-Token: é``); bytes it compares always."""
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogateescape"), sent.encode("utf-8", "surrogateescape")
    )


class InvalidToken(Exception):
    """The token is missing, expired, forged or for another audience."""


@dataclass(frozen=True)
class StaffClaims:
    user_id: uuid.UUID
    practice_id: uuid.UUID
    roles: frozenset[str]
    jti: str
    issued_at: float  # UNIX seconds to the millisecond: a session ends if its user loses
    # access after it was issued, and a new login in that same second must still work
    expires_at: int


@dataclass(frozen=True)
class CallClaims:
    """A client's right to take part in one call, for a short time."""

    appointment_id: uuid.UUID
    link_id: uuid.UUID
    practice_id: uuid.UUID
    jti: str
    expires_at: int


class TokenIssuer:
    def __init__(self, secret_key: str, issuer: str) -> None:
        self._key = secret_key
        self._issuer = issuer

    def issue_staff(
        self, user_id: uuid.UUID, practice_id: uuid.UUID, roles: frozenset[str], ttl: int
    ) -> tuple[str, StaffClaims]:
        # Rounded down: never later than the moment it was issued.
        issued_at = math.floor(time.time() * 1000) / 1000
        expires_at = int(issued_at) + ttl
        claims = StaffClaims(
            user_id, practice_id, roles, secrets.token_hex(16), issued_at, expires_at
        )
        payload = {
            "sub": str(user_id),
            "pid": str(practice_id),
            "roles": sorted(roles),
            "jti": claims.jti,
            "iat": issued_at,  # a NumericDate may have a fraction (RFC 7519 section 2)
            "exp": claims.expires_at,
            "aud": STAFF_AUDIENCE,
            "iss": self._issuer,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def verify_staff(self, token: str) -> StaffClaims:
        payload = self._decode(token, STAFF_AUDIENCE)
        try:
            roles = payload["roles"]
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise InvalidToken("malformed roles")
            return StaffClaims(
                user_id=uuid.UUID(payload["sub"]),
                practice_id=uuid.UUID(payload["pid"]),
                roles=frozenset(roles),
                jti=str(payload["jti"]),
                issued_at=float(payload["iat"]),
                expires_at=int(payload["exp"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidToken(f"malformed claims: {exc}") from None

    def issue_call(
        self,
        appointment_id: uuid.UUID,
        link_id: uuid.UUID,
        practice_id: uuid.UUID,
        ttl: int,
    ) -> tuple[str, CallClaims]:
        now = int(time.time())
        claims = CallClaims(appointment_id, link_id, practice_id, secrets.token_hex(16), now + ttl)
        payload = {
            "sub": str(appointment_id),
            "lnk": str(link_id),
            "pid": str(practice_id),
            "jti": claims.jti,
            "iat": now,
            "exp": claims.expires_at,
            "aud": CALL_AUDIENCE,
            "iss": self._issuer,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def verify_call(self, token: str) -> CallClaims:
        payload = self._decode(token, CALL_AUDIENCE)
        try:
            return CallClaims(
                appointment_id=uuid.UUID(payload["sub"]),
                link_id=uuid.UUID(payload["lnk"]),
                practice_id=uuid.UUID(payload["pid"]),
                jti=str(payload["jti"]),
                expires_at=int(payload["exp"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidToken(f"malformed claims: {exc}") from None

    def csrf_token(self, jti: str) -> str:
        """Bound to the session, so a cookie planted by another site cannot match it."""
        return hmac.new(self._key.encode(), b"csrf:" + jti.encode(), hashlib.sha256).hexdigest()

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self._issuer,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        return payload
