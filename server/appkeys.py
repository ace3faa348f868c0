"""Typed keys of what ``create_app`` puts on the application."""

from __future__ import annotations

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
    """What /readyz reports besides the database and Redis."""

    draining: bool = False
    reasons: list[str] = field(default_factory=list)


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
