"""The pure call machine: rule by rule, then exhaustively over every short event sequence."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import pytest

from signalling.effects import (
    CloseMediaLegs,
    DeactivateLink,
    Disconnect,
    Effect,
    FinalMeterReading,
    MeterConnection,
    PersistTransition,
    RestartMediaLeg,
    Send,
    StartMeter,
)
from signalling.events import (
    AbandonCall,
    AdmitClient,
    CloseUnattended,
    CloseWaitingRoom,
    ConfirmHangup,
    DecideEndRequest,
    Event,
    Join,
    Leave,
    MediaLiveness,
    NegotiateMedia,
    OpenWaitingRoom,
    RefreshMedia,
    RequestHangup,
)
from signalling.machine import new_call, transition
from signalling.model import (
    CALL_FINISHED_FOR_CLINICIAN,
    CALL_UNAVAILABLE_FOR_CLIENT,
    SYSTEM,
    CallState,
    IllegalTransition,
    Phase,
    Role,
)
from signalling.protocol import (
    CallEnded,
    ClientWantsToEnd,
    EndRequestCancelled,
    HangupConfirmRequired,
    SdpOffer,
)

NOW = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
DOC, CLIENT = Role.CLINICIAN, Role.CLIENT


def run(state: CallState, *events: Event) -> tuple[CallState, list[Effect]]:
    effects: list[Effect] = []
    for event in events:
        state, effects = transition(state, event, NOW)
    return state, effects


def in_progress(phone: str | None = "01632 960000") -> CallState:
    state, _ = run(
        new_call("call-1", phone),
        OpenWaitingRoom(DOC),
        Join(CLIENT),
        Join(DOC),
        AdmitClient(DOC),
    )
    assert state.phase is Phase.IN_PROGRESS
    return state


def sent(effects: list[Effect], to: Role) -> list[object]:
    return [e.message for e in effects if isinstance(e, Send) and e.to is to]


def refused(state: CallState, event: Event) -> IllegalTransition:
    with pytest.raises(IllegalTransition) as caught:
        transition(state, event, NOW)
    return caught.value


# --- rule by rule -----------------------------------------------------------------------


def test_hangup_is_two_steps_and_end_by_clinician_ends_for_both() -> None:  # R-C1, R-C2
    state, effects = run(in_progress(), RequestHangup(DOC, "k1"))
    assert state.phase is Phase.IN_PROGRESS
    assert sent(effects, DOC) == [HangupConfirmRequired(confirm_id="k1")]
    state, effects = run(state, ConfirmHangup(DOC, "k1", "end"))
    assert state.phase is Phase.ENDED
    assert effects[0] == PersistTransition(
        "call-1", DOC, Phase.IN_PROGRESS, Phase.ENDED, "clinician_ended", NOW
    )
    assert DeactivateLink("call-1", "ended", NOW) in effects
    assert FinalMeterReading("call-1", NOW) in effects
    assert CloseMediaLegs("call-1") in effects
    assert {type(m) for m in sent(effects, DOC) + sent(effects, CLIENT)} == {CallEnded}
    assert Disconnect(DOC, "ended") in effects and Disconnect(CLIENT, "ended") in effects


def test_ended_screens() -> None:  # R-C4
    _, effects = run(
        in_progress("01632 960000"), RequestHangup(DOC, "k"), ConfirmHangup(DOC, "k", "end")
    )
    (doc_screen,) = sent(effects, DOC)
    (client_screen,) = sent(effects, CLIENT)
    assert isinstance(doc_screen, CallEnded) and doc_screen.title == "Appointment has ended"
    assert isinstance(client_screen, CallEnded)
    assert client_screen.practice_phone == "01632 960000"
    assert "phone" in client_screen.message
    _, effects = run(in_progress(None), RequestHangup(DOC, "k"), ConfirmHangup(DOC, "k", "end"))
    (client_screen,) = sent(effects, CLIENT)
    assert isinstance(client_screen, CallEnded)
    assert client_screen.practice_phone is not None  # UNSET: omitted on the wire
    assert "phone" not in client_screen.message


def test_cancel_and_refresh_carry_on() -> None:  # R-C1
    state, effects = run(
        in_progress(), RequestHangup(CLIENT, "k1"), ConfirmHangup(CLIENT, "k1", "cancel")
    )
    assert state.phase is Phase.IN_PROGRESS and state.client_confirm_id is None
    assert effects == []
    state, effects = run(state, RequestHangup(CLIENT, "k2"), ConfirmHangup(CLIENT, "k2", "refresh"))
    assert state.phase is Phase.IN_PROGRESS
    assert effects == [RestartMediaLeg("call-1", CLIENT)]
    _, effects = run(state, RefreshMedia(DOC))
    assert effects == [RestartMediaLeg("call-1", DOC)]


def test_client_end_only_asks_the_clinician() -> None:  # R-C3
    state, effects = run(
        in_progress(), RequestHangup(CLIENT, "k1"), ConfirmHangup(CLIENT, "k1", "end")
    )
    assert state.phase is Phase.IN_PROGRESS
    # The request and a decline change no phase: a message each, no durable effect (no
    # transaction on the hang-up dialogue); only the end they may lead to is audited.
    assert effects == [Send(DOC, ClientWantsToEnd(request_id="k1"))]
    state, effects = run(state, DecideEndRequest(DOC, "k1", "cancel"))
    assert state.phase is Phase.IN_PROGRESS and state.end_request_id is None
    assert effects == [Send(CLIENT, EndRequestCancelled())]
    state, _ = run(state, RequestHangup(CLIENT, "k2"), ConfirmHangup(CLIENT, "k2", "end"))
    state, effects = run(state, DecideEndRequest(DOC, "k2", "end"))
    assert state.phase is Phase.ENDED
    assert effects[0] == PersistTransition(
        "call-1", DOC, Phase.IN_PROGRESS, Phase.ENDED, "clinician_ended_at_client_request", NOW
    )
    assert DeactivateLink("call-1", "ended", NOW) in effects


def test_stale_and_reused_ids_are_refused() -> None:  # R-C1
    state, _ = run(in_progress(), RequestHangup(DOC, "k1"), RequestHangup(DOC, "k2"))
    assert refused(state, ConfirmHangup(DOC, "k1", "end")).code == "stale_confirm"
    assert refused(state, RequestHangup(CLIENT, "k1")).code == "reused_id"
    state, _ = run(state, ConfirmHangup(DOC, "k2", "cancel"))
    assert refused(state, ConfirmHangup(DOC, "k2", "end")).code == "stale_confirm"
    assert refused(state, DecideEndRequest(DOC, "k2", "end")).code == "stale_request"


def test_client_cannot_confirm_the_clinicians_dialog() -> None:  # R-C1, R-C3
    state, _ = run(in_progress(), RequestHangup(DOC, "k1"))
    assert refused(state, ConfirmHangup(CLIENT, "k1", "end")).code == "stale_confirm"


def test_only_the_clinician_opens_admits_abandons_decides() -> None:
    waiting, _ = run(new_call("c"), OpenWaitingRoom(DOC), Join(CLIENT))
    assert refused(new_call("c"), OpenWaitingRoom(CLIENT)).code == "not_allowed"
    assert refused(waiting, AdmitClient(CLIENT)).code == "not_allowed"
    assert refused(waiting, AbandonCall(CLIENT)).code == "not_allowed"
    state, _ = run(in_progress(), RequestHangup(CLIENT, "k"), ConfirmHangup(CLIENT, "k", "end"))
    assert refused(state, DecideEndRequest(CLIENT, "k", "end")).code == "not_allowed"


def test_abandon_only_in_the_waiting_room() -> None:  # R-C7
    state, effects = run(
        new_call("c"), OpenWaitingRoom(DOC), Join(DOC), Join(CLIENT), AbandonCall(DOC)
    )
    assert state.phase is Phase.ABANDONED
    assert DeactivateLink("c", "abandoned", NOW) in effects
    assert not any(isinstance(e, StartMeter | FinalMeterReading) for e in effects)
    assert refused(in_progress(), AbandonCall(DOC)).code == "wrong_phase"
    scheduled, _ = run(new_call("c"), Join(DOC))
    assert refused(scheduled, AbandonCall(DOC)).code == "wrong_phase"


def test_admit_needs_a_waiting_client_and_starts_the_meter() -> None:  # R-M8
    state, _ = run(new_call("c"), OpenWaitingRoom(DOC), Join(DOC))
    assert refused(state, AdmitClient(DOC)).code == "client_not_waiting"
    state, effects = run(state, Join(CLIENT), AdmitClient(DOC))
    # Nobody's media leg is up yet (legs are negotiated after admission): nothing counts.
    assert StartMeter("c", frozenset(), NOW) in effects
    assert not state.billable


def test_the_meter_follows_leg_liveness_not_sockets() -> None:  # R-M8
    state, effects = run(in_progress(), MediaLiveness(DOC, True))
    assert effects == [MeterConnection("call-1", DOC, True, NOW)] and not state.billable
    # A client without camera or microphone shows life by receiver reports: still live.
    state, effects = run(state, MediaLiveness(CLIENT, True))
    assert effects == [MeterConnection("call-1", CLIENT, True, NOW)] and state.billable
    assert run(state, MediaLiveness(CLIENT, True))[1] == []  # no change, no effect
    # Their call page's socket dropping is not their media: the meter goes on (R-C8).
    state, effects = run(state, Leave(CLIENT))
    assert state.billable and not any(isinstance(e, MeterConnection) for e in effects)
    state, effects = run(state, MediaLiveness(CLIENT, False))
    assert effects == [MeterConnection("call-1", CLIENT, False, NOW)] and not state.billable


def test_liveness_before_admission_is_remembered_for_the_meter_start() -> None:  # R-M8
    state, effects = run(
        new_call("c"), OpenWaitingRoom(DOC), Join(DOC), Join(CLIENT), MediaLiveness(DOC, True)
    )
    assert effects == []
    state, effects = run(state, AdmitClient(DOC))
    assert StartMeter("c", frozenset({DOC}), NOW) in effects


def test_disconnect_is_not_an_end_and_rejoin_works() -> None:  # R-C8
    state, _ = run(in_progress(), Leave(CLIENT))
    assert state.phase is Phase.IN_PROGRESS and CLIENT not in state.present
    state, _ = run(state, Join(CLIENT))
    assert state.phase is Phase.IN_PROGRESS and CLIENT in state.present


def test_closing_the_waiting_room_is_not_abandoning() -> None:  # R-C9
    state, _ = run(new_call("c"), OpenWaitingRoom(DOC), Join(DOC), Join(CLIENT))
    assert refused(state, CloseWaitingRoom(CLIENT)).code == "not_allowed"
    closed, effects = run(state, CloseWaitingRoom(DOC))
    assert closed.phase is Phase.CLOSED
    assert not any(isinstance(e, DeactivateLink) for e in effects)  # the link stays valid
    (line,) = [e for e in effects if isinstance(e, PersistTransition)]
    assert (line.to_phase, line.reason) == (Phase.CLOSED, "waiting_room_closed")
    (told,) = [e.message for e in effects if isinstance(e, Send) and e.to is CLIENT]
    assert isinstance(told, CallEnded) and told.reason == "closed"
    assert Disconnect(CLIENT, "closed") in effects
    # The system closes it before a move or cancel, without anyone on the page.
    opened, _ = run(new_call("c"), OpenWaitingRoom(DOC))
    by_system, effects = run(opened, CloseWaitingRoom(SYSTEM, "appointment_moved"))
    assert by_system.phase is Phase.CLOSED
    assert refused(in_progress(), CloseWaitingRoom(SYSTEM)).code == "wrong_phase"


def test_the_sweep_closes_only_unattended_calls() -> None:  # R-C5, R-M7
    assert refused(in_progress(), CloseUnattended()).code == "attended"
    left, _ = run(in_progress(), Leave(CLIENT), Leave(DOC))
    ended, effects = run(left, CloseUnattended())
    assert ended.phase is Phase.ENDED
    (line,) = [e for e in effects if isinstance(e, PersistTransition)]
    assert (line.actor, line.reason) == (SYSTEM, "closed_unattended")
    assert FinalMeterReading("call-1", NOW) in effects
    assert DeactivateLink("call-1", "ended", NOW) in effects
    waiting, _ = run(new_call("c"), OpenWaitingRoom(DOC))
    abandoned, effects = run(waiting, CloseUnattended())
    assert abandoned.phase is Phase.ABANDONED
    assert DeactivateLink("c", "abandoned", NOW) in effects


def test_switch_to_video_terms_travel_with_the_opening() -> None:  # R-M7
    _, effects = run(new_call("c"), OpenWaitingRoom(DOC, frozenset({"clinician"}), True))
    (opened,) = [e for e in effects if isinstance(e, PersistTransition)]
    assert opened.opening is not None
    assert (opened.opening.roles, opened.opening.go_ahead) == (frozenset({"clinician"}), True)


def test_terminal_states_refuse_everything_with_the_users_message() -> None:  # R-C5, R-C6
    ended, _ = run(in_progress(), RequestHangup(DOC, "k"), ConfirmHangup(DOC, "k", "end"))
    abandoned, _ = run(new_call("c"), OpenWaitingRoom(DOC), Join(DOC), AbandonCall(DOC))
    for state in (ended, abandoned):
        assert refused(state, Join(CLIENT)).message == CALL_UNAVAILABLE_FOR_CLIENT
        assert refused(state, Join(DOC)).message == CALL_FINISHED_FOR_CLINICIAN
        assert refused(state, OpenWaitingRoom(DOC)).code == "call_over"


def test_media_only_while_in_progress() -> None:
    waiting, _ = run(new_call("c"), OpenWaitingRoom(DOC), Join(CLIENT))
    assert refused(waiting, NegotiateMedia(CLIENT, SdpOffer(v=1, sdp="x"))).code == "wrong_phase"
    _, effects = run(in_progress(), NegotiateMedia(CLIENT, SdpOffer(v=1, sdp="x")))
    assert len(effects) == 1


# --- exhaustive -------------------------------------------------------------------------


def candidate_events(state: CallState, roles: Iterable[Role] = (DOC, CLIENT)) -> Iterator[Event]:
    """Every event worth trying in ``state``: right, stale, reused and unknown ids included."""
    fresh = f"id{len(state.spent_ids)}"
    ids = [*sorted(state.spent_ids), "nobody-issued-this"]
    if DOC in roles:  # the server's own moves, unless only the client is acting
        yield from (CloseWaitingRoom(SYSTEM), CloseUnattended())
    for role in roles:
        yield from (OpenWaitingRoom(role), Join(role), Leave(role), AdmitClient(role))
        yield from (CloseWaitingRoom(role), MediaLiveness(role, role not in state.live))
        yield from (
            AbandonCall(role),
            RefreshMedia(role),
            NegotiateMedia(role, SdpOffer(v=1, sdp="")),
        )
        yield RequestHangup(role, fresh)
        for spent in sorted(state.spent_ids):
            yield RequestHangup(role, spent)
        for confirm_id in ids:
            for choice in ("end", "cancel", "refresh"):
                yield ConfirmHangup(role, confirm_id, choice)
            for decision in ("end", "cancel"):
                yield DecideEndRequest(role, confirm_id, decision)


def check_step(state: CallState, event: Event) -> CallState | None:
    """Apply one event and check every invariant of a single step."""
    try:
        new, effects = transition(state, event, NOW)
    except IllegalTransition as refused_:
        assert refused_.message
        return None
    # R-C5: nothing leaves a terminal state.
    assert not state.phase.terminal
    ends = new.phase.terminal
    deactivations = [e for e in effects if isinstance(e, DeactivateLink)]
    # R-C5: the link is deactivated exactly when (and only when) the call ends or is
    # abandoned; a waiting room closed without a call keeps it (R-C9).
    kills_link = new.phase in (Phase.ENDED, Phase.ABANDONED)
    assert len(deactivations) == (1 if kills_link else 0)
    if new.phase is Phase.CLOSED:
        assert state.phase is Phase.WAITING_ROOM_OPEN and isinstance(event, CloseWaitingRoom)
        assert event.actor in (DOC, SYSTEM)
    elif ends and isinstance(event, CloseUnattended):
        assert not state.present  # the sweep closes only a call nobody attends
    elif ends:
        # Only the clinician closes a call (R-C2, R-C3), and never in one message (R-C1):
        # the ending event answers a dialog or request the machine issued earlier.
        assert event.actor is DOC
        assert isinstance(event, ConfirmHangup | DecideEndRequest | AbandonCall)
        if isinstance(event, ConfirmHangup):
            assert state.clinician_confirm_id == event.confirm_id
        if isinstance(event, DecideEndRequest):
            assert state.end_request_id == event.request_id
    if new.phase is Phase.ABANDONED:
        assert state.phase is Phase.WAITING_ROOM_OPEN  # R-C7
        assert not any(isinstance(e, StartMeter | FinalMeterReading) for e in effects)
    if new.phase is Phase.ENDED:
        assert state.phase is Phase.IN_PROGRESS
        assert FinalMeterReading(state.call_id, NOW) in effects
    if any(isinstance(e, StartMeter) for e in effects):
        assert (state.phase, new.phase) == (Phase.WAITING_ROOM_OPEN, Phase.IN_PROGRESS)
    # R-M8: the meter hears of liveness only while the call is in progress, and only the
    # legs (never the sockets) say who is connected.
    for change in (e for e in effects if isinstance(e, MeterConnection)):
        assert isinstance(event, MediaLiveness) and new.phase is Phase.IN_PROGRESS
        assert change.connected is event.live
    assert new.billable == (new.phase is Phase.IN_PROGRESS and new.live == {DOC, CLIENT})
    # Every answered confirm id is spent: accepting it again is impossible.
    if isinstance(event, ConfirmHangup):
        assert new.pending_confirm(event.actor) is None
        assert event.confirm_id in new.spent_ids
    # The audit log has a line for each phase change, and writes nothing otherwise.
    persisted = [e for e in effects if isinstance(e, PersistTransition)]
    if new.phase is state.phase:
        assert persisted == []
    else:
        assert [(p.from_phase, p.to_phase) for p in persisted] == [(state.phase, new.phase)]
    # Durable effects come first, so the room can commit before anything is sent.
    kinds = [isinstance(e, PersistTransition | DeactivateLink) for e in effects]
    assert kinds == sorted(kinds, reverse=True)
    return new


def explore(
    start: CallState, depth: int, roles: tuple[Role, ...] = (DOC, CLIENT)
) -> set[CallState]:
    seen = {start}
    frontier = deque([(start, 0)])
    while frontier:
        state, level = frontier.popleft()
        if level == depth:
            continue
        for event in candidate_events(state, roles):
            new = check_step(state, event)
            if new is not None and new not in seen:
                seen.add(new)
                frontier.append((new, level + 1))
    return seen


def test_every_short_sequence_keeps_the_rules() -> None:  # R-C1, R-C2, R-C3, R-C5, R-C7
    reached = explore(new_call("c"), depth=12) | explore(in_progress(), depth=9)
    phases = {state.phase for state in reached}
    assert phases == set(Phase)  # the exploration really reaches every phase
    for state in reached:
        if state.phase.terminal:
            assert all(check_step(state, e) is None for e in candidate_events(state))


def test_no_client_only_sequence_ends_a_call() -> None:  # R-C3
    # From every state both sides can reach in a few steps, the client alone, however long
    # it goes on, never reaches ended or abandoned.
    starts = [s for s in explore(new_call("c"), depth=9) if not s.phase.terminal]
    assert any(s.phase is Phase.IN_PROGRESS and s.client_confirm_id for s in starts)
    for start in starts:
        for state in explore(start, depth=6, roles=(CLIENT,)):
            assert not state.phase.terminal
