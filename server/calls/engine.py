"""One node's call engine, built in ``create_app``'s cleanup_ctx.

Start-up: heartbeat at once (so no other node takes this node's calls), then the heartbeat
loop, the recovery sweep (taking over calls of lost nodes), the sweep closing open calls
nobody came back to (``unattended``) and the meter flusher.

Graceful stop (SIGTERM: the CLI drains, then runs the app's shutdown and cleanup):
``on_shutdown`` closes every call socket with 1001 "going away" (browsers reconnect, to
whichever node answers), which stops the meter of each call; cleanup then releases the
meter's live calls, the flusher writes the final readings with their checkpoints, the
calls are released (``owner_node`` NULL) and the heartbeat key deleted, so the next node
continues each call from exactly where this one stopped (R-M10).
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

from aiohttp import web

from server.appkeys import CONFIG, DB, KEYS, METRICS, REDIS
from server.calls.directory import CallDirectory
from server.calls.hub import CLOSE_NODE_STOPPING, SocketHub
from server.calls.media_control import ServerMediaLegs, ice_settings_for
from server.calls.nodes import NodeRegistry
from server.calls.recovery import run_recovery
from server.calls.sink import LedgerCheckpointSink
from server.calls.store import PgCallStore
from server.calls.unattended import run_unattended_sweep
from signalling.meter import Meter, MeterFlusher, UnknownCall
from signalling.model import Role
from signalling.room import LoadedCall, Room
from signalling.router import LocalRouter, Rooms

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
    directory: CallDirectory
    store: PgCallStore
    meter: Meter
    flusher: MeterFlusher
    hub: SocketHub
    rooms: Rooms
    router: LocalRouter
    media: ServerMediaLegs
    stopping: bool = False
    opening: KeyedLocks = field(default_factory=KeyedLocks)

    def opening_lock(
        self, appointment_id: uuid.UUID
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialises Switch to Video per appointment (a double click waits for the first)."""
        return self.opening.hold(appointment_id)


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
    directory = CallDirectory(pool)
    store = PgCallStore(pool, directory, nodes)
    meter = Meter()
    hub = SocketHub()
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
        sockets=hub,
        on_liveness=report_liveness,
        ice=ice_settings_for(config),
        registry=app[METRICS],
    )
    flusher = MeterFlusher(
        meter, LedgerCheckpointSink(pool), utc_now, interval=config.calls.meter_flush_seconds
    )

    def make_room(call: LoadedCall) -> Room:
        return Room(
            call,
            store=store,
            sink=hub,
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
        directory=directory,
        store=store,
        meter=meter,
        flusher=flusher,
        hub=hub,
        rooms=rooms,
        router=LocalRouter(config.node_id, rooms.dispatch),
        media=media,
    )
    app[CALL_ENGINE] = engine
    background = [
        asyncio.create_task(nodes.run(), name="node-heartbeat"),
        asyncio.create_task(
            run_recovery(pool, nodes, config.calls.heartbeat_seconds), name="call-recovery"
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
                for task in background:
                    task.cancel()
                for task in background:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await hub.close_all(CLOSE_NODE_STOPPING, "server restarting: reconnect")
                await media.close()
                for update in list(liveness_updates):
                    update.cancel()
                _release_meter(meter)
        # Leaving the flusher wrote the final readings; now any node may take the calls.
        released = await store.release_owned_calls()
        if released:
            log.info("released %d open call(s) for other nodes to take over", released)
    finally:
        with contextlib.suppress(Exception):
            await nodes.leave()


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
