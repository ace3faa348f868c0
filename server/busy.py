"""Overload and unreachable backing services answer 503 with Retry-After, never 500.

A node holds at most ``database_pool_size`` PostgreSQL and ``redis_max_connections`` Redis
connections. Under a burst (1,000 clinicians pressing Switch to Video at once) requests
queue for a connection; one that has waited ``pool_wait_seconds`` gets 503 ``busy`` so the
browser retries, instead of the 500 that redis-py's non-blocking pool used to cause ("Too
many connections" the moment the 101st request needed Redis). A Redis or PostgreSQL that
cannot be reached at all is 503 ``unavailable``: the request changed nothing and a retry
(to this node or another) is the right move, as readiness already reports.
"""

from __future__ import annotations

import logging

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import web

from server.config import Config
from server.http import ApiError, Handler

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1

# Refusals of a PostgreSQL server that is full or starting/stopping: nothing was done.
_DATABASE_UNAVAILABLE = (
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
)


def redis_client(config: Config) -> aioredis.Redis:
    """Redis with a bounded pool that *waits* for a free connection (up to the pool wait)."""
    assert config.redis_url
    pool = aioredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.redis_max_connections,
        timeout=config.pool_wait_seconds,
        # Short socket timeouts: readiness must answer "Redis down" quickly, not hang.
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
    )
    return aioredis.Redis(connection_pool=pool)


def _busy() -> ApiError:
    return ApiError(
        503,
        "busy",
        "The server is busy: retry in a moment",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


def _unavailable(what: str) -> ApiError:
    return ApiError(
        503,
        "unavailable",
        f"The server cannot reach its {what}: retry in a moment",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


def is_pool_wait_timeout(exc: BaseException) -> bool:
    """redis-py's blocking pool gave up waiting for a free connection (not a dead server)."""
    return isinstance(exc, redis.exceptions.ConnectionError) and isinstance(
        exc.__cause__, TimeoutError
    )


@web.middleware
async def busy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inside ``error_middleware``: turns overload into 503 before it could become a 500."""
    try:
        return await handler(request)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        if is_pool_wait_timeout(exc):
            _log_refusal(request, "all Redis connections busy")
            raise _busy() from None
        _log_refusal(request, f"Redis unreachable ({exc})")
        raise _unavailable("session store") from None
    except TimeoutError:
        # asyncpg's pool.acquire(timeout=...) and our own bounded waits.
        _log_refusal(request, "timed out waiting for a connection")
        raise _busy() from None
    except asyncpg.QueryCanceledError:
        # The statement timeout: the query was stopped by PostgreSQL and its transaction
        # rolled back, so nothing changed.
        _log_refusal(request, "a query passed the statement timeout")
        raise ApiError(
            503,
            "query_timeout",
            "The server took too long to answer: retry in a moment",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            retry_after_seconds=RETRY_AFTER_SECONDS,
        ) from None
    except asyncpg.InterfaceError as exc:
        if not _pool_closed(exc):
            raise
        # The node is stopping (its pool closed under a request still in flight): nothing
        # was done, and another node (or this one restarted) can answer the retry.
        _log_refusal(request, "the node is stopping (database pool closed)")
        raise _unavailable("database") from None
    except _DATABASE_UNAVAILABLE as exc:
        _log_refusal(request, f"database unavailable ({type(exc).__name__})")
        raise _unavailable("database") from None
    except OSError as exc:
        # asyncpg opening a pool connection to a stopped PostgreSQL raises the socket's
        # own OSError (ConnectionRefusedError, or "Multiple exceptions" for several
        # addresses); Redis's are wrapped above, so an OSError here is the database's.
        _log_refusal(request, f"database unreachable ({type(exc).__name__}: {exc})")
        raise _unavailable("database") from None


def _pool_closed(exc: asyncpg.InterfaceError) -> bool:
    # asyncpg says so only in the message ("pool is closing" / "pool is closed"); any other
    # InterfaceError is a misuse of a connection, a bug that must stay a logged 500.
    return str(exc).startswith(("pool is closing", "pool is closed"))


def _log_refusal(request: web.Request, why: str) -> None:
    log.warning("503 for %s %s: %s", request.method, request.path, why)
