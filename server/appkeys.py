"""Typed keys of what ``create_app`` puts on the application."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from server.auth.ended_sessions import OpenSessions
from server.auth.passwords import PasswordWorkers
from server.auth.revocations import SessionEnds
from server.auth.tokens import TokenIssuer
from server.config import Config
from server.keys import Keys


@dataclass
class NodeHealth:
    """What /readyz reports besides the database and Redis.

    ``draining`` is a plain flag to read and set (SIGTERM sets it); ``wait_for_draining``
    lets a task sleep until it is set, instead of polling it.
    """

    reasons: list[str] = field(default_factory=list)
    _drain_started: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def draining(self) -> bool:
        return self._drain_started.is_set()

    @draining.setter
    def draining(self, value: bool) -> None:
        if value:
            self._drain_started.set()
        else:
            self._drain_started.clear()

    async def wait_for_draining(self) -> None:
        await self._drain_started.wait()


CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
KEYS = web.AppKey("keys", Keys)
HEALTH = web.AppKey("health", NodeHealth)
METRICS = web.AppKey("metrics", CollectorRegistry)
TOKENS = web.AppKey("tokens", TokenIssuer)
PASSWORDS = web.AppKey("passwords", PasswordWorkers)
OPEN_SESSIONS = web.AppKey("open_sessions", OpenSessions)
SESSION_ENDS = web.AppKey("session_ends", SessionEnds)
