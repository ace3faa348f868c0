"""The call WebSocket: ``GET /ws/appointments/{appointment_id}/call``.

One socket per participant, addressed by appointment rather than by call, because a client
may arrive before the clinician has opened the waiting room (there is no call row yet); the
server resolves the appointment to its call on every connection.

Who may connect, checked before the upgrade:
- the appointment's clinician, with the staff session (cookie, same origin only, or Bearer);
- the client, with the call token their link bought (``?token=``: browsers cannot set
  headers on a WebSocket), for this appointment only, while the link is usable.

The role comes from the credentials, never from a message, so a client's token can do only
what the machine lets a client do (it cannot admit, abandon or end; R-C3). Every frame is
decoded once (``decode_client_message``); a bad one is answered with an ``error`` and
changes nothing. The first good message must be ``hello`` or ``resume``. Each message then
goes through the ``Router`` to the call's owner node. aiohttp pings every 5 s and drops a
socket whose pong does not come within 2.5 s, so a dead network is noticed within 10 s;
that is a ``Leave``, never an end (R-C8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from server.appkeys import CONFIG, DB, HEALTH, TOKENS
from server.auth.session import SESSION_COOKIE, Staff, held_open, require_role
from server.auth.tokens import InvalidToken
from server.calls.client_entry import link_entry
from server.calls.engine import CALL_ENGINE, CallEngine
from server.calls.routing import refusal_for
from server.diary.appointments import appointment_for_call, appointment_for_link
from server.diary.links import NOT_AVAILABLE_MESSAGE
from server.http import ApiError, not_found, parse_uuid
from signalling.model import Role
from signalling.protocol import (
    MAX_MESSAGE_BYTES,
    Error,
    Hello,
    ProtocolError,
    Resume,
    decode_client_message,
)
from signalling.router import (
    ParticipantConnected,
    ParticipantDisconnected,
    ParticipantMessage,
    RoutedMessage,
)

log = logging.getLogger(__name__)

# The clinician's session ended (logout, deactivated, a role removed, a new password).
CLOSE_SESSION_ENDED = 4401
# Per socket: a browser sends a few messages a second at most (ICE candidates come in a
# burst of tens); past this budget the socket gets a rate_limited error and a close (1008).
MESSAGES_PER_SECOND = 20
MESSAGE_BURST = 100
HEARTBEAT_SECONDS = 5.0  # ping interval; a missing pong after half of it closes the socket
CLOSE_TIMEOUT_SECONDS = 2.0


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws/appointments/{appointment_id}/call", call_socket)


async def call_socket(request: web.Request) -> web.StreamResponse:
    engine = request.app[CALL_ENGINE]
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    role, staff = await _authenticate(request, appointment_id)
    if engine.stopping or request.app[HEALTH].draining:
        # A load balancer retries another node on this 503 (see the README's nginx).
        log.info("call socket refused: this node is draining")
        engine.metrics.sockets_refused.labels("node_stopping").inc()
        raise ApiError(503, "node_stopping", "This server is restarting: reconnect in a moment")
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_SECONDS,
        timeout=CLOSE_TIMEOUT_SECONDS,
        # Up to 4x the protocol's limit is read and answered with a too_large error; beyond
        # that aiohttp closes the socket (1009) rather than buffer it.
        max_msg_size=4 * MAX_MESSAGE_BYTES,
        # No permessage-deflate (browsers offer it): a zlib compressor per socket costs
        # ~100 KiB, so 10,000 waiting rooms would need 1.3 GB instead of ~0.25 GB, to
        # shrink messages of a few hundred bytes (an SDP offer, the largest, is a few KiB).
        compress=False,
    )
    await ws.prepare(request)

    async def session_ended() -> None:
        await _close_for_ended_session(ws)

    # Held while the socket is open: a client waiting before Switch to Video keeps the id
    # its call will be opened with; it is forgotten once no socket or request holds it.
    # A clinician's socket closes when their session ends (logout, access lost).
    async with engine.directory.hold(appointment_id) as call_id:
        with held_open(request, staff, session_ended) if staff else contextlib.nullcontext():
            connection = _Connection(engine, ws, call_id, role, secrets.token_urlsafe(12))
            await connection.serve(request.transport)
    return ws


async def _close_for_ended_session(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await ws.close(code=CLOSE_SESSION_ENDED, message=b"session ended: log in again")


class MessageBudget:
    """A token bucket: ``burst`` messages at once, refilled at ``per_second``."""

    def __init__(self, per_second: float, burst: int) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _Connection:
    def __init__(
        self,
        engine: CallEngine,
        ws: web.WebSocketResponse,
        call_id: str,
        role: Role,
        connection_id: str,
    ) -> None:
        self._engine = engine
        self._ws = ws
        self._call_id = call_id
        self._role = role
        self._id = connection_id
        self._joined = False
        self._budget = MessageBudget(MESSAGES_PER_SECOND, MESSAGE_BURST)
        self._refused = False  # broke a limit: told so, closing; nothing more is read

    async def serve(self, transport: asyncio.Transport | None) -> None:
        hub = self._engine.hub
        hub.register(self._id, self._ws, transport)
        try:
            async for frame in self._ws:
                if frame.type is WSMsgType.ERROR:
                    break
                if self._refused:
                    continue
                if not self._budget.take(time.monotonic()):
                    await self._close_for_abuse(
                        "rate_limited",
                        f"More than {MESSAGES_PER_SECOND} messages a second: reconnect slower",
                        WSCloseCode.POLICY_VIOLATION,
                    )
                    continue
                if frame.type is not WSMsgType.TEXT:
                    await self._error("text_only", "Messages are JSON text frames")
                    continue
                await self._receive(frame.data)
        finally:
            hub.unregister(self._id, self._call_id, self._role)
            if self._joined:
                await self._deliver(
                    ParticipantDisconnected(
                        call_id=self._call_id, role=self._role, connection_id=self._id
                    ),
                    closing=True,
                )

    async def _receive(self, raw: str) -> None:
        try:
            message = decode_client_message(raw)
        except ProtocolError as bad:
            if bad.code == "too_large":
                await self._close_for_abuse(bad.code, bad.message, WSCloseCode.MESSAGE_TOO_BIG)
                return
            await self._error(bad.code, bad.message, bad.field)
            return
        if not self._joined:
            if not isinstance(message, Hello | Resume):
                await self._error("hello_required", "Send hello (or resume) first")
                return
            self._joined = True
            self._engine.hub.mark_current(self._call_id, self._role, self._id)
            await self._deliver(
                ParticipantConnected(
                    call_id=self._call_id, role=self._role, connection_id=self._id, first=message
                )
            )
            return
        await self._deliver(
            ParticipantMessage(
                call_id=self._call_id, role=self._role, connection_id=self._id, message=message
            )
        )

    async def _deliver(self, routed: RoutedMessage, *, closing: bool = False) -> None:
        try:
            await self._engine.router.deliver(routed)
        except Exception as failed:
            refusal = refusal_for(failed)
            if refusal is not None:  # e.g. the call is unknown here, or moved
                log.info("call %s: %s socket refused (%s)", self._call_id, self._role, refusal)
                await self._refuse(refusal.code, refusal.message, closing)
                return
            log.exception("call %s: delivering %s failed", self._call_id, routed.__class__)
            if not closing:
                await self._error("unavailable", "Something went wrong: try again")

    async def _refuse(self, code: str, message: str, closing: bool) -> None:
        if closing:
            return
        self._engine.metrics.sockets_refused.labels(code).inc()
        self._joined = False
        await self._error(code, message)
        # Through the hub: the close goes out after the error, never before it.
        await self._engine.hub.close(self._call_id, self._role, self._id, code)

    async def _close_for_abuse(self, code: str, message: str, close_code: int) -> None:
        """A clear error, then the close: the socket broke a limit every client keeps."""
        self._refused = True
        log.info("call %s: closing a %s socket: %s", self._call_id, self._role, code)
        await self._error(code, message)
        await self._engine.hub.close_with(self._id, close_code, code)

    async def _error(self, code: str, message: str, field: str | None = None) -> None:
        await self._engine.hub.send(
            self._call_id, self._role, self._id, Error(code=code, message=message, field=field)
        )


async def _authenticate(
    request: web.Request, appointment_id: uuid.UUID
) -> tuple[Role, Staff | None]:
    """Who connects: the client (no staff session) or the appointment's clinician."""
    token = request.query.get("token")
    if token is not None:
        await _check_client(request, appointment_id, token)
        return Role.CLIENT, None
    _check_same_origin(request)
    staff = await require_role(request, "clinician", "site_admin", action="join a video call")
    appointment = await appointment_for_call(request.app[DB], staff.practice_id, appointment_id)
    if appointment is None:
        not_found("appointment")
    if appointment.clinician_id != staff.user_id:
        raise ApiError(
            403, "not_your_appointment", "Only the appointment's clinician can join its call"
        )
    return Role.CLINICIAN, staff


