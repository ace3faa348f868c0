"""Load balancer and monitoring endpoints: /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from server.appkeys import DB, HEALTH, METRICS, REDIS
from server.http import json_response

READINESS_TIMEOUT_SECONDS = 1.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """200 when this node should get new work: database and Redis answer, not draining."""
    reasons: list[str] = []
    if request.app[HEALTH].draining:
        reasons.append("draining")
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await request.app[DB].fetchval("SELECT 1")
    except Exception as exc:  # any failure at all means "not ready", with its reason
        reasons.append(f"database unavailable: {type(exc).__name__}")
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await request.app[REDIS].ping()
    except Exception as exc:
        reasons.append(f"redis unavailable: {type(exc).__name__}")
    if reasons:
        return json_response({"status": "not_ready", "reasons": reasons}, status=503)
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_middleware(
    requests: Counter, latency: Histogram
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status_code
            raise
        finally:
            requests.labels(request.method, name, str(status)).inc()
            latency.labels(name).observe(time.perf_counter() - started)

    return middleware
