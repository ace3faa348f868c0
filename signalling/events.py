"""Events the call machine consumes. Built by the room from sockets, HTTP and timers.

Ids the machine needs fresh (confirm ids) are made outside and passed in, so that
``transition`` stays a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalling.model import SYSTEM, Actor, Role, SystemActor
from signalling.protocol import EndDecision, HangupChoice, MediaMessage


@dataclass(frozen=True, slots=True)
class OpenWaitingRoom:
    """Clinician pressed "Switch to Video" and the pre-call check passed (R-B8, R-M7).

    ``roles`` (the clinician's) and ``go_ahead`` (they saw the "not enough minutes"
    warning and chose to go on) travel to the store with the transition, which repeats the
    pre-call check as it records the opening.
    """

    actor: Role
    roles: frozenset[str] = frozenset()
    go_ahead: bool = False


@dataclass(frozen=True, slots=True)
class CloseWaitingRoom:
    """Close an open waiting room without a call; the link stays valid (R-C9).

    By the clinician ("Close the waiting room"), or by the system before the appointment
    is moved or cancelled. Not Abandon: nobody is said not to have attended.
    """

    actor: Actor
    reason: str = "waiting_room_closed"


@dataclass(frozen=True, slots=True)
class CloseUnattended:
    """The sweep closes an open call nobody attends after the appointment's end + grace."""

    actor: SystemActor = SYSTEM


@dataclass(frozen=True, slots=True)
class MediaLiveness:
    """A participant's media leg started or stopped showing life (R-M8)."""

    actor: Role
    live: bool


@dataclass(frozen=True, slots=True)
class Join:
    """A participant connected (or reconnected: R-C8) to the call."""

    actor: Role


@dataclass(frozen=True, slots=True)
class Leave:
    """A participant's connection went away. Never an end of the call (R-C8)."""

    actor: Role


@dataclass(frozen=True, slots=True)
class AdmitClient:
    actor: Role


@dataclass(frozen=True, slots=True)
class AbandonCall:
    actor: Role


@dataclass(frozen=True, slots=True)
class RequestHangup:
    """Hang-up icon pressed; ``confirm_id`` is the fresh id of the dialog to open (R-C1)."""

    actor: Role
    confirm_id: str


@dataclass(frozen=True, slots=True)
class ConfirmHangup:
    actor: Role
    confirm_id: str
    choice: HangupChoice


@dataclass(frozen=True, slots=True)
class DecideEndRequest:
    """Clinician's answer to the client's end request (R-C3)."""

    actor: Role
    request_id: str
    decision: EndDecision


@dataclass(frozen=True, slots=True)
class RefreshMedia:
    """Re-establish the actor's media leg, staying in the call (R-C1 Refresh)."""

    actor: Role


@dataclass(frozen=True, slots=True)
class NegotiateMedia:
    """An SDP offer/answer or ICE candidate from the actor, for their media leg."""

    actor: Role
    message: MediaMessage


Event = (
    OpenWaitingRoom
    | CloseWaitingRoom
    | CloseUnattended
    | MediaLiveness
    | Join
    | Leave
    | AdmitClient
    | AbandonCall
    | RequestHangup
    | ConfirmHangup
    | DecideEndRequest
    | RefreshMedia
    | NegotiateMedia
)
