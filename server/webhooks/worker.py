"""The webhook worker: runs in every node, POSTs due events, retries with back-off.

It shares the outbox's settings (poll interval, attempts, back-off, lease) and its
claim / send / record protocol (``store``). A 2xx answer is a delivery; any other status, a
timeout or a lost connection is a failed attempt, retried after ``backoff_seconds`` until
the attempts run out. Every attempt is logged for the settings page. Redirects are not
followed (a receiver that moved must be reconfigured, not guessed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from server.appkeys import CONFIG, DB
from server.config import OutboxConfig
from server.diary.worker import (
    BATCH_SIZE,
    STOP_TIMEOUT_SECONDS,
    backoff_seconds,
    poll_until_stopped,
)
from server.webhooks import store
from server.webhooks.events import event_body, message_id
from server.webhooks.signing import endpoint_secret, signed_headers
from server.webhooks.store import ClaimedDelivery

log = logging.getLogger(__name__)
_ERROR_BODY_CHARS = 200


class WebhookWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: OutboxConfig,
        server_secret: str,
        timeout_seconds: float,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._server_secret = server_secret
        # A send must end well inside the lease, or another worker could take the row.
        self._timeout = min(timeout_seconds, settings.lease_seconds / 4)
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await poll_until_stopped(
            "webhook worker", self.deliver_due, self._stopping, self._settings.poll_seconds
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def deliver_due(self) -> int:
        """One pass: claim due deliveries and POST them. Returns how many were attempted."""
        loop = asyncio.get_running_loop()
        claimed = await store.claim_due(self._pool, BATCH_SIZE, self._settings.lease_seconds)
        lease_ends = loop.time() + self._settings.lease_seconds
        for index, delivery in enumerate(claimed):
            if self._stopping.is_set() or lease_ends - loop.time() < 2 * self._timeout:
                await store.release(self._pool, claimed[index:])
                return index
            await self._deliver(delivery)
        return len(claimed)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        data = msgspec.json.decode(delivery.payload)
        body = event_body(delivery.event_type, delivery.created_at, data)
        secret = endpoint_secret(self._server_secret, delivery.secret_salt)
        headers = signed_headers(secret, message_id(delivery.event_id), int(time.time()), body)
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                delivery.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as reply:
                status = reply.status
                if not 200 <= status < 300:
                    text = (await reply.text(errors="replace"))[:_ERROR_BODY_CHARS]
                    error = f"HTTP {status}" + (f": {text}" if text else "")
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = int((time.monotonic() - started) * 1000)
        last = delivery.attempts >= self._settings.max_attempts
        retry_in = (
            None if error is None or last else backoff_seconds(self._settings, delivery.attempts)
        )
        if error is not None:
            log.warning(
                "webhook %s to %s failed (attempt %d): %s; %s",
                delivery.event_type,
                delivery.url,
                delivery.attempts,
                error,
                "giving up" if retry_in is None else f"retrying in {retry_in:.1f} s",
            )
        await store.record_attempt(self._pool, delivery, status, error, duration_ms, retry_in)


async def webhook_worker(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: this node's webhook worker, stopped with the app."""
    config = app[CONFIG]
    if not config.outbox.enabled:
        yield
        return
    worker = WebhookWorker(
        app[DB], config.outbox, config.secret_key, config.webhooks.timeout_seconds
    )
    task = asyncio.create_task(worker.run(), name="webhook-worker")
    try:
        yield
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("webhook worker did not stop in %.0f s; cancelled", STOP_TIMEOUT_SECONDS)
        await worker.close()
