"""One node's call engine, built in ``create_app``'s cleanup_ctx.

Start-up: heartbeat at once (so no other node takes this node's calls), then the heartbeat
loop, the relay listener (``signalling.relay``: messages of participants whose sockets are
on other nodes, and ownership announcements), the takeover sweep (calls of lost nodes),
the sweep closing open calls nobody came back to (``unattended``) and the meter flusher.

Stepping down (``step_down``): another node claimed a call this node still runs, a write
for it failed its fence, or this node's heartbeat was not renewed for nearly a TTL. The
room is dropped, the meter stops, the legs close and every participant's socket is closed
with ``call_moved``, so the browsers reconnect and land on the call's owner.

Graceful stop (SIGTERM: the CLI drains, then runs the app's shutdown and cleanup):
``on_shutdown`` closes every call socket with 1001 "going away" (browsers reconnect, to
whichever node answers), which stops the meter of each call; cleanup then releases the
meter's live calls, the flusher writes the final readings with their checkpoints, the
calls are released (``owner_node`` NULL, epoch raised) and announced, and the heartbeat
key deleted, so the next node continues each call from exactly where this one stopped
(R-M10).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import web

from media.cadence import PollCadence
from server.appkeys import CONFIG, DB, HEALTH, KEYS, METRICS, REDIS
from server.background import stop_tasks
from server.calls.directory import CallDirectory
from server.calls.hub import CLOSE_NODE_STOPPING, SocketHub
from server.calls.media_control import ServerMediaLegs, ice_settings_for
from server.calls.nodes import NodeRegistry
from server.calls.ownership import CallMoved, CallOwnership
from server.calls.routing import ClusterMetrics, refusal_for
from server.calls.sink import LedgerCheckpointSink
from server.calls.store import PgCallStore
from server.calls.unattended import run_unattended_sweep
from signalling.meter import Meter, MeterFlusher, UnknownCall
from signalling.model import Role
from signalling.relay import CLOSE_REASON_MOVED, OwnerChanged, RedisRouter
from signalling.room import LoadedCall, Room
from signalling.router import Rooms, RoutedMessage

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class KeyedLocks:
    """One ``asyncio.Lock`` per key, kept only while someone holds it or waits for it.

    A plain ``dict.setdefault(key, Lock())`` keeps a lock for every key ever used (every
    appointment ever started, for the life of the node); here the last one out drops it.
    """

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """How many keys have a lock now (held or waited for)."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            # Also on cancellation while waiting: the count is ours to give back.
            _, left = self._locks[key]
            if left > 1:
                self._locks[key] = (lock, left - 1)
            else:
                del self._locks[key]


def new_protocol_id() -> str:
    """Confirm, end-request and stream ids: unguessable, so a client cannot forge one."""
    return secrets.token_urlsafe(12)


