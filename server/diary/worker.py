"""The outbox worker: runs in every node, sends due messages, retries with back-off (R-B6).

See ``outbox`` for the claim / send / record protocol that lets any number of workers share
one database without sending a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web

from server.appkeys import CONFIG, DB
from server.config import Config, OutboxConfig
from server.diary import outbox
from server.diary.delivery import (
    DeliveryError,
    EmailSender,
    SmsSender,
    email_sender_for,
    sms_sender_for,
)
from server.diary.links import LinkSigner, link_is_active
from server.diary.outbox import ClaimedMessage
from server.diary.templates import Channel, fill_video_link

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600.0
BATCH_SIZE = 20
STOP_TIMEOUT_SECONDS = 10.0
DEAD_LINK_REASON = "not sent: its video link is no longer active"


async def poll_until_stopped(
    name: str, one_pass: Callable[[], Awaitable[int]], stopping: asyncio.Event, poll_seconds: float
) -> None:
    """Run ``one_pass`` until ``stopping`` is set: a full batch goes again at once, a short
    one waits ``poll_seconds``; a database outage only delays the work (the outbox's and
    the webhook deliveries' workers)."""
    while not stopping.is_set():
        try:
            handled = await one_pass()
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            log.warning("%s: database unavailable (%s); will retry", name, exc)
            handled = 0
        except Exception:  # keep the node's only sender alive; the next pass retries
            log.exception("%s: unexpected error", name)
            handled = 0
        if handled < BATCH_SIZE:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), poll_seconds)


def backoff_seconds(settings: OutboxConfig, attempts: int) -> float:
    """Delay before the next try after ``attempts`` failed ones: base, 2x base, 4x base..."""
    return min(settings.retry_base_seconds * 2.0 ** (attempts - 1), MAX_BACKOFF_SECONDS)


def send_timeout_seconds(settings: OutboxConfig) -> float:
    """A send is given up after a quarter of the lease, and only started while at least
    half of the lease is left: a worker never sends on a lease another may have taken."""
    return settings.lease_seconds / 4


class OutboxWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: OutboxConfig,
        signer: LinkSigner,
        email: EmailSender,
        sms: SmsSender,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._signer = signer
        self._email = email
        self._sms = sms
        self._send_timeout = send_timeout_seconds(settings)
        self._stopping = asyncio.Event()

    @classmethod
    def from_config(cls, pool: asyncpg.Pool, config: Config) -> OutboxWorker:
        return cls(
            pool,
            config.outbox,
            LinkSigner(config.secret_key, config.base_url),
            email_sender_for(config, send_timeout_seconds(config.outbox)),
            sms_sender_for(config, send_timeout_seconds(config.outbox)),
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Send due messages until ``stop()``; a database outage only delays them."""
        await poll_until_stopped(
            "outbox worker", self.send_due, self._stopping, self._settings.poll_seconds
        )

    async def send_due(self) -> int:
        """One pass: claim a batch of due messages and deliver them. Returns how many."""
        loop = asyncio.get_running_loop()
        claimed = await outbox.claim_due(self._pool, BATCH_SIZE, self._settings.lease_seconds)
        lease_ends = loop.time() + self._settings.lease_seconds
        for index, message in enumerate(claimed):
            lease_left = lease_ends - loop.time()
            if self._stopping.is_set() or lease_left < 2 * self._send_timeout:
                await outbox.release(self._pool, claimed[index:])
                return index
            await self.deliver(message)
        return len(claimed)

    async def deliver(self, message: ClaimedMessage) -> None:
        """Send one claimed message (its link checked first) and record the outcome."""
        if message.link_id is not None and not await link_is_active(self._pool, message.link_id):
            # R-B10: the link died after this message was claimed (its call ended, it was
            # abandoned or cancelled meanwhile): a dead link is never sent.
            await outbox.cancel_claimed(self._pool, message, DEAD_LINK_REASON)
            return
        link = self._signer.url(message.link_id) if message.link_id else ""
        subject = fill_video_link(message.subject, link)
        body = fill_video_link(message.body, link)
        try:
            async with asyncio.timeout(self._send_timeout):
                if message.channel is Channel.EMAIL:
                    await self._email.send_email(message.id, message.recipient, subject, body)
                else:
                    await self._sms.send_sms(message.id, message.recipient, body)
        except (DeliveryError, TimeoutError) as exc:
            permanent = isinstance(exc, DeliveryError) and exc.permanent
            await self._record_failure(message, str(exc) or "timed out", permanent)
            if isinstance(exc, DeliveryError) and exc.bounced:
                await outbox.record_bounce(self._pool, message.id, str(exc))
        except Exception as exc:  # a bug in an adapter must not stop every other message
            log.exception("outbox: unexpected error sending %s", message.id)
            await self._record_failure(message, f"{type(exc).__name__}: {exc}", False)
        else:
            if not await outbox.mark_sent(self._pool, message):
                log.warning("outbox: %s sent after its claim was lost", message.id)

    async def _record_failure(self, message: ClaimedMessage, error: str, permanent: bool) -> None:
        last = permanent or message.attempts >= self._settings.max_attempts
        retry_in = None if last else backoff_seconds(self._settings, message.attempts)
        log.warning(
            "outbox: %s to %s failed (attempt %d): %s; %s",
            message.channel,
            message.recipient,
            message.attempts,
            error,
            "giving up" if last else f"retrying in {retry_in:.0f} s",
        )
        await outbox.record_failure(self._pool, message, error, retry_in)


async def outbox_worker(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: this node's worker, stopped gracefully with the app."""
    config = app[CONFIG]
    if not config.outbox.enabled:
        yield
        return
    worker = OutboxWorker.from_config(app[DB], config)
    task = asyncio.create_task(worker.run(), name="outbox-worker")
    try:
        yield
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            # Cancelled mid-send: the claimed rows are retried once their lease lapses.
            log.warning("outbox worker did not stop in %.0f s; cancelled", STOP_TIMEOUT_SECONDS)
