"""Helpers for the diary tests: a real SMTP server (aiosmtpd) and diary-ready configs."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller

from server.config import Config, OutboxConfig, SmtpConfig
from server.diary.links import LinkSigner
from server.diary.worker import OutboxWorker
from tests.support import ApiClient, PracticeFixture, login_as

LINK_PATTERN = re.compile(r"https?://[^\s/]+/v/([A-Za-z0-9_-]{43})")


@dataclass
class RecordingHandler:
    """Accepts mail and keeps it; ``refusals`` are replies given to the next DATA commands,
    ``recipient_refusals`` to the next RCPT TO commands."""

    received: list[EmailMessage] = field(default_factory=list)
    refusals: deque[str] = field(default_factory=deque)
    recipient_refusals: deque[str] = field(default_factory=deque)
    refused: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.recipient_refusals:
            self.refused += 1
            return self.recipient_refusals.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusals:
            self.refused += 1
            return self.refusals.popleft()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[EmailMessage]:
        return self.handler.received

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 (tests wrap it in their own ``smtp_server`` fixture)."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


def diary_config(config: Config, smtp: SmtpServer, *, worker: bool = False) -> Config:
    """The test config with mail going to ``smtp`` and quick retries. ``worker=False``: the
    app runs no worker; tests drive ``OutboxWorker.send_due()`` themselves."""
    return replace(
        config,
        smtp=SmtpConfig(host=smtp.host, port=smtp.port, sender="practice@videoconsult.test"),
        outbox=OutboxConfig(
            enabled=worker,
            poll_seconds=0.05,
            max_attempts=3,
            retry_base_seconds=0.2,
            lease_seconds=4.0,
        ),
    )


def make_worker(pool: asyncpg.Pool, config: Config) -> OutboxWorker:
    return OutboxWorker.from_config(pool, config)


def signer_for(config: Config) -> LinkSigner:
    return LinkSigner(config.secret_key, config.base_url)


def tokens_in(text: str) -> list[str]:
    return LINK_PATTERN.findall(text)


def body_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.05
) -> None:
    """Poll until ``predicate`` holds (instead of sleeping a fixed time)."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def next_weekday_at(hour: int, days_ahead: int = 7) -> datetime:
    """A whole hour (UTC) some days ahead, far enough for reminders to be in the future."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return base.replace(hour=hour) + timedelta(days=days_ahead)


def booking_body(practice: PracticeFixture, starts_at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "clinician_id": str(practice.clinician.id),
        "client_id": str(practice.client.id),
        "type_id": str(practice.video_type.id),
        "starts_at": starts_at.isoformat(),
        **extra,
    }


async def book(
    client: ApiClient,
    practice: PracticeFixture,
    starts_at: datetime,
    role: str = "receptionist",
    expect: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    headers = await login_as(client, practice, role)
    response = await client.post(
        "/api/appointments", json=booking_body(practice, starts_at, **extra), headers=headers
    )
    body: dict[str, Any] = await response.json()
    assert response.status == expect, body
    return body


async def make_due_now(db: asyncpg.Pool, message_ids: list[uuid.UUID]) -> None:
    """Time travel for scheduled messages: make them due now (their send time passes)."""
    await db.execute(
        "UPDATE outbox_messages SET next_attempt_at = now() WHERE id = ANY($1::uuid[])",
        message_ids,
    )


async def prefer_channel(db: asyncpg.Pool, client_id: uuid.UUID, channel: str) -> None:
    """The client's preferred channel (``email`` | ``sms``), as their page would set it."""
    await db.execute("UPDATE clients SET preferred_channel = $2 WHERE id = $1", client_id, channel)
