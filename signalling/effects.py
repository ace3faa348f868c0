"""Effects: what the machine asks the outside world to do, in the order to do it.

The machine puts the durable ones (``PersistTransition``, ``DeactivateLink``) first; the
room commits them in one store call before anything is sent, so a failed write changes
nothing that a user could see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from signalling.model import Actor, Phase, Role
from signalling.protocol import EndReason, MediaMessage, ServerMessage


@dataclass(frozen=True, slots=True)
class PersistTransition:
    """One line of the call's audit log: who moved it from which phase to which, and why.

    Only phase changes are persisted. The hang-up dialogue (a client's end request, the
    clinician's decline) keeps the phase and writes nothing; an end it leads to is recorded
    with the reason ``clinician_ended_at_client_request``.
    """

    call_id: str
    actor: Actor
    from_phase: Phase
    to_phase: Phase
    reason: str
    at: datetime
    opening: OpeningTerms | None = None  # only on SCHEDULED -> WAITING_ROOM_OPEN


@dataclass(frozen=True, slots=True)
class OpeningTerms:
    """What Switch to Video asked for: the store repeats the pre-call check with it."""

    roles: frozenset[str]
    go_ahead: bool


@dataclass(frozen=True, slots=True)
class DeactivateLink:
    """The call's one-time link must never open a call again (R-C5, R-C7)."""

    call_id: str
    reason: EndReason
    at: datetime


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to the participant ``to`` (their stream stamps ``seq``)."""

    to: Role
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the participant's connection after what was sent before (call is over)."""

    role: Role
    reason: str


@dataclass(frozen=True, slots=True)
class StartMeter:
    """The call went live: start metering it, with these participants connected (R-M8)."""

    call_id: str
    connected: frozenset[Role]
    at: datetime


@dataclass(frozen=True, slots=True)
class MeterConnection:
    """A participant's leg started or stopped showing life while the call is live (R-M8)."""

    call_id: str
    role: Role
    connected: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class FinalMeterReading:
    """Stop metering: the call ended; the meter emits its final reading."""

    call_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ForwardToMediaLeg:
    call_id: str
    role: Role
    message: MediaMessage


@dataclass(frozen=True, slots=True)
class RestartMediaLeg:
    """ICE restart / renegotiation of one participant's leg; the call goes on (R-C1)."""

    call_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class CloseMediaLegs:
    call_id: str


StoreEffect = PersistTransition | DeactivateLink
Effect = (
    PersistTransition
    | DeactivateLink
    | Send
    | Disconnect
    | StartMeter
    | MeterConnection
    | FinalMeterReading
    | ForwardToMediaLeg
    | RestartMediaLeg
    | CloseMediaLegs
)