@dataclass
class CallEngine:
    node_id: str
    nodes: NodeRegistry
    ownership: CallOwnership
    directory: CallDirectory
    store: PgCallStore
    meter: Meter
    flusher: MeterFlusher
    hub: SocketHub
    rooms: Rooms
    router: RedisRouter
    media: ServerMediaLegs
    metrics: ClusterMetrics
    stopping: bool = False
    opening: KeyedLocks = field(default_factory=KeyedLocks)

    def opening_lock(
        self, appointment_id: uuid.UUID
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialises Switch to Video per appointment (a double click waits for the first)."""
        return self.opening.hold(appointment_id)

    async def place_call(self, call_id: str) -> str:
        """Placement by load: the node that will own the call about to be opened."""
        try:
            owner = await self.nodes.least_loaded(await self.store.open_calls_by_owner())
        except (redis.exceptions.RedisError, OSError):
            owner = self.node_id
        self.store.place(call_id, owner)
        return owner

    async def announce_opened(self, call_id: str, appointment_id: uuid.UUID, owner: str) -> None:
        """A waiting room opened here, owned by ``owner``: other nodes' not-yet-opened rooms
        of the appointment (a client waiting there) close, so their browsers reconnect into
        this call; if another node owns it, this node's room closes the same way."""
        self.store.unplace(call_id)
        if owner != self.node_id:
            await self.step_down(call_id)
        try:
            await self.router.announce_owner(call_id, owner, str(appointment_id))
        except (redis.exceptions.RedisError, OSError):
            log.warning("call %s: announcing its opening failed", call_id, exc_info=True)

    async def step_down(self, call_id: str, reason: str = CLOSE_REASON_MOVED) -> None:
        """Stop running the call here at once (see the module's docstring)."""
        self.ownership.forget(call_id)
        room = self.rooms.evict(call_id)
        with contextlib.suppress(UnknownCall):
            self.meter.release_call(call_id, utc_now())
        await self.media.close_legs(call_id)
        if room is not None:
            for role, connection_id in room.connections.items():
                await self.router.close(call_id, role, connection_id, reason)
            log.warning("call %s: stepped down (%s)", call_id, reason)

    async def move_calls_away(self) -> list[str]:
        """Drain (SIGTERM): hand every call to the other nodes now, losing no second.

        The meter's calls close with their checkpoints and are flushed, the rows are
        released (epoch raised) and announced, so every relayed socket reconnects, and
        this node's own sockets are closed to reconnect elsewhere (R-M10, R-A3)."""
        _release_meter(self.meter)
        try:
            await self.flusher.flush()
        except Exception:
            log.warning("drain: final flush failed; the readings stay pending", exc_info=True)
        for call_id in self.rooms.call_ids:
            self.rooms.evict(call_id)
            await self.media.close_legs(call_id)
        released = await self.ownership.release_all()
        for call_id in released:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self.router.announce_owner(call_id, None)
        await self.hub.close_all(CLOSE_NODE_STOPPING, "server draining: reconnect")
        log.info("drain: moved %d call(s) to other nodes", len(released))
        return released

    async def step_down_from_all(self, reason: str = CLOSE_REASON_MOVED) -> None:
        for call_id in sorted(set(self.ownership.held) | set(self.rooms.call_ids)):
            await self.step_down(call_id, reason)

    async def owner_changed(self, changed: OwnerChanged) -> None:
        if changed.owner != self.node_id and (
            self.ownership.is_owner(changed.call_id) or changed.call_id in self.rooms
        ):
            await self.step_down(changed.call_id)
        if (
            changed.owner == self.node_id
            and changed.appointment_id is not None
            and not self.ownership.is_owner(changed.call_id)
        ):
            # Placed here by the node that opened it: run the room now (its claim is
            # counted in this node's load from the next beat on).
            try:
                await self.rooms.room(changed.call_id)
            except Exception:
                log.warning("call %s: taking up the placed call failed", changed.call_id)
        if changed.appointment_id is not None:
            unopened = self.directory.unopened_call(uuid.UUID(changed.appointment_id))
            if unopened is not None and unopened != changed.call_id and unopened in self.rooms:
                await self.step_down(unopened, "call_opened")


CALL_ENGINE = web.AppKey("call_engine", CallEngine)


def add_call_engine(app: web.Application) -> None:
    """Wire the engine into ``app`` (after the database and Redis context)."""
    app.cleanup_ctx.append(_call_engine)
    app.on_shutdown.append(_close_call_sockets)


async def _close_call_sockets(app: web.Application) -> None:
    engine = app.get(CALL_ENGINE)
    if engine is not None:
        engine.stopping = True
        await engine.hub.close_all(CLOSE_NODE_STOPPING, "server restarting: reconnect")


async def _call_engine(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    pool = app[DB]
    nodes = NodeRegistry(
        app[REDIS],
        app[KEYS],
        config.node_id,
        heartbeat_seconds=config.calls.heartbeat_seconds,
        ttl_seconds=config.calls.node_ttl_seconds,
    )
    await nodes.beat()
    ownership = CallOwnership(pool, nodes)
    health = app[HEALTH]
    ownership.accepting = lambda: not (health.draining or engine.stopping)
    directory = CallDirectory(pool)
    store = PgCallStore(pool, directory, ownership)
    meter = Meter()
    hub = SocketHub()

    async def deliver_local(routed: RoutedMessage) -> None:
        try:
            await rooms.dispatch(routed)
        except CallMoved:
            # A write for the call failed its fence: another node owns it now.
            await engine.step_down(routed.call_id)
            raise

    async def owner_changed(changed: OwnerChanged) -> None:
        await engine.owner_changed(changed)

    keys = app[KEYS]
    assert config.redis_url
    subscriber = aioredis.Redis.from_url(config.redis_url, socket_connect_timeout=2.0)
    router = RedisRouter(
        app[REDIS],
        config.node_id,
        inbox=keys.node_inbox_channel,
        owners_channel=keys.call_owners_channel(),
        route=ownership.route,
        deliver_local=deliver_local,
        sockets=hub,
        refusal_for=refusal_for,
        on_owner_changed=owner_changed,
        subscriber=subscriber,
    )
    liveness_updates: set[asyncio.Task[None]] = set()

    def report_liveness(call_id: str, role: Role) -> None:
        # Called from the legs' status callbacks (not a coroutine): the room's event runs in
        # its own task, under the room's lock like every other event.
        task = asyncio.get_running_loop().create_task(
            _apply_liveness(rooms, media, call_id, role), name="media-liveness"
        )
        liveness_updates.add(task)
        task.add_done_callback(liveness_updates.discard)

    media = ServerMediaLegs(
        sockets=router,
        on_liveness=report_liveness,
        ice=ice_settings_for(config),
        registry=app[METRICS],
        poll_cadence=PollCadence(config.media.poll_interval_ms / 1000),
    )
    flusher = MeterFlusher(
        meter,
        LedgerCheckpointSink(pool, ownership),
        utc_now,
        interval=config.calls.meter_flush_seconds,
    )

    def make_room(call: LoadedCall) -> Room:
        return Room(
            call,
            store=store,
            sink=router,
            media=media,
            meter=meter,
            clock=utc_now,
            new_id=new_protocol_id,
            on_call_ended=flusher.request_flush,
        )

    rooms = Rooms(store, make_room)
    engine = CallEngine(
        node_id=config.node_id,
        nodes=nodes,
        ownership=ownership,
        directory=directory,
        store=store,
        meter=meter,
        flusher=flusher,
        hub=hub,
        rooms=rooms,
        router=router,
        media=media,
        metrics=ClusterMetrics(app[METRICS], router),
    )
    app[CALL_ENGINE] = engine
    stepping_down: set[asyncio.Task[None]] = set()

    async def announce_claimed(call_ids: list[str]) -> None:
        for call_id in call_ids:
            await router.announce_owner(call_id, config.node_id)

    def lease_lost() -> None:
        task = asyncio.get_running_loop().create_task(engine.step_down_from_all(), name="step-down")
        stepping_down.add(task)
        task.add_done_callback(stepping_down.discard)

    ownership.on_claimed = announce_claimed
    nodes.on_lease_lost = lease_lost
    nodes.load = lambda: len(rooms)
    nodes.draining = lambda: health.draining or engine.stopping

    async def move_calls_when_draining() -> None:
        await health.wait_for_draining()
        await engine.move_calls_away()

    background = [
        asyncio.create_task(move_calls_when_draining(), name="call-drain"),
        asyncio.create_task(nodes.run(), name="node-heartbeat"),
        asyncio.create_task(router.listen(), name="call-relay"),
        asyncio.create_task(
            ownership.run_takeover_sweep(config.calls.heartbeat_seconds), name="call-takeover"
        ),
        asyncio.create_task(
            run_unattended_sweep(
                pool,
                rooms,
                config.node_id,
                timedelta(minutes=config.link_grace_minutes),
                config.calls.unattended_sweep_seconds,
                utc_now,
                lambda: engine.stopping,
            ),
            name="unattended-calls",
        ),
    ]
    try:
        async with flusher:
            try:
                yield
            finally:
                engine.stopping = True
                nodes.stop()
                await stop_tasks(background)
                await hub.close_all(CLOSE_NODE_STOPPING, "server restarting: reconnect")
                await media.close()
                for update in list(liveness_updates):
                    update.cancel()
                _release_meter(meter)
        # Leaving the flusher wrote the final readings; now any node may take the calls.
        try:
            released = await ownership.release_all()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # Stopping without a database: the calls stay ours until our heartbeat lapses,
            # then another node takes them over (the failover path).
            log.warning("could not release this node's calls at stop: %s", exc)
            released = []
        if released:
            log.info("released %d open call(s) for other nodes to take over", len(released))
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                for call_id in released:
                    await router.announce_owner(call_id, None)
    finally:
        with contextlib.suppress(Exception):
            await nodes.leave()
        await subscriber.aclose()


async def _apply_liveness(rooms: Rooms, media: ServerMediaLegs, call_id: str, role: Role) -> None:
    """R-M8: the leg's liveness enters the call's machine as a ``MediaLiveness`` event."""
    if call_id not in rooms:
        return  # the call ended (its room is gone) or is not this node's
    try:
        async with rooms.using(call_id) as room:
            await room.media_liveness(role, media.is_live(call_id, role))
    except Exception:
        log.exception("call %s: recording %s's media liveness failed", call_id, role)


def _release_meter(meter: Meter) -> None:
    now = utc_now()
    for call_id in meter.call_ids:
        with contextlib.suppress(UnknownCall):  # an ended call's final reading is pending
            meter.release_call(call_id, now)
