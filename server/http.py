"""HTTP edges shared by every API module: JSON replies, typed bodies, one error shape.

Every error leaves the server as ``{"error": {"code": ..., "message": ..., "field": ...}}``
with a 4xx status; a bug becomes a logged 500 with the same shape and no detail.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from server.appkeys import CONFIG
from server.validation import first_problem, text_problem

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_encoder = msgspec.json.Encoder()
_FIELD_IN_MESSAGE = re.compile(r"at `\$\.?([^`]*)`")
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]*)`")


def field_in_error(message: str) -> str | None:
    """The dotted path of the field a msgspec validation message is about, if it names one.

    ``Expected `int` - at `$.a.b``` -> ``a.b``; ``Object missing required field `x` - at `$.a```
    -> ``a.x``; ``Object contains unknown field `x``` -> ``x``.
    """
    at = _FIELD_IN_MESSAGE.search(message)
    path = at.group(1) if at else ""
    named = _NAMED_FIELD.search(message)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


class ApiError(web.HTTPException):
    """An HTTP error with a machine-readable code and, when it applies, the offending field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status_code = status
        body: dict[str, Any] = {"code": code, "message": message}
        if field is not None:
            body["field"] = field
        body.update(extra)
        super().__init__(
            headers=headers,
            text=_encoder.encode({"error": body}).decode(),
            content_type="application/json",
        )


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json")


def not_found(what: str = "resource") -> NoReturn:
    # Also used for other practices' data: 404 whether it exists elsewhere or not.
    raise ApiError(404, "not_found", f"{what} not found")


def parse_uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        not_found(what)


async def read_body(request: web.Request, body_type: type[T]) -> T:
    """Decode the JSON body into ``body_type`` or raise a 400/413 naming the field.

    Past its type, every string, date and moment in it is checked against its real domain
    (``server.validation``): no NUL, valid Unicode, within the sane calendar.
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        raise ApiError(413, "body_too_large", f"request body larger than {limit} bytes") from None
    if not raw:
        raise ApiError(400, "empty_body", "a JSON body is required")
    try:
        body = msgspec.json.decode(raw, type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise ApiError(400, "invalid_body", message, field=field_in_error(message)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    problem = first_problem(body)
    if problem is not None:
        path, what = problem
        raise ApiError(400, "invalid_body", f"{path or 'body'} {what}", field=path or None)
    return body


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError:
        raise
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", "request body too large") from None
    except web.HTTPException as exc:
        if exc.status_code < 400 or exc.content_type == "application/json":
            raise
        code = re.sub(r"[^a-z]+", "_", (exc.reason or "error").lower()).strip("_")
        raise ApiError(exc.status_code, code, exc.reason or "error") from None
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        raise ApiError(500, "internal_error", "internal error") from None


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@web.middleware
async def text_input_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every path parameter and query value is text PostgreSQL can hold (no NUL, valid
    Unicode), whatever the handler does with it: a NUL in a search was a 500."""
    for source in (request.match_info, request.query):
        for name, value in source.items():
            problem = text_problem(value) or text_problem(name)
            if problem:
                raise ApiError(400, "invalid_parameter", f"{name} {problem}", field=name)
    return await handler(request)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The raw body with its own size limit (the app's is for API bodies), or 413."""
    try:
        return await request.clone(client_max_size=limit).read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"request body larger than {limit} bytes") from None


@web.middleware
async def finish_changes_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request whose client goes away is cancelled (the server runs with handler
    cancellation, so a read's query is cancelled with it); a change runs to its end instead,
    so a disconnect never leaves one half done (a provider charged, our row not written).
    A WebSocket is a change too: its handler ends on its own when the socket goes, and must
    get to record the participant's leaving."""
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if request.method in _SAFE_METHODS and not upgrade:
        return await handler(request)
    change = asyncio.ensure_future(handler(request))
    try:
        return await asyncio.shield(change)
    except asyncio.CancelledError:
        # Nobody awaits it now: the node waits for it before closing its pools
        # (``finish_orphaned_changes``); a bug in it was logged by error_middleware.
        _keep_until_done(request.app, change)
        raise


def finish_after_reply(app: web.Application, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` on its own, after the reply has gone (so its duration does not show in
    the reply's); the node waits for it, as for orphaned changes, before closing its pools.
    ``work`` handles and logs its own failures."""
    _keep_until_done(app, asyncio.ensure_future(work))


def _keep_until_done(app: web.Application, work: asyncio.Future[Any]) -> None:
    pending = app[ORPHANED_CHANGES]
    pending.add(work)
    work.add_done_callback(pending.discard)
    work.add_done_callback(lambda done: done.cancelled() or done.exception())


# Work that outlives its request: changes whose clients left, and work done after a reply.
ORPHANED_CHANGES = web.AppKey("orphaned_changes", set[asyncio.Future[Any]])
ORPHAN_WAIT_SECONDS = 10.0


async def finish_orphaned_changes(app: web.Application) -> None:
    """on_shutdown: changes whose clients left finish before the database pool closes."""
    pending: set[asyncio.Future[Any]] = app[ORPHANED_CHANGES]
    orphans = list(pending)
    if orphans:
        await asyncio.wait(orphans, timeout=ORPHAN_WAIT_SECONDS)


class MalformedHttpLogFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (a bad header, a broken request line) as an
    ERROR with a traceback: the client's fault, not ours, and noise that hides real errors.
    Logged as one INFO line instead, naming what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = (
                "malformed HTTP request refused (%s): %s",
                (
                    type(exc).__name__,
                    exc.message,
                ),
            )
            record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_http_logs() -> None:
    """Install ``MalformedHttpLogFilter`` on aiohttp's server logger (once per process)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpLogFilter) for f in server_log.filters):
        server_log.addFilter(MalformedHttpLogFilter())
