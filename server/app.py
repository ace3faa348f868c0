"""``create_app(config)``: all wiring of a node in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from server import call_pages, health, pages
from server.api_routes import add_api_routes
from server.appkeys import (
    CONFIG,
    DB,
    HEALTH,
    KEYS,
    METRICS,
    OPEN_SESSIONS,
    PASSWORDS,
    REDIS,
    SESSION_ENDS,
    TOKENS,
    NodeHealth,
)
from server.auth.ended_sessions import OpenSessions
from server.auth.passwords import MAX_WAITING_HASHES, PasswordWorkers, hashing_threads
from server.auth.revocations import SessionEnds
from server.auth.tokens import TokenIssuer
from server.busy import busy_middleware, redis_client
from server.calls import api as calls_api
from server.calls.engine import add_call_engine
from server.config import Config, ConfigError
from server.db import create_pool
from server.diary import api as diary_api
from server.diary.worker import outbox_worker
from server.http import (
    ORPHANED_CHANGES,
    error_middleware,
    finish_changes_middleware,
    finish_orphaned_changes,
    quiet_malformed_http_logs,
    text_input_middleware,
)
from server.keys import Keys
from server.openapi import openapi_document
from server.security_headers import add_security_headers
from server.wallet import api as wallet_api
from server.webhooks.worker import webhook_worker

log = logging.getLogger(__name__)


def create_app(config: Config) -> web.Application:
    if not config.database_url or not config.redis_url:
        raise ConfigError("DATABASE_URL and REDIS_URL must be set (or use embedded servers)")
    if not config.secret_key:
        raise ConfigError("SECRET_KEY: required")

    registry = CollectorRegistry()
    requests = Counter(
        "videoconsult_http_requests",
        "HTTP requests",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "videoconsult_http_request_seconds", "HTTP request latency", ["route"], registry=registry
    )
    app = web.Application(
        client_max_size=config.max_body_bytes,
        # busy_middleware inside error_middleware: overload is a 503, not a 500.
        middlewares=[
            health.metrics_middleware(requests, latency),
            # Outside the error mapping: a change whose client left still gets its errors
            # shaped (and a bug logged) by the middlewares inside.
            finish_changes_middleware,
            error_middleware,
            text_input_middleware,
            busy_middleware,
        ],
    )
    app[CONFIG] = config
    app[ORPHANED_CHANGES] = set()
    app.on_shutdown.append(finish_orphaned_changes)
    quiet_malformed_http_logs()
    app.on_response_prepare.append(add_security_headers)
    app[KEYS] = Keys(config.redis_prefix)
    app[HEALTH] = NodeHealth()
    app[METRICS] = registry
    app[TOKENS] = TokenIssuer(config.secret_key, config.jwt_issuer)
    app.cleanup_ctx.append(_connections)
    app.cleanup_ctx.append(_password_workers)
    app.cleanup_ctx.append(_open_sessions)
    add_call_engine(app)  # after _connections: it uses the database and Redis
    app.cleanup_ctx.append(outbox_worker)
    app.cleanup_ctx.append(webhook_worker)

    add_api_routes(app)
    app.router.add_get("/api/openapi.json", openapi_document)
    wallet_api.add_routes(app)
    diary_api.add_routes(app)
    calls_api.add_routes(app)
    pages.add_routes(app)
    call_pages.add_routes(app)
    return app


async def _open_sessions(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    assert config.redis_url
    subscriber = aioredis.Redis.from_url(config.redis_url, socket_connect_timeout=2.0)
    ends = SessionEnds(app[DB], app[REDIS], app[KEYS])
    app[SESSION_ENDS] = ends
    sessions = OpenSessions(ends, subscriber)
    app[OPEN_SESSIONS] = sessions
    try:
        async with sessions.listening():
            yield
    finally:
        await subscriber.aclose(close_connection_pool=True)


async def _password_workers(app: web.Application) -> AsyncIterator[None]:
    workers = PasswordWorkers(hashing_threads(), MAX_WAITING_HASHES, app[CONFIG].pool_wait_seconds)
    app[PASSWORDS] = workers
    try:
        yield
    finally:
        workers.close()


async def _connections(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    assert config.database_url and config.redis_url
    app[DB] = await create_pool(
        config.database_url,
        max_size=config.database_pool_size,
        statement_timeout_seconds=config.database_statement_timeout_seconds,
    )
    app[REDIS] = redis_client(config)
    try:
        yield
    finally:
        # The pool is ours (passed in), so Redis.aclose would leave its connections open.
        await app[REDIS].aclose(close_connection_pool=True)
        await app[DB].close()
