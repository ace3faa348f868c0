"""The room coordinator, routed through LocalRouter, with in-test stand-ins for the server."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from signalling.effects import DeactivateLink, PersistTransition, StoreEffect
from signalling.machine import new_call
from signalling.meter import Meter, MeterCheckpoint
from signalling.model import CALL_UNAVAILABLE_FOR_CLIENT, CallState, Phase, Role
from signalling.protocol import (
    Admit,
    CallEnded,
    ClientMessage,
    ClientWantsToEnd,
    EndRequestCancelled,
    EndRequestDecision,
    Error,
    HangupConfirm,
    HangupConfirmRequired,
    HangupRequest,
    Hello,
    MediaMessage,
    Ping,
    Pong,
    PresenceChanged,
    Resume,
    SdpOffer,
    ServerMessage,
    Snapshot,
    decode_server_message,
    encode_server_message,
)
from signalling.room import LoadedCall, Room
from signalling.router import (
    LocalRouter,
    ParticipantConnected,
    ParticipantDisconnected,
    ParticipantMessage,
    Rooms,
)

DOC, CLIENT = Role.CLINICIAN, Role.CLIENT
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class Store:
    calls: dict[str, LoadedCall] = field(default_factory=dict)
    commits: list[list[StoreEffect]] = field(default_factory=list)
    failing: bool = False

    async def load_call(self, call_id: str) -> LoadedCall | None:
        return self.calls.get(call_id)

    async def commit(self, changes: Sequence[StoreEffect]) -> None:
        if self.failing:
            raise ConnectionError("database down")
        self.commits.append(list(changes))
        for change in changes:  # what the server persists, so a reload sees it
            if isinstance(change, PersistTransition):
                old = self.calls[change.call_id]
                state = replace(old.state, phase=change.to_phase, present=frozenset())
                self.calls[change.call_id] = LoadedCall(state, old.practice_id)


@dataclass
class Sockets:
    inbox: dict[str, list[ServerMessage]] = field(default_factory=dict)
    closed: dict[str, str] = field(default_factory=dict)

    async def send(
        self, call_id: str, role: Role, connection_id: str, message: ServerMessage
    ) -> None:
        self.inbox.setdefault(connection_id, []).append(message)

    async def close(self, call_id: str, role: Role, connection_id: str, reason: str) -> None:
        self.closed[connection_id] = reason

    def of(self, connection_id: str, kind: type[ServerMessage]) -> list[ServerMessage]:
        return [m for m in self.inbox.get(connection_id, []) if isinstance(m, kind)]


@dataclass
class Media:
    calls: list[tuple[str, ...]] = field(default_factory=list)

    async def forward(self, call_id: str, role: Role, message: MediaMessage) -> None:
        self.calls.append(("forward", role, type(message).__name__))

    async def restart_leg(self, call_id: str, role: Role) -> None:
        self.calls.append(("restart", role))

    async def close_legs(self, call_id: str) -> None:
        self.calls.append(("close", call_id))


class World:
    def __init__(self, phone: str | None = "01632 960000") -> None:
        self.now = T0
        self.store = Store({"c": LoadedCall(new_call("c", phone), practice_id="p")})
        self.sockets = Sockets()
        self.media = Media()
        self.meter = Meter()
        ids = itertools.count(1)
        self.ended_calls = 0

        def make_room(call: LoadedCall) -> Room:
            return Room(
                call,
                store=self.store,
                sink=self.sockets,
                media=self.media,
                meter=self.meter,
                clock=lambda: self.now,
                new_id=lambda: f"id{next(ids)}",
                on_call_ended=self.count_end,
            )

        self.rooms = Rooms(self.store, make_room)
        self.router = LocalRouter("node-1", self.rooms.dispatch)

    def count_end(self) -> None:
        self.ended_calls += 1

    async def connect(self, role: Role, conn: str, first: Hello | Resume | None = None) -> None:
        first = first or Hello(v=1)
        await self.router.deliver(
            ParticipantConnected(call_id="c", role=role, connection_id=conn, first=first)
        )

    async def say(self, role: Role, conn: str, message: ClientMessage) -> None:
        await self.router.deliver(
            ParticipantMessage(call_id="c", role=role, connection_id=conn, message=message)
        )

    async def drop(self, role: Role, conn: str) -> None:
        await self.router.deliver(
            ParticipantDisconnected(call_id="c", role=role, connection_id=conn)
        )

    async def live_call(self) -> Room:
        room = await self.rooms.room("c")
        await room.open_waiting_room()
        await self.connect(CLIENT, "cl1")
        await self.connect(DOC, "dr1")
        await self.say(DOC, "dr1", Admit(v=1))
        assert room.state.phase is Phase.IN_PROGRESS
        # Both media legs come up and show life (R-M8): the meter runs from here.
        await room.media_liveness(DOC, True)
        await room.media_liveness(CLIENT, True)
        return room

    def last(self, conn: str) -> ServerMessage:
        return self.sockets.inbox[conn][-1]


async def test_full_call_clinician_ends_for_both() -> None:  # R-C1, R-C2, R-C4, R-C5, R-M8
    world = World()
    room = await world.live_call()
    assert await world.router.owner_of("c") == "node-1"
    world.now += timedelta(seconds=42.5)
    await world.say(DOC, "dr1", HangupRequest(v=1))
    dialog = world.last("dr1")
    assert isinstance(dialog, HangupConfirmRequired)
    assert room.state.phase is Phase.IN_PROGRESS  # R-C1: one message ends nothing
    await world.say(DOC, "dr1", HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))
    assert room.state.phase.terminal and room.state.phase.value == "ended"
    # The phase change and the link deactivation are committed together.
    assert [type(c) for c in world.store.commits[-1]] == [PersistTransition, DeactivateLink]
    doc_end, client_end = world.last("dr1"), world.last("cl1")
    assert isinstance(doc_end, CallEnded) and doc_end.title == "Appointment has ended"
    assert isinstance(client_end, CallEnded) and client_end.practice_phone == "01632 960000"
    assert world.sockets.closed == {"dr1": "ended", "cl1": "ended"}
    assert ("close", "c") in world.media.calls
    (reading,) = world.meter.take_readings(world.now)
    assert (reading.seconds, reading.final) == (42, True)
    assert world.ended_calls == 1
    # R-C5, R-C6: the link never opens the call again.
    assert "c" not in world.rooms
    await world.connect(CLIENT, "cl2")
    error = world.last("cl2")
    assert isinstance(error, Error) and error.message == CALL_UNAVAILABLE_FOR_CLIENT
    assert world.sockets.closed["cl2"] == "call_over"


async def test_client_end_asks_clinician_who_can_carry_on() -> None:  # R-C3
    world = World()
    room = await world.live_call()
    await world.say(CLIENT, "cl1", HangupRequest(v=1))
    dialog = world.last("cl1")
    assert isinstance(dialog, HangupConfirmRequired)
    await world.say(CLIENT, "cl1", HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))
    ask = world.last("dr1")
    assert isinstance(ask, ClientWantsToEnd) and room.state.phase is Phase.IN_PROGRESS
    # The client cannot answer its own request.
    await world.say(
        CLIENT, "cl1", EndRequestDecision(v=1, request_id=ask.request_id, decision="end")
    )
    assert isinstance(world.last("cl1"), Error) and room.state.phase is Phase.IN_PROGRESS
    await world.say(
        DOC, "dr1", EndRequestDecision(v=1, request_id=ask.request_id, decision="cancel")
    )
    assert isinstance(world.last("cl1"), EndRequestCancelled)
    assert room.state.phase is Phase.IN_PROGRESS


async def test_refused_events_answer_with_an_error_and_change_nothing() -> None:
    world = World()
    room = await world.live_call()
    before = room.state
    await world.say(CLIENT, "cl1", HangupConfirm(v=1, confirm_id="forged", choice="end"))
    error = world.last("cl1")
    assert isinstance(error, Error) and error.code == "stale_confirm"
    assert room.state == before


async def test_store_failure_changes_nothing_and_tells_the_user() -> None:
    world = World()
    room = await world.live_call()
    await world.say(DOC, "dr1", HangupRequest(v=1))
    dialog = world.last("dr1")
    assert isinstance(dialog, HangupConfirmRequired)
    world.store.failing = True
    await world.say(DOC, "dr1", HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))
    error = world.last("dr1")
    assert isinstance(error, Error) and error.code == "unavailable"
    assert room.state.phase is Phase.IN_PROGRESS
    assert "cl1" not in world.sockets.closed


async def test_disconnect_is_not_an_end_and_resume_replays_exactly() -> None:  # R-C8
    world = World()
    room = await world.live_call()
    snap = world.sockets.of("cl1", Snapshot)[-1]
    assert isinstance(snap, Snapshot)
    seen = world.sockets.inbox["cl1"][-1].seq
    # Messages reach the old connection, which died before the client read them.
    await world.say(CLIENT, "cl1", Ping(v=1, nonce=7))
    missed = world.sockets.inbox["cl1"][-1]
    assert isinstance(missed, Pong) and missed.seq == seen + 1
    await world.drop(CLIENT, "cl1")
    assert room.state.phase is Phase.IN_PROGRESS and CLIENT not in room.state.present
    assert isinstance(world.last("dr1"), PresenceChanged)
    await world.connect(CLIENT, "cl2", Resume(v=1, stream_id=snap.stream_id, last_seq=seen))
    replayed = world.sockets.inbox["cl2"]
    assert replayed[0] == missed  # the missed message, once, with its own seq
    seqs = [m.seq for m in replayed]
    assert seqs == list(range(seen + 1, seen + 1 + len(seqs)))  # no gap, no duplicate
    assert isinstance(replayed[-1], Snapshot) and replayed[-1].phase is Phase.IN_PROGRESS
    assert room.state.billable


async def test_resume_of_unknown_stream_starts_fresh_with_snapshot() -> None:
    world = World()
    await world.live_call()
    await world.drop(CLIENT, "cl1")
    await world.connect(CLIENT, "cl2", Resume(v=1, stream_id="gone", last_seq=99))
    (first,) = world.sockets.inbox["cl2"]
    assert isinstance(first, Snapshot) and first.seq == 1 and first.stream_id != "gone"


async def test_second_tab_replaces_the_first() -> None:  # R-C8
    world = World()
    room = await world.live_call()
    await world.connect(CLIENT, "cl2")
    assert world.sockets.closed["cl1"] == "replaced"
    await world.drop(CLIENT, "cl1")  # the old tab closing later changes nothing
    assert CLIENT in room.state.present
    await world.say(CLIENT, "cl1", Ping(v=1, nonce=1))
    error = world.last("cl1")
    assert isinstance(error, Error) and error.code == "stale_connection"


async def test_media_messages_reach_the_leg_only_in_the_call() -> None:
    world = World()
    room = await world.rooms.room("c")
    await room.open_waiting_room()
    await world.connect(CLIENT, "cl1")
    await world.say(CLIENT, "cl1", SdpOffer(v=1, sdp="v=0"))
    assert isinstance(world.last("cl1"), Error) and world.media.calls == []
    await world.connect(DOC, "dr1")
    await world.say(DOC, "dr1", Admit(v=1))
    await world.say(CLIENT, "cl1", SdpOffer(v=1, sdp="v=0"))
    assert world.media.calls == [("forward", CLIENT, "SdpOffer")]


async def test_takeover_resumes_metering_from_the_checkpoint() -> None:  # R-M10
    world = World()
    state = CallState(call_id="c", phase=Phase.IN_PROGRESS)
    world.store.calls["c"] = LoadedCall(state, "p", MeterCheckpoint(100, 4, 500_000))
    await world.connect(DOC, "dr1")
    await world.connect(CLIENT, "cl1")
    room = await world.rooms.room("c")
    await room.media_liveness(DOC, True)
    await room.media_liveness(CLIENT, True)
    world.now += timedelta(seconds=1.5)
    (reading,) = world.meter.take_readings(world.now)
    assert (reading.sequence, reading.seconds, reading.billed_total_seconds) == (5, 2, 102)


async def test_snapshots_carry_when_the_call_started_also_after_a_reload() -> None:
    # The clinician's live duration survives a re-opened page and a room loaded from the store.
    world = World()
    room = await world.rooms.room("c")
    await room.open_waiting_room()
    await world.connect(CLIENT, "cl1")
    waiting = world.last("cl1")
    assert isinstance(waiting, Snapshot) and waiting.started_at is None
    await world.connect(DOC, "dr1")
    admitted_at = world.now
    await world.say(DOC, "dr1", Admit(v=1))
    assert room.state.started_at == admitted_at
    world.now += timedelta(minutes=7)
    await world.connect(DOC, "dr2")  # the page re-opened in another tab
    again = world.last("dr2")
    assert isinstance(again, Snapshot) and again.started_at == admitted_at
    # the wire form is UTC ISO 8601, read back as the same instant
    wire = encode_server_message(again)
    assert b'"started_at":"2024-03-01T09:00:00Z"' in wire
    assert decode_server_message(wire) == again
    # a node loading the call from the store (taken over, restarted) sends the same
    world.store.calls["d"] = LoadedCall(
        CallState(call_id="d", phase=Phase.IN_PROGRESS, started_at=admitted_at), "p"
    )
    await world.router.deliver(
        ParticipantConnected(call_id="d", role=DOC, connection_id="dr3", first=Hello(v=1))
    )
    loaded = world.last("dr3")
    assert isinstance(loaded, Snapshot) and loaded.started_at == admitted_at
