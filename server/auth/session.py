"""Who is asking: the staff member behind a request, and what they may do.

A staff request carries its JWT either in the HttpOnly session cookie (browsers) or as a
Bearer header (API clients). Cookie-authenticated state changes must also echo the CSRF
token in ``X-CSRF-Token``; a Bearer header cannot be sent by another site, so it needs none.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from server.appkeys import CONFIG, OPEN_SESSIONS, SESSION_ENDS, TOKENS
from server.auth.ended_sessions import SessionsEnded
from server.auth.tokens import InvalidToken, StaffClaims, constant_time_equal
from server.http import ApiError

SESSION_COOKIE = "vc_session"
CSRF_COOKIE = "vc_csrf"
CSRF_HEADER = "X-CSRF-Token"
Role = Literal["site_admin", "clinician", "receptionist"]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Staff:
    user_id: uuid.UUID
    practice_id: uuid.UUID
    roles: frozenset[str]
    jti: str
    expires_at: int
    issued_at: float

    def has(self, role: Role) -> bool:
        return role in self.roles


_REQUEST_STAFF = web.RequestKey("staff", Staff)


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message)


async def current_staff(request: web.Request) -> Staff:
    """The authenticated staff member, or 401. Checks CSRF for cookie-borne state changes."""
    cached: Staff | None = request.get(_REQUEST_STAFF)
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    via_cookie = False
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated("Authorization header must be 'Bearer <token>'")
    else:
        token = request.cookies.get(SESSION_COOKIE, "")
        via_cookie = True
        if not token:
            raise _unauthenticated("log in first")
    tokens = request.app[TOKENS]
    try:
        claims: StaffClaims = tokens.verify_staff(token.strip())
    except InvalidToken as exc:
        raise _unauthenticated(f"invalid or expired session ({exc})") from None
    # Both ways a session ends early: its own logout, and its user losing access
    # (deactivated, or a role removed) after it was issued.
    refusal = await request.app[SESSION_ENDS].refusal(claims.user_id, claims.jti, claims.issued_at)
    if refusal is not None:
        raise _unauthenticated(refusal.value)
    if via_cookie and request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not constant_time_equal(tokens.csrf_token(claims.jti), sent):
            raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header")
    staff = Staff(
        claims.user_id,
        claims.practice_id,
        claims.roles,
        claims.jti,
        claims.expires_at,
        claims.issued_at,
    )
    request[_REQUEST_STAFF] = staff
    return staff


async def end_sessions_of(app: web.Application, user_id: uuid.UUID) -> None:
    """Refuse every session the user holds now (they lost access); later logins work.

    Kept (in PostgreSQL, cached in Redis) for a session lifetime, after which every such
    session has expired anyway. Every node closes the call sockets and event streams those
    sessions hold open.
    """
    now = time.time()
    await app[SESSION_ENDS].end_sessions_of(user_id, now, app[CONFIG].session_ttl_seconds)
    await app[OPEN_SESSIONS].publish(SessionsEnded(user_id, issued_before=now))


async def end_session(app: web.Application, staff: Staff) -> None:
    """Logout: refuse this one session from now on, and close what it holds open."""
    await app[SESSION_ENDS].end_session(staff.user_id, staff.jti, staff.expires_at)
    await app[OPEN_SESSIONS].publish(SessionsEnded(staff.user_id, jti=staff.jti))


def held_open(
    request: web.Request, staff: Staff, close: Callable[[], Awaitable[None]]
) -> contextlib.AbstractContextManager[None]:
    """For a socket or stream that outlives its request: ``close`` runs, on whichever node
    holds it, as soon as the session ends or its user loses access."""
    return request.app[OPEN_SESSIONS].hold(staff.user_id, staff.jti, staff.issued_at, close)


async def require_role(request: web.Request, *allowed: Role, action: str) -> Staff:
    """The staff member if they hold one of ``allowed``; else 403 saying who may do it."""
    staff = await current_staff(request)
    if not any(staff.has(role) for role in allowed):
        who = " or ".join(role.replace("_", " ") for role in allowed)
        raise ApiError(403, "forbidden_role", f"only a {who} can {action}")
    return staff
