"""The call state machine: ``transition(state, event, now) -> (state, effects)``. Pure.

Every accepted event returns a new state and the effects to apply; every refused event
raises ``IllegalTransition`` with a message for the user who sent it. Nothing here does
I/O, reads a clock or makes ids, so every rule can be checked exhaustively.

Rules (SPEC.md): R-C1 hang-up is a two-step confirm exchange; R-C2 the clinician's End Call
ends for both; R-C3 the client's End Call only asks the clinician; R-C5 ended and abandoned
are terminal and the link is deactivated; R-C7 abandon only before admission; R-C8 a
disconnect is never an end; R-C9 closing the waiting room is not abandoning (the link
stays valid); R-M8 the meter runs while the call is in progress and both legs show life
(``MediaLiveness``), whatever the sockets do. Only the clinician opens, admits, abandons or
ends; the system closes calls nobody attends and empty rooms before a move or a cancel.
Each phase change carries exactly one ``PersistTransition`` (one audit line).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from signalling.effects import (
    CloseMediaLegs,
    DeactivateLink,
    Disconnect,
    Effect,
    FinalMeterReading,
    ForwardToMediaLeg,
    MeterConnection,
    OpeningTerms,
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
from signalling.model import (
    CALL_FINISHED_FOR_CLINICIAN,
    CALL_UNAVAILABLE_FOR_CLIENT,
    MAX_SPENT_IDS,
    SYSTEM,
    Actor,
    CallState,
    IllegalTransition,
    Phase,
    Role,
)
from signalling.protocol import (
    ClientWantsToEnd,
    EndReason,
    EndRequestCancelled,
    HangupConfirmRequired,
    PresenceChanged,
    Snapshot,
)
from signalling.screens import ended_screen

Result = tuple[CallState, list[Effect]]

# The reason on the audit line of a call the sweep closed (nobody came back after the end).
UNATTENDED_REASON = "closed_unattended"

_ROLES = (Role.CLINICIAN, Role.CLIENT)


def new_call(call_id: str, practice_phone: str | None = None) -> CallState:
    """The state of a booked appointment whose session has not started."""
    return CallState(call_id=call_id, practice_phone=practice_phone)


def transition(state: CallState, event: Event, now: datetime) -> Result:
    if state.phase.terminal:
        raise IllegalTransition("call_over", closed_call_message(event.actor))
    match event:
        case OpenWaitingRoom(actor=actor, roles=roles, go_ahead=go_ahead):
            return _open_waiting_room(state, actor, OpeningTerms(roles, go_ahead), now)
        case CloseWaitingRoom(actor=actor, reason=reason):
            return _close_waiting_room(state, actor, reason, now)
        case CloseUnattended(actor=actor):
            return _close_unattended(state, actor, now)
        case MediaLiveness(actor=actor, live=live):
            return _media_liveness(state, actor, live, now)
        case Join(actor=actor):
            return _join(state, actor, now)
        case Leave(actor=actor):
            return _leave(state, actor, now)
    # Everything below comes from a participant on the call page.
    _require_present(state, event.actor)
    match event:
        case AdmitClient(actor=actor):
            return _admit(state, actor, now)
        case AbandonCall(actor=actor):
            return _abandon(state, actor, now)
        case RequestHangup(actor=actor, confirm_id=confirm_id):
            return _request_hangup(state, actor, confirm_id)
        case ConfirmHangup(actor=actor, confirm_id=confirm_id, choice=choice):
            return _confirm_hangup(state, actor, confirm_id, choice, now)
        case DecideEndRequest(actor=actor, request_id=request_id, decision=decision):
            return _decide_end_request(state, actor, request_id, decision, now)
        case RefreshMedia(actor=actor):
            _require_phase(state, Phase.IN_PROGRESS, "The call has not started yet")
            return state, [RestartMediaLeg(state.call_id, actor)]
        case NegotiateMedia(actor=actor, message=message):
            _require_phase(state, Phase.IN_PROGRESS, "The call has not started yet")
            return state, [ForwardToMediaLeg(state.call_id, actor, message)]
    raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover


def closed_call_message(role: Actor) -> str:
    """What a user sees when they reach a call that has ended or was abandoned (R-C6)."""
    return CALL_UNAVAILABLE_FOR_CLIENT if role is Role.CLIENT else CALL_FINISHED_FOR_CLINICIAN


def snapshot_for(state: CallState, role: Role) -> Snapshot:
    """The whole call as ``role`` may see it. ``stream_id`` and ``seq`` are stamped on send."""
    return Snapshot(
        stream_id="",
        call_id=state.call_id,
        phase=state.phase,
        your_role=role,
        present=[r for r in _ROLES if r in state.present],
        confirm_id=state.pending_confirm(role),
        end_request_id=state.end_request_id if role is Role.CLINICIAN else None,
        end_request_pending=role is Role.CLIENT and state.end_request_id is not None,
        started_at=state.started_at if state.phase is Phase.IN_PROGRESS else None,
    )


# --- checks -----------------------------------------------------------------------------


def _require_clinician(actor: Actor, action: str) -> None:
    if actor is not Role.CLINICIAN:
        raise IllegalTransition("not_allowed", f"Only the clinician can {action}")


def _require_present(state: CallState, actor: Role) -> None:
    if actor not in state.present:
        raise IllegalTransition("not_joined", "Join the call first")


def _require_phase(state: CallState, phase: Phase, message: str) -> None:
    if state.phase is not phase:
        raise IllegalTransition("wrong_phase", message)


# --- transitions ------------------------------------------------------------------------


def _open_waiting_room(state: CallState, actor: Role, terms: OpeningTerms, now: datetime) -> Result:
    _require_clinician(actor, "open the waiting room")
    _require_phase(state, Phase.SCHEDULED, "The waiting room is already open")
    new = replace(state, phase=Phase.WAITING_ROOM_OPEN)
    opened = _persist(state, new, actor, "waiting_room_opened", now)
    effects: list[Effect] = [replace(opened, opening=terms)]
    effects += _snapshots(new)
    return new, effects


def _close_waiting_room(state: CallState, actor: Actor, reason: str, now: datetime) -> Result:
    # R-C9: no call happened and nobody is said not to have attended: the link stays valid.
    if actor is not SYSTEM:
        _require_clinician(actor, "close the waiting room")
    if state.phase is Phase.IN_PROGRESS:
        raise IllegalTransition("wrong_phase", "The call has started: use End Call instead")
    _require_phase(state, Phase.WAITING_ROOM_OPEN, "The waiting room is not open")
    new = closed_state(state, Phase.CLOSED)
    effects: list[Effect] = [_persist(state, new, actor, reason, now)]
    effects += _farewells(state, "closed")
    return new, effects


def _close_unattended(state: CallState, actor: Actor, now: datetime) -> Result:
    """In progress -> ended, waiting -> abandoned, when nobody is there (the sweep)."""
    if state.present:
        raise IllegalTransition("attended", "Someone is in the call")
    if state.phase is Phase.IN_PROGRESS:
        return _end(state, actor, UNATTENDED_REASON, now)
    _require_phase(state, Phase.WAITING_ROOM_OPEN, "The call is not open")
    new = closed_state(state, Phase.ABANDONED)
    return new, [
        _persist(state, new, actor, UNATTENDED_REASON, now),
        DeactivateLink(state.call_id, "abandoned", now),
    ]


def _media_liveness(state: CallState, actor: Role, live: bool, now: datetime) -> Result:
    """R-M8: the one definition of "connected" for the meter: the leg shows life."""
    if (actor in state.live) == live:
        return state, []
    new = replace(state, live=state.live | {actor} if live else state.live - {actor})
    if new.phase is not Phase.IN_PROGRESS:
        return new, []
    return new, [MeterConnection(state.call_id, actor, live, now)]


def _join(state: CallState, actor: Role, now: datetime) -> Result:
    if actor in state.present:
        # A new connection replaced one we had not yet seen close: re-sync it.
        return state, [Send(actor, snapshot_for(state, actor))]
    new = replace(state, present=state.present | {actor})
    effects: list[Effect] = [Send(actor, snapshot_for(new, actor))]
    if actor.other in new.present:
        effects.append(Send(actor.other, PresenceChanged(role=actor, present=True)))
    return new, effects


def _leave(state: CallState, actor: Role, now: datetime) -> Result:
    # R-C8: leaving never ends the call; open dialogs and end requests survive a rejoin.
    _require_present(state, actor)
    new = replace(state, present=state.present - {actor})
    effects: list[Effect] = []
    if actor.other in new.present:
        effects.append(Send(actor.other, PresenceChanged(role=actor, present=False)))
    return new, effects


def _admit(state: CallState, actor: Role, now: datetime) -> Result:
    _require_clinician(actor, "admit the client")
    _require_phase(state, Phase.WAITING_ROOM_OPEN, "Only a waiting client can be admitted")
    if Role.CLIENT not in state.present:
        raise IllegalTransition("client_not_waiting", "The client is not in the waiting room")
    new = replace(state, phase=Phase.IN_PROGRESS, started_at=now)
    effects: list[Effect] = [
        _persist(state, new, actor, "client_admitted", now),
        StartMeter(state.call_id, new.live, now),
    ]
    effects += _snapshots(new)
    return new, effects


def _abandon(state: CallState, actor: Role, now: datetime) -> Result:
    _require_clinician(actor, "abandon the call")
    if state.phase is Phase.IN_PROGRESS:
        raise IllegalTransition("wrong_phase", "The call has started: use End Call instead")
    _require_phase(state, Phase.WAITING_ROOM_OPEN, "The waiting room is not open")
    new = closed_state(state, Phase.ABANDONED)
    effects: list[Effect] = [
        _persist(state, new, actor, "abandoned_in_waiting_room", now),
        DeactivateLink(state.call_id, "abandoned", now),
    ]
    effects += _farewells(state, "abandoned")
    return new, effects


def _request_hangup(state: CallState, actor: Role, confirm_id: str) -> Result:
    _require_phase(state, Phase.IN_PROGRESS, "The call has not started yet")
    if confirm_id in state.spent_ids:
        raise IllegalTransition("reused_id", "This confirmation id was already used")
    # A dialog already open for this actor is replaced: its id is spent, so it goes stale.
    new = _with_confirm(state, actor, confirm_id)
    new = replace(new, spent_ids=(*state.spent_ids, confirm_id)[-MAX_SPENT_IDS:])
    return new, [Send(actor, HangupConfirmRequired(confirm_id=confirm_id))]


def _confirm_hangup(
    state: CallState, actor: Role, confirm_id: str, choice: str, now: datetime
) -> Result:
    _require_phase(state, Phase.IN_PROGRESS, "The call has not started yet")
    if state.pending_confirm(actor) != confirm_id:
        raise IllegalTransition("stale_confirm", "This confirmation has expired: try again")
    answered = _with_confirm(state, actor, None)
    if choice == "cancel":
        return answered, []
    if choice == "refresh":
        return answered, [RestartMediaLeg(state.call_id, actor)]
    if actor is Role.CLINICIAN:
        return _end(answered, actor, "clinician_ended", now)  # R-C2
    # R-C3: the client's End Call asks the clinician. The spent confirm id names the request;
    # a newer request replaces an unanswered one, so a stale answer cannot end the call.
    # Not audited: the phase stays in progress and nothing durable changes (the audit log
    # records phase changes; an end made at the client's request says so in its reason).
    asked = replace(answered, end_request_id=confirm_id)
    effects: list[Effect] = []
    if Role.CLINICIAN in asked.present:
        effects.append(Send(Role.CLINICIAN, ClientWantsToEnd(request_id=confirm_id)))
    return asked, effects


def _decide_end_request(
    state: CallState, actor: Role, request_id: str, decision: str, now: datetime
) -> Result:
    _require_clinician(actor, "answer an end request")
    _require_phase(state, Phase.IN_PROGRESS, "The call has not started yet")
    if state.end_request_id is None or state.end_request_id != request_id:
        raise IllegalTransition("stale_request", "The client's request is no longer open")
    decided = replace(state, end_request_id=None)
    if decision == "end":
        return _end(decided, actor, "clinician_ended_at_client_request", now)
    # Declining changes nothing durable either: no transaction on the hang-up dialogue.
    effects: list[Effect] = []
    if Role.CLIENT in decided.present:
        effects.append(Send(Role.CLIENT, EndRequestCancelled()))
    return decided, effects


def _end(state: CallState, actor: Actor, reason: str, now: datetime) -> Result:
    new = closed_state(state, Phase.ENDED)
    effects: list[Effect] = [
        _persist(state, new, actor, reason, now),
        DeactivateLink(state.call_id, "ended", now),
        FinalMeterReading(state.call_id, now),
        CloseMediaLegs(state.call_id),
    ]
    effects += _farewells(state, "ended")
    return new, effects


# --- helpers ----------------------------------------------------------------------------


def closed_state(state: CallState, phase: Phase) -> CallState:
    """``state`` moved to a terminal ``phase``: nobody present, no dialog or request open."""
    return replace(
        state,
        phase=phase,
        present=frozenset(),
        live=frozenset(),
        clinician_confirm_id=None,
        client_confirm_id=None,
        end_request_id=None,
    )


def _with_confirm(state: CallState, role: Role, confirm_id: str | None) -> CallState:
    if role is Role.CLINICIAN:
        return replace(state, clinician_confirm_id=confirm_id)
    return replace(state, client_confirm_id=confirm_id)


def _persist(
    old: CallState, new: CallState, actor: Actor, reason: str, now: datetime
) -> PersistTransition:
    return PersistTransition(old.call_id, actor, old.phase, new.phase, reason, now)


def _snapshots(state: CallState) -> list[Effect]:
    return [Send(role, snapshot_for(state, role)) for role in _ROLES if role in state.present]


def _farewells(state: CallState, reason: EndReason) -> list[Effect]:
    """The ended screens (R-C4), then closing the connections of whoever is there."""
    effects: list[Effect] = []
    present = [role for role in _ROLES if role in state.present]
    for role in present:
        effects.append(Send(role, ended_screen(state, role, reason)))
    effects += [Disconnect(role, reason) for role in present]
    return effects
