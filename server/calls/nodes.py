"""Which nodes are alive: each node keeps a heartbeat key in Redis, renewed on a timer.

A node that stops without cleaning up (crash, ``kill -9``, lost network) lets its key
expire within ``node_ttl_seconds``; its calls are then taken over (see ``recovery``).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from server.keys import Keys

log = logging.getLogger(__name__)


class NodeRegistry:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        node_id: str,
        *,
        heartbeat_seconds: float,
        ttl_seconds: float,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self._interval = heartbeat_seconds
        self._ttl_ms = int(ttl_seconds * 1000)
        self._stopping = False

    async def beat(self) -> None:
        await self._redis.set(self._keys.node_heartbeat(self.node_id), b"1", px=self._ttl_ms)

    async def is_alive(self, node_id: str) -> bool:
        if node_id == self.node_id:
            return True
        return bool(await self._redis.exists(self._keys.node_heartbeat(node_id)))

    async def alive_among(self, node_ids: list[str]) -> set[str]:
        """The nodes of ``node_ids`` whose heartbeat is current (this node always is)."""
        alive = {self.node_id}
        others = [node for node in node_ids if node != self.node_id]
        if others:
            pipe = self._redis.pipeline(transaction=False)
            for node in others:
                pipe.exists(self._keys.node_heartbeat(node))
            for node, exists in zip(others, await pipe.execute(), strict=True):
                if exists:
                    alive.add(node)
        return alive

    async def run(self) -> None:
        """Renew the heartbeat until ``stop``; a failed renewal is retried next beat."""
        while not self._stopping:
            try:
                await self.beat()
            except Exception:
                log.warning("node heartbeat failed", exc_info=True)
            await asyncio.sleep(self._interval)

    def stop(self) -> None:
        self._stopping = True

    async def leave(self) -> None:
        """Graceful stop: this node is gone at once rather than after the TTL."""
        self._stopping = True
        await self._redis.delete(self._keys.node_heartbeat(self.node_id))
