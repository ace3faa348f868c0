"""POST /api/login, POST /api/logout, GET /api/me."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from aiohttp import web

from server import practices
from server.appkeys import CONFIG, DB, KEYS, PASSWORDS, REDIS, TOKENS
from server.auth.session import CSRF_COOKIE, SESSION_COOKIE, current_staff, end_session
from server.auth.throttle import LoginThrottle
from server.client_address import client_address
from server.config import Config
from server.http import ApiError, json_response, read_body


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=1000)]


def login_throttle(request: web.Request) -> LoginThrottle:
    """Failed password checks, counted per account and address (login, password change)."""
    config = request.app[CONFIG]
    return LoginThrottle(
        request.app[REDIS],
        request.app[KEYS],
        config.login_failures_per_account,
        config.login_failures_per_address,
        config.login_failure_window_seconds,
    )


async def login(request: web.Request) -> web.Response:
    body = await read_body(request, LoginBody)
    email = body.email.strip().lower()
    address = client_address(request)
    throttle = login_throttle(request)
    # Reserved before the password is verified: parallel attempts cannot all pass the check.
    wait = await throttle.reserve(email, address)
    if wait:
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins; try again in {wait} seconds",
            headers={"Retry-After": str(wait)},
        )
    record = await practices.login_record(request.app[DB], email)
    password_hash = record["password_hash"] if record else None
    try:
        verified = await request.app[PASSWORDS].verify(password_hash, body.password)
    except BaseException:  # 503 busy or cancelled: no verdict, so no failure counted
        await asyncio.shield(throttle.give_back(email, address))
        raise
    if not verified or record is None or not record["active"]:
        raise ApiError(401, "bad_credentials", "wrong email or password")
    await throttle.release(email, address)

    config = request.app[CONFIG]
    tokens = request.app[TOKENS]
    token, claims = tokens.issue_staff(
        record["id"], record["practice_id"], frozenset(record["roles"]), config.session_ttl_seconds
    )
    csrf = tokens.csrf_token(claims.jti)
    user = await practices.get_user(request.app[DB], record["practice_id"], record["id"])
    response = json_response(
        {"token": token, "csrf_token": csrf, "expires_at": claims.expires_at, "user": user}
    )
    set_session_cookies(response, config, token, csrf)
    return response


def set_session_cookies(response: web.Response, config: Config, token: str, csrf: str) -> None:
    max_age = config.session_ttl_seconds
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="Lax",
        secure=config.cookie_secure,
        max_age=max_age,
        path="/",
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        httponly=False,
        samesite="Lax",
        secure=config.cookie_secure,
        max_age=max_age,
        path="/",
    )


async def logout(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    await end_session(request.app, staff)
    response = json_response({"logged_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    member = await practices.active_member(request.app[DB], staff.practice_id, staff.user_id)
    if member is None:
        raise ApiError(401, "unauthenticated", "this account no longer exists")
    user, practice = member
    return json_response(
        {
            "user": user,
            "practice": practice,
            "csrf_token": request.app[TOKENS].csrf_token(staff.jti),
        }
    )