async def _check_client(request: web.Request, appointment_id: uuid.UUID, token: str) -> None:
    try:
        claims = request.app[TOKENS].verify_call(token)
    except InvalidToken as exc:
        raise ApiError(
            401, "invalid_call_token", f"invalid or expired call token ({exc})"
        ) from None
    if claims.appointment_id != appointment_id:
        raise ApiError(403, "wrong_call", "This call token is for another appointment")
    db = request.app[DB]
    appointment = await appointment_for_link(db, claims.link_id)
    if appointment is None or appointment.appointment_id != appointment_id:
        raise ApiError(410, "call_unavailable", NOT_AVAILABLE_MESSAGE)
    grace = timedelta(minutes=request.app[CONFIG].link_grace_minutes)
    _call, may_enter = await link_entry(db, appointment, datetime.now(UTC), grace)
    if not may_enter:
        raise ApiError(410, "call_unavailable", NOT_AVAILABLE_MESSAGE)


def _check_same_origin(request: web.Request) -> None:
    """A browser sends the session cookie on a WebSocket from any site: check where from."""
    if "Authorization" in request.headers or SESSION_COOKIE not in request.cookies:
        return
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser
    allowed = {_origin(request.app[CONFIG].base_url), f"{request.scheme}://{request.host}"}
    if _origin(origin) not in allowed:
        raise ApiError(403, "cross_origin", "WebSocket from another site refused")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
