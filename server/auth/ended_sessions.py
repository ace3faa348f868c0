"""Ending a session closes what it holds open, on every node, within a second.

A staff session can hold long-lived things a request check never sees again: the
clinician's call WebSocket and the dashboard's event stream. When a session ends (logout)
or its user loses access (deactivated, a role removed, a new password), the node that
decided publishes ``SessionsEnded`` on one Redis channel; every node listens and closes what
it holds for that session or user. After (re)subscribing, a node re-checks everything it
holds against the revocations (``SessionEnds``), so a message missed while Redis was away
is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import msgspec
import redis.asyncio as aioredis
import redis.exceptions

from server.auth.revocations import SessionEnds
from server.background import stop_tasks

log = logging.getLogger(__name__)

RESUBSCRIBE_SECONDS = 1.0
Closer = Callable[[], Awaitable[None]]


class SessionsEnded(msgspec.Struct, frozen=True):
    """Either one session (``jti``: logout) or every session of ``user_id`` issued before
    ``issued_before`` (UNIX seconds: the user lost access)."""

    user_id: uuid.UUID
    jti: str | None = None
    issued_before: float | None = None


@dataclass(frozen=True)
class _Held:
    jti: str
    issued_at: float
    close: Closer


_decoder = msgspec.json.Decoder(SessionsEnded)


class OpenSessions:
    """What this node holds open per staff session, and the listener that closes it."""

    def __init__(self, ends: SessionEnds, subscriber: aioredis.Redis) -> None:
        """``subscriber``: a client of its own for the channel, so the listener never takes
        one of the connections requests share (``ends.redis``)."""
        self._ends = ends
        self._subscriber = subscriber
        self._held: dict[uuid.UUID, dict[int, _Held]] = {}
        self._ids = itertools.count()
        self.subscribed = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(by_id) for by_id in self._held.values())

    @contextlib.contextmanager
    def hold(self, user_id: uuid.UUID, jti: str, issued_at: float, close: Closer) -> Iterator[None]:
        """While the block runs, ending this session (or its user's access) calls ``close``."""
        held_id = next(self._ids)
        self._held.setdefault(user_id, {})[held_id] = _Held(jti, issued_at, close)
        try:
            yield
        finally:
            by_id = self._held.get(user_id, {})
            by_id.pop(held_id, None)
            if not by_id:
                self._held.pop(user_id, None)

    async def publish(self, ended: SessionsEnded) -> None:
        channel = self._ends.keys.sessions_ended_channel()
        await self._ends.redis.publish(channel, msgspec.json.encode(ended))

    async def close_ended(self, ended: SessionsEnded) -> None:
        matching = [
            held
            for held in self._held.get(ended.user_id, {}).values()
            if held.jti == ended.jti
            or (ended.issued_before is not None and held.issued_at < ended.issued_before)
        ]
        await asyncio.gather(*(_close(held) for held in matching))

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Listens on the channel while the block runs (the node's life)."""
        listener = asyncio.create_task(self.listen(), name="session-end listener")
        try:
            yield
        finally:
            await stop_tasks([listener])

    async def listen(self) -> None:
        """Runs for the node's life: subscribe, re-check, close what each message ends."""
        channel = self._ends.keys.sessions_ended_channel()
        while True:
            try:
                async with self._subscriber.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    await self._recheck_all()
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        await self._handle(message.get("data"))
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
                # The re-check reads PostgreSQL on a cache miss: until it answers, this
                # node keeps retrying rather than listening with an unchecked past.
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
            ):
                self.subscribed.clear()
                log.warning("session-end channel lost (or re-check failed); subscribing again")
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def _handle(self, data: object) -> None:
        if not isinstance(data, bytes):
            return
        try:
            ended = _decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed session-end message")
            return
        await self.close_ended(ended)

    async def _recheck_all(self) -> None:
        """Close whatever was ended while this node was not listening."""
        for user_id, by_id in list(self._held.items()):
            for held in list(by_id.values()):
                if await self._ends.refusal(user_id, held.jti, held.issued_at) is not None:
                    await _close(held)


async def _close(held: _Held) -> None:
    try:
        await held.close()
    except Exception:
        log.exception("closing an ended session's connection failed")
