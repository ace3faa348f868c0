"""Which nodes are alive: each node keeps a heartbeat key in Redis, renewed on a timer.

A node that stops without cleaning up (crash, ``kill -9``, lost network) lets its key
expire within ``node_ttl_seconds``; its calls are then taken over (see ``ownership``).

A missing key is only evidence of death once this node has watched the same Redis for a
whole TTL: after Redis restarts empty (or this node reconnects to it) every live node needs
up to one beat to write its key again, and judging earlier took healthy nodes' calls.
The Redis server's ``run_id`` tells a restart apart from a blip.

Placement by load: every beat also writes the node's load (its live rooms and its CPU share
since the previous beat) into one hash; Switch to Video places a new call on the ready
(alive, not draining) node with the fewest calls, then the least CPU, and counts the call
there at once so that a burst of openings between two beats spreads too.

The node judges itself too: when its own heartbeat has not been renewed for nearly a TTL
(cut off from Redis, or the process was paused) others may already have judged it dead,
so ``lease_lost`` fires and the node steps down from every call it owns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self._interval = heartbeat_seconds
        self._ttl = ttl_seconds
        self._ttl_ms = int(ttl_seconds * 1000)
        self._clock = clock
        self._stopping = False
        self._redis_run_id: str | None = None
        self._watching_since = clock()
        self._last_beat = clock()
        self._lease_lost_reported = False
        self.on_lease_lost: Callable[[], None] = lambda: None
        self.load: Callable[[], int] = lambda: 0
        self.draining: Callable[[], bool] = lambda: False
        self._cpu_mark = (time.process_time(), time.monotonic())

    @property
    def ttl_seconds(self) -> float:
        return self._ttl

    async def beat(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._keys.node_heartbeat(self.node_id), b"1", px=self._ttl_ms)
        pipe.hset(self._keys.node_loads(), self.node_id, self._load_field())
        pipe.info("server")
        _, _, info = await pipe.execute()
        now = self._clock()
        self._note_redis_server(info, now)
        self._last_beat = now
        self._lease_lost_reported = False

    def _note_redis_server(self, info: Mapping[str, object], now: float) -> bool:
        """Record which Redis server answered; False if it is not the one watched so far
        (it restarted, maybe empty): then no node may be judged for a whole TTL."""
        run_id = str(info.get("run_id", ""))
        if run_id == self._redis_run_id:
            return True
        if self._redis_run_id is not None:
            log.warning("Redis restarted: judging no node dead for %.1f s", self._ttl)
        self._redis_run_id = run_id
        self._watching_since = now
        return False

    def _load_field(self) -> str:
        cpu, wall = time.process_time(), time.monotonic()
        last_cpu, last_wall = self._cpu_mark
        self._cpu_mark = (cpu, wall)
        cpu_pct = round(100 * (cpu - last_cpu) / max(wall - last_wall, 1e-3))
        return f"{self.load()} {cpu_pct}" + (" draining" if self.draining() else "")

    async def least_loaded(self, open_calls: Mapping[str, int] | None = None) -> str:
        """The ready node to place a new call on (this node if no other is known ready).

        ``open_calls``: each node's open calls from the database, when known; it wins over
        the heartbeat's count, which lags a placement until the owner takes the room up
        (a beat in between would otherwise undo the count and stack calls on one node)."""
        loads_key = self._keys.node_loads()
        loads = {
            _text(node): _text(load)
            for node, load in (await self._redis.hgetall(loads_key)).items()
        }
        others = [node for node in loads if node != self.node_id]
        alive = await self.alive_among(others)
        candidates: list[tuple[int, int, str]] = []
        for node, load in loads.items():
            parts = load.split()
            if node not in alive or "draining" in parts or len(parts) < 2:
                continue
            calls = int(parts[0]) if open_calls is None else open_calls.get(node, 0)
            candidates.append((calls, int(parts[1]), node))
        if self.node_id not in {node for *_, node in candidates} and not self.draining():
            own = self.load() if open_calls is None else open_calls.get(self.node_id, 0)
            candidates.append((own, 0, self.node_id))
        if not candidates:
            return self.node_id
        calls, cpu, chosen = min(candidates)
        pipe = self._redis.pipeline(transaction=False)
        # Counted at once: the next placement before the node's beat sees this call there.
        pipe.hset(loads_key, chosen, f"{calls + 1} {cpu}")
        stale = [node for node in others if node not in alive]
        if stale and self.may_judge_others():
            pipe.hdel(loads_key, *stale)
        await pipe.execute()
        return chosen

    def may_judge_others(self) -> bool:
        """A whole TTL watched on this Redis: a missing heartbeat now means a dead node."""
        return self._clock() - self._watching_since >= self._ttl

    def lease_at_risk(self) -> bool:
        """This node's heartbeat is (nearly) a TTL old: others may take its calls."""
        return self._clock() - self._last_beat >= self._ttl - self._interval

    async def is_alive(self, node_id: str) -> bool:
        if node_id == self.node_id:
            return True
        return bool(await self._redis.exists(self._keys.node_heartbeat(node_id)))

    async def alive_among(self, node_ids: list[str]) -> set[str]:
        """The nodes of ``node_ids`` whose heartbeat is current (this node always is).

        The same round trip asks which Redis server answers: one that restarted since this
        node's last beat has lost every heartbeat, so then every node counts as alive (and
        ``may_judge_others`` turns false for a TTL). Checking only at the beat left a gap:
        a sweep between the restart and the next beat took a healthy node's call."""
        alive = {self.node_id}
        others = [node for node in node_ids if node != self.node_id]
        if others:
            pipe = self._redis.pipeline(transaction=False)
            for node in others:
                pipe.exists(self._keys.node_heartbeat(node))
            pipe.info("server")
            *found, info = await pipe.execute()
            if not self._note_redis_server(info, self._clock()):
                return alive | set(others)
            for node, exists in zip(others, found, strict=True):
                if exists:
                    alive.add(node)
        return alive

    async def run(self) -> None:
        """Renew the heartbeat until ``stop``; a failed renewal is retried next beat."""
        while not self._stopping:
            # Checked before renewing: a process paused past its TTL (SIGSTOP) may have
            # lost its calls already, and renewing first would hide that.
            self._check_lease()
            try:
                await self.beat()
            except Exception:
                self._watching_since = self._clock()
                log.warning("node heartbeat failed", exc_info=True)
                self._check_lease()
            await asyncio.sleep(self._interval)

    def _check_lease(self) -> None:
        if self.lease_at_risk() and not self._lease_lost_reported:
            self._lease_lost_reported = True
            log.warning(
                "heartbeat not renewed for %.1f s: stepping down from every call",
                self._clock() - self._last_beat,
            )
            self.on_lease_lost()

    def stop(self) -> None:
        self._stopping = True

    async def leave(self) -> None:
        """Graceful stop: this node is gone at once rather than after the TTL."""
        self._stopping = True
        await self._redis.delete(self._keys.node_heartbeat(self.node_id))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
