"""Several nodes, one call: sockets on any node, messages relayed to the owner over Redis.

Two real apps (each its own node id, sharing PostgreSQL and Redis) stand in for two
``videoconsult serve`` processes; ``test_cluster_processes`` runs real ones behind nginx.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.appkeys import HEALTH
from server.calls.engine import CALL_ENGINE, CallEngine
from server.calls.ownership import CallMoved
from server.config import CallsConfig, Config
from signalling.protocol import (
    Admit,
    CallEnded,
    Error,
    HangupConfirm,
    HangupConfirmRequired,
    HangupRequest,
    Hello,
    PresenceChanged,
    Resume,
    Snapshot,
)
from tests.calls_fixtures import (
    Participant,
    book_video,
    call_row,
    connect_client,
    connect_clinician,
    fund,
    link_state,
    open_waiting_room,
    wait_for,
)
from tests.support import ApiClient, PracticeFixture, login_as

FAST = CallsConfig(heartbeat_seconds=0.2, node_ttl_seconds=1.0)


@pytest.fixture
async def nodes(config: Config) -> AsyncIterator[tuple[ApiClient, ApiClient]]:
    first = dataclasses.replace(config, node_id="node-a", calls=FAST)
    second = dataclasses.replace(config, node_id="node-b", calls=FAST)
    async with (
        TestClient(TestServer(create_app(first))) as a,
        TestClient(TestServer(create_app(second))) as b,
    ):
        for node in (a, b):
            await node.app[CALL_ENGINE].router.subscribed.wait()
        yield a, b


def _node_id(node: ApiClient) -> str:
    return node.app[CALL_ENGINE].node_id


async def _owner_and_edge(
    nodes: tuple[ApiClient, ApiClient], db: asyncpg.Pool, appointment_id: uuid.UUID
) -> tuple[ApiClient, ApiClient]:
    """The node the call was placed on, and the other one (whose sockets are relayed)."""
    owner = (await call_row(db, appointment_id))["owner_node"]
    first, second = nodes
    return (first, second) if _node_id(first) == owner else (second, first)


def _holds(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def holds() -> bool:
        return check()

    return holds


async def _end_call(doc: Participant) -> None:
    await doc.send(HangupRequest(v=1))
    dialog = await doc.expect(HangupConfirmRequired)
    await doc.send(HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))


async def test_clinician_and_client_on_different_nodes_complete_a_call(
    nodes: tuple[ApiClient, ApiClient], db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3, R-C1..R-C4 over the relay: the client's socket is on node b, the call on node a
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(nodes[0], practice, booked)
    owner, edge = await _owner_and_edge(nodes, db, booked.appointment_id)
    doc = await connect_clinician(edge, practice, booked)
    patient = await connect_client(edge, booked)
    assert (await doc.expect(PresenceChanged)).present
    await doc.send(Admit(v=1))
    assert (await patient.expect(Snapshot)).phase == "in_progress"
    assert (await doc.expect(Snapshot)).phase == "in_progress"
    # R-C3: the client cannot end the call; the clinician's end needs its confirmation
    await patient.send(HangupRequest(v=1))
    await patient.expect(HangupConfirmRequired)
    await _end_call(doc)
    assert (await patient.expect(CallEnded)).reason == "ended"
    assert (await doc.expect(CallEnded)).reason == "ended"
    row = await call_row(db, booked.appointment_id)
    assert row["state"] == "ended" and row["owner_node"] == _node_id(owner)
    assert await link_state(db, booked) == "ended"  # R-C5
    assert edge.app[CALL_ENGINE].router.relayed_out >= 6
    await doc.close()
    await patient.close()


async def test_a_client_waiting_on_one_node_joins_the_room_opened_on_another(
    nodes: tuple[ApiClient, ApiClient], db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3: no phantom room: the waiting client reconnects into the opened call
    a, b = nodes
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    waiting = await connect_client(b, booked)
    assert waiting.of(Snapshot)[0].phase == "scheduled"
    await open_waiting_room(a, practice, booked)
    assert await waiting.expect_closed() is not None  # told to reconnect
    assert waiting.ws.close_code != 1000
    patient = await connect_client(b, booked)
    assert patient.of(Snapshot)[0].phase == "waiting_room_open"
    doc = await connect_clinician(b, practice, booked)
    await doc.send(Admit(v=1))
    assert (await patient.expect(Snapshot)).phase == "in_progress"
    await doc.close()
    await patient.close()


async def test_a_relayed_socket_resumes_its_stream_after_moving_node(
    nodes: tuple[ApiClient, ApiClient], db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C8: reconnecting through another node replays what was missed, nothing twice
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(nodes[0], practice, booked)
    a, b = await _owner_and_edge(nodes, db, booked.appointment_id)
    doc = await connect_clinician(a, practice, booked)
    patient = await connect_client(b, booked)
    first = patient.of(Snapshot)[0]
    await patient.close()
    assert (await doc.expect(PresenceChanged)).present
    assert not (await doc.expect(PresenceChanged)).present  # left
    await doc.send(Admit(v=1))
    assert (await doc.expect(Error)).code == "client_not_waiting"
    back = await connect_client(a, booked, hello=False)
    assert first.stream_id is not None
    await back.send(Resume(v=1, stream_id=first.stream_id, last_seq=first.seq))
    await doc.expect(PresenceChanged)
    await doc.send(Admit(v=1))
    resumed = await back.expect(Snapshot)
    if resumed.phase != "in_progress":  # the resume's own snapshot came first
        resumed = await back.expect(Snapshot)
    assert resumed.phase == "in_progress" and resumed.seq > first.seq
    seqs = [message.seq for message in back.received]
    assert seqs == sorted(set(seqs))  # in order, none twice
    await doc.close()
    await back.close()


async def test_a_node_that_lost_its_call_steps_down_and_the_new_owner_ends_it(
    nodes: tuple[ApiClient, ApiClient], db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3: exactly one owner: node b takes the call over (a's heartbeat lapsed as after a
    # Redis restart or a pause); a steps down, its sockets are told to reconnect, its
    # writes are refused by the fence, and End Call works on the new owner.
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(nodes[1], practice, booked)
    a, b = await _owner_and_edge(nodes, db, booked.appointment_id)
    doc = await connect_clinician(a, practice, booked)
    patient = await connect_client(b, booked)
    await doc.expect(PresenceChanged)
    await doc.send(Admit(v=1))
    assert (await patient.expect(Snapshot)).phase == "in_progress"
    call_id = str((await call_row(db, booked.appointment_id))["id"])
    engine_a, engine_b = a.app[CALL_ENGINE], b.app[CALL_ENGINE]
    old_epoch = engine_a.ownership.epoch_of(call_id)
    engine_a.nodes.stop()  # a stops renewing, as if paused or cut off from Redis
    await wait_for(_holds(lambda: not engine_a.ownership.is_owner(call_id)), within=5)
    await wait_for(_holds(lambda: engine_b.ownership.is_owner(call_id)), within=5)
    row = await call_row(db, booked.appointment_id)
    assert row["owner_node"] == _node_id(b) and row["owner_epoch"] > (old_epoch or 0)
    assert call_id not in engine_a.rooms
    assert await doc.expect_closed() is not None and await patient.expect_closed() is not None
    # a's stale epoch can write nothing for the call
    async with db.acquire() as conn, conn.transaction():
        engine_a.ownership._held[call_id] = old_epoch or 1
        with pytest.raises(CallMoved):
            await engine_a.ownership.fence(conn, row["id"])
    engine_a.ownership.forget(call_id)
    # both reconnect through node a (alive again): relayed to the owner, b
    await engine_a.nodes.beat()
    doc = await connect_clinician(a, practice, booked, hello=False)
    await doc.send(Hello(v=1))
    assert (await doc.expect(Snapshot)).phase == "in_progress"
    await _end_call(doc)
    assert (await doc.expect(CallEnded)).reason == "ended"
    row = await call_row(db, booked.appointment_id)
    assert row["state"] == "ended" and row["owner_node"] == _node_id(b)
    assert call_id not in engine_a.rooms
    await doc.close()


async def test_switch_to_video_places_calls_by_load_not_on_the_serving_node(
    config: Config, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-A3: 20 calls opened through one node spread over three by their heartbeats' load
    configs = [dataclasses.replace(config, node_id=f"node-{n}", calls=FAST) for n in (1, 2, 3)]
    async with (
        TestClient(TestServer(create_app(configs[0]))) as first,
        TestClient(TestServer(create_app(configs[1]))) as second,
        TestClient(TestServer(create_app(configs[2]))) as third,
    ):
        for node in (first, second, third):
            await node.app[CALL_ENGINE].nodes.beat()
        await fund(db, practice, 20 * 50 * 60)
        for _ in range(20):
            booked = await book_video(db, practice, config)
            await open_waiting_room(first, practice, booked)
        rows = await db.fetch(
            "SELECT owner_node, count(*) AS calls FROM calls WHERE state = 'waiting_room_open' "
            "GROUP BY owner_node"
        )
        per_node = {row["owner_node"]: row["calls"] for row in rows}
        assert set(per_node) == {"node-1", "node-2", "node-3"}, per_node
        assert max(per_node.values()) <= 1.5 * min(per_node.values()), per_node
        # each owner runs its rooms (claimed when placed), the serving node only its own
        for node in (first, second, third):
            engine = node.app[CALL_ENGINE]

            def runs_its_calls(engine: CallEngine = engine) -> bool:
                return len(engine.rooms) == int(per_node[engine.node_id])

            await wait_for(_holds(runs_its_calls))


async def test_relayed_messages_and_refused_sockets_are_counted_in_metrics(
    nodes: tuple[ApiClient, ApiClient], db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A2: a refused socket is logged and counted; relaying shows in /metrics
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(nodes[0], practice, booked)
    owner, edge = await _owner_and_edge(nodes, db, booked.appointment_id)
    patient = await connect_client(edge, booked)
    await patient.close()
    edge.app[HEALTH].draining = True
    doc_headers = await login_as(edge, practice, booked.clinician_role)
    upgrade = await edge.get(
        f"/ws/appointments/{booked.appointment_id}/call",
        headers={
            **doc_headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert upgrade.status == 503
    text = await (await edge.get("/metrics")).text()
    assert 'videoconsult_call_sockets_refused_total{reason="node_stopping"} 1.0' in text
    assert 'videoconsult_relayed_messages_total{direction="to_owner"}' in text
    owner_text = await (await owner.get("/metrics")).text()
    assert 'videoconsult_relayed_messages_total{direction="from_edge"} 0.0' not in owner_text
