"""Invitations, "forgot password", setting a password through a one-time link, and changing
one's own password.

``POST /api/users/invite`` (site admin): a user without a password and an email with a link
to set one; ``POST /api/users/{user_id}/invite`` sends a new link to a user who has not set
a password yet (the older link stops working). ``POST /api/password/forgot``: always 202
whether the address has an account or not (nothing to learn by asking), at most
PASSWORD_RESETS_PER_HOUR links per account and PASSWORD_RESETS_PER_ADDRESS_PER_HOUR per
client address. ``POST /api/password/reset``: the
link's token and a new password; the link dies, and every session of the user ends.
``POST /api/password/change``: the current password and a new one, throttled as logins
are; every other session of the user ends, this one goes on with a new token.

The link carries the token after ``#``, so it never reaches a server log or a Referer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Annotated

import msgspec
from aiohttp import web

from server import practices
from server.accounts import tokens
from server.api_replies import PasswordChanged
from server.appkeys import CONFIG, DB, KEYS, PASSWORDS, REDIS, TOKENS
from server.auth.routes import login_throttle, set_session_cookies
from server.auth.session import current_staff, end_sessions_of, require_role
from server.client_address import client_address
from server.db import Executor
from server.diary.delivery import DeliveryError, email_sender_for
from server.http import (
    ApiError,
    finish_after_reply,
    json_response,
    not_found,
    parse_uuid,
    read_body,
)
from server.practices_api import Email, Name, Password, Roles

log = logging.getLogger(__name__)
SEND_TIMEOUT_SECONDS = 15.0
_HOUR = 3600


class Invitation(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    name: Name
    roles: Roles


class ForgotPassword(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


class NewPassword(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    password: Password


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, msgspec.Meta(max_length=1000)]
    new_password: Password


class PasswordSet(msgspec.Struct):
    email: str
    sessions_ended: bool


def _link(request: web.Request, token: str) -> str:
    return f"{request.app[CONFIG].base_url}/account/password#token={token}"


async def _send(request: web.Request, to: str, subject: str, body: str) -> None:
    sender = email_sender_for(request.app[CONFIG], SEND_TIMEOUT_SECONDS)
    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
        await sender.send_email(uuid.uuid4(), to, subject, body)


async def _send_invitation(
    request: web.Request, conn: Executor, practice: practices.Practice, user: practices.User
) -> None:
    """A new set-password link (older ones die) and its email. Call it inside the
    transaction that made the user or the link: no email, no change (the admin retries)."""
    hours = request.app[CONFIG].accounts.invite_ttl_hours
    token = await tokens.issue(conn, user.id, "invite", timedelta(hours=hours))
    text = (
        f"Hello {user.name},\n\nYou have been invited to {practice.name}'s video "
        f"consultations. Choose your password here (the link works once, for {hours} "
        f"hours):\n\n{_link(request, token)}\n\nYour login is {user.email}.\n"
    )
    try:
        await _send(request, user.email, f"Your account at {practice.name}", text)
    except (DeliveryError, TimeoutError) as exc:
        raise ApiError(
            503, "email_not_sent", f"the invitation could not be sent ({exc}); try again"
        ) from None
    except ValueError:  # e.g. an address the mail library cannot encode
        raise ApiError(
            400, "invalid_body", "no email can be sent to this address", field="email"
        ) from None


async def invite_user(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="invite users")
    body = await read_body(request, Invitation)
    pool = request.app[DB]
    async with pool.acquire() as conn, conn.transaction():
        practice = await practices.get_practice(conn, staff.practice_id)
        assert practice is not None
        try:
            user = await practices.create_user(
                conn, staff.practice_id, body.email, body.name, None, body.roles
            )
        except practices.DuplicateEmail:
            raise ApiError(
                409, "email_taken", "a user with this email exists", field="email"
            ) from None
        await _send_invitation(request, conn, practice, user)
    return json_response(user, status=201)


async def resend_invitation(request: web.Request) -> web.Response:
    """A new link for a user who has not set a password yet; the previous link dies."""
    staff = await require_role(request, "site_admin", action="invite users")
    user_id = parse_uuid(request.match_info["user_id"], "user")
    async with request.app[DB].acquire() as conn, conn.transaction():
        practice = await practices.get_practice(conn, staff.practice_id)
        assert practice is not None
        # Locked: two resends at once leave one live link, not two.
        await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
        user = await practices.get_user(conn, staff.practice_id, user_id)
        if user is None:
            not_found("user")
        if user.password_set:
            raise ApiError(
                409,
                "password_already_set",
                "this user has set a password; they can use Forgot password",
            )
        if not user.active:
            raise ApiError(409, "user_inactive", "this user is deactivated; reactivate first")
        await _send_invitation(request, conn, practice, user)
    return json_response(user, status=202)


async def _allowed(request: web.Request, email: str) -> bool:
    """Count this request against the account's and the address's hourly allowance."""
    settings = request.app[CONFIG].accounts
    keys = request.app[KEYS]
    counted = []
    async with request.app[REDIS].pipeline(transaction=True) as pipe:
        for kind, value in (("email", email), ("addr", client_address(request))):
            key = keys.account_link_requests(kind, value)
            pipe.set(key, 0, ex=_HOUR, nx=True)  # the window starts with the first request
            pipe.incr(key)
        results = await pipe.execute()
    counted = [int(results[1]), int(results[3])]
    return (
        counted[0] <= settings.resets_per_hour
        and counted[1] <= settings.resets_per_address_per_hour
    )


async def forgot_password(request: web.Request) -> web.Response:
    body = await read_body(request, ForgotPassword)
    email = body.email.strip().lower()
    if not await _allowed(request, email):
        raise ApiError(
            429,
            "too_many_requests",
            "too many reset links asked for; try again in an hour",
            headers={"Retry-After": str(_HOUR)},
        )
    # The account is looked up, and the email sent, after the reply: its timing is the
    # same whether or not the address has an account.
    finish_after_reply(request.app, _email_reset_link(request, email))
    return json_response({"sent": True}, status=202)


async def _email_reset_link(request: web.Request, email: str) -> None:
    try:
        pool = request.app[DB]
        record = await practices.login_record(pool, email)
        if record is None or not record["active"]:
            return
        minutes = request.app[CONFIG].accounts.reset_ttl_minutes
        token = await tokens.issue(pool, record["id"], "reset", timedelta(minutes=minutes))
        text = (
            "Someone asked to reset the password of this video consultation account. If "
            f"it was you, choose a new one here (the link works once, for {minutes} "
            f"minutes):\n\n{_link(request, token)}\n\nIf it was not, ignore this email: "
            "your password stays as it is.\n"
        )
        await _send(request, email, "Reset your password", text)
    except (DeliveryError, TimeoutError, ValueError) as exc:
        log.warning("password reset email to %s not sent: %s", email, exc)
    except Exception:  # nobody awaits this: a failure is logged, never lost silently
        log.exception("password reset email to %s failed", email)


async def reset_password(request: web.Request) -> web.Response:
    body = await read_body(request, NewPassword)
    pool = request.app[DB]
    async with pool.acquire() as conn, conn.transaction():
        redeemed = await tokens.redeem(conn, body.token)
        if redeemed is None:
            raise ApiError(
                400,
                "invalid_link",
                "this link is not valid any more (used, expired or replaced); ask for a new one",
                field="token",
            )
        row = await conn.fetchrow("SELECT practice_id FROM users WHERE id = $1", redeemed.user_id)
        assert row is not None
        # Only for a link that was valid (a stranger's made-up links cost no hash), in the
        # argon2 threads: on the event loop the 0.3-0.7 s would stall every call's media
        # and signalling on this node. Refused as busy, the transaction rolls back and
        # the link still works.
        new_hash = await request.app[PASSWORDS].hash(body.password)
        user = await practices.update_user(
            conn, row["practice_id"], redeemed.user_id, {"password_hash": new_hash}
        )
        assert user is not None
    await end_sessions_of(request.app, redeemed.user_id)
    return json_response(PasswordSet(user.email, True))


async def change_password(request: web.Request) -> web.Response:
    """The user's own password: the current one proves it is them (throttled as a login)."""
    staff = await current_staff(request)
    body = await read_body(request, PasswordChange)
    pool = request.app[DB]
    user = await practices.get_user(pool, staff.practice_id, staff.user_id)
    if user is None:
        raise ApiError(401, "unauthenticated", "this account no longer exists")
    throttle = login_throttle(request)
    address = client_address(request)
    wait = await throttle.reserve(user.email, address)
    if wait:
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many wrong passwords; try again in {wait} seconds",
            headers={"Retry-After": str(wait)},
        )
    record = await practices.login_record(pool, user.email)
    current_hash = record["password_hash"] if record else None
    if not await request.app[PASSWORDS].verify(current_hash, body.current_password):
        raise ApiError(
            400, "wrong_password", "the current password is wrong", field="current_password"
        )
    await throttle.release(user.email, address)
    if body.new_password == body.current_password:
        raise ApiError(
            400,
            "same_password",
            "choose a password other than the current one",
            field="new_password",
        )
    new_hash = await request.app[PASSWORDS].hash(body.new_password)
    await pool.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user.id, new_hash)
    # Every session issued until now ends (on every node), this one included; the session
    # goes on with a token issued after that moment.
    await end_sessions_of(request.app, user.id)
    # A token's issue time is rounded down to the millisecond; the new one must be later
    # than the revocation moment, or it would be refused with the others.
    await asyncio.sleep(0.002)
    config = request.app[CONFIG]
    token, claims = request.app[TOKENS].issue_staff(
        user.id, user.practice_id, frozenset(user.roles), config.session_ttl_seconds
    )
    csrf = request.app[TOKENS].csrf_token(claims.jti)
    response = json_response(PasswordChanged(token, csrf, claims.expires_at, True))
    set_session_cookies(response, config, token, csrf)
    return response
