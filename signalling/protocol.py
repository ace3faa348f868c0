"""WebSocket protocol: typed, versioned messages, decoded once at the edge.

Every message is a JSON object with a ``type`` tag and the protocol version ``v``.
Client messages are checked strictly (unknown fields, wrong types and other versions are
refused with a ``ProtocolError`` naming the field); server messages carry a ``seq`` that
increases by one per message on a participant's stream (see ``stream.py``), so a client
that reconnects sends ``resume`` with the last ``seq`` it saw and misses nothing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from signalling.model import Phase, Role

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024  # an SDP with many candidates stays well below this

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Sdp = Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_BYTES)]
Candidate = Annotated[str, msgspec.Meta(max_length=2048)]  # "" = end of candidates
Seq = Annotated[int, msgspec.Meta(ge=0)]
HangupChoice = Literal["end", "cancel", "refresh"]
EndDecision = Literal["end", "cancel"]
EndReason = Literal["ended", "abandoned", "closed"]  # closed: waiting room, no call


class ProtocolError(Exception):
    """A client message that cannot be accepted as sent. Nothing was changed.

    ``code``: ``too_large``, ``malformed_json``, ``not_an_object``, ``unknown_type``,
    ``unsupported_version``, ``missing_field``, ``unknown_field``, ``invalid_field``.
    ``field``: dotted path of the offending field (``"choice"``, ``"type"``), or None.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field


# --- client -> server -------------------------------------------------------------------


class _ClientMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True
):
    v: Literal[1]


class Hello(_ClientMessage, frozen=True, kw_only=True, tag="hello"):
    """First message of a fresh connection; the server answers with a ``snapshot``."""


class Resume(_ClientMessage, frozen=True, kw_only=True, tag="resume"):
    """First message of a reconnect: replay server messages after ``last_seq`` of ``stream_id``.

    If the server cannot replay (stream unknown, too old, or the call moved node), it starts a
    new stream with a fresh ``snapshot``, which the client takes as the whole truth.
    """

    stream_id: Id
    last_seq: Seq


class Ping(_ClientMessage, frozen=True, kw_only=True, tag="ping"):
    """Heartbeat; the server answers ``pong`` with the same ``nonce``."""

    nonce: Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class Admit(_ClientMessage, frozen=True, kw_only=True, tag="admit"):
    """Clinician lets the waiting client into the call."""


class Abandon(_ClientMessage, frozen=True, kw_only=True, tag="abandon"):
    """Clinician gives up at the waiting-room stage (R-C7): no call, link deactivated."""


class HangupRequest(_ClientMessage, frozen=True, kw_only=True, tag="hangup_request"):
    """First step of hanging up: asks the server for a confirm dialog (R-C1)."""


class HangupConfirm(_ClientMessage, frozen=True, kw_only=True, tag="hangup_confirm"):
    """Second step: the user's answer in the dialog identified by ``confirm_id`` (R-C1)."""

    confirm_id: Id
    choice: HangupChoice


class EndRequestDecision(_ClientMessage, frozen=True, kw_only=True, tag="end_request_decision"):
    """Clinician's answer to ``client_wants_to_end`` (R-C3)."""

    request_id: Id
    decision: EndDecision


class SdpOffer(_ClientMessage, frozen=True, kw_only=True, tag="sdp_offer"):
    sdp: Sdp


class SdpAnswer(_ClientMessage, frozen=True, kw_only=True, tag="sdp_answer"):
    sdp: Sdp


class IceCandidate(_ClientMessage, frozen=True, kw_only=True, tag="ice_candidate"):
    """A trickled ICE candidate; an empty ``candidate`` marks the end of candidates."""

    candidate: Candidate
    sdp_mid: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    sdp_mline_index: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None


class Refresh(_ClientMessage, frozen=True, kw_only=True, tag="refresh"):
    """Re-establish this participant's media leg without leaving the call (ICE restart)."""


MediaMessage = SdpOffer | SdpAnswer | IceCandidate
ClientMessage = (
    Hello
    | Resume
    | Ping
    | Admit
    | Abandon
    | HangupRequest
    | HangupConfirm
    | EndRequestDecision
    | SdpOffer
    | SdpAnswer
    | IceCandidate
    | Refresh
)


# --- server -> client -------------------------------------------------------------------
# ``seq`` is 0 until the participant's stream stamps the message as it is sent.


class _ServerMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    v: int = PROTOCOL_VERSION
    seq: Seq = 0


class Snapshot(_ServerMessage, frozen=True, kw_only=True, tag="snapshot"):
    """Whole state of the call as this participant may see it; replaces anything older.

    Sent after ``hello``, after a ``resume`` that could not be replayed, and on every
    phase change. ``stream_id`` is what a later ``resume`` must name.
    """

    stream_id: str = ""
    call_id: str
    phase: Phase
    your_role: Role
    present: list[Role]
    confirm_id: str | None = None  # your open hang-up dialog, if any
    end_request_id: str | None = None  # clinician: the client's pending end request
    end_request_pending: bool = False  # client: your end request waits for the clinician
    # In progress only: when the call started (UTC, ISO 8601), for the page's live duration.
    started_at: datetime | None = None


class PresenceChanged(_ServerMessage, frozen=True, kw_only=True, tag="presence"):
    role: Role
    present: bool


class Pong(_ServerMessage, frozen=True, kw_only=True, tag="pong"):
    nonce: int


class HangupConfirmRequired(
    _ServerMessage, frozen=True, kw_only=True, tag="hangup_confirm_required"
):
    """Show the hang-up dialog; answer with ``hangup_confirm`` naming ``confirm_id``."""

    confirm_id: str
    choices: list[HangupChoice] = msgspec.field(
        default_factory=lambda: ["end", "cancel", "refresh"]
    )


class ClientWantsToEnd(_ServerMessage, frozen=True, kw_only=True, tag="client_wants_to_end"):
    """To the clinician: "The client wants to end the call" (R-C3)."""

    request_id: str
    choices: list[EndDecision] = msgspec.field(default_factory=lambda: ["end", "cancel"])


class EndRequestCancelled(_ServerMessage, frozen=True, kw_only=True, tag="end_request_cancelled"):
    """To the client: the clinician wants to carry on (R-C3)."""

    message: str = "Your clinician would like to carry on with the call."


class CallEnded(_ServerMessage, frozen=True, kw_only=True, tag="call_ended"):
    """The ended screen (R-C4). ``practice_phone`` is omitted when the practice has none."""

    reason: EndReason
    your_role: Role
    title: str
    message: str
    practice_phone: str | msgspec.UnsetType = msgspec.UNSET


class Error(_ServerMessage, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str
    field: str | None = None


class ServerSdpOffer(_ServerMessage, frozen=True, kw_only=True, tag="sdp_offer"):
    sdp: str


class ServerSdpAnswer(_ServerMessage, frozen=True, kw_only=True, tag="sdp_answer"):
    sdp: str


class ServerIceCandidate(_ServerMessage, frozen=True, kw_only=True, tag="ice_candidate"):
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


class QualityStats(_ServerMessage, frozen=True, kw_only=True, tag="quality_stats"):
    """Connection quality of one side's media leg, for the call page's indicator."""

    role: Role
    # good, fair, poor (from the figures), reconnecting (no media right now), absent
    # (no media connection); None from a server that does not judge.
    level: str | None = None
    round_trip_ms: int | None = None
    packet_loss_pct: float | None = None
    inbound_kbps: int | None = None
    outbound_kbps: int | None = None


ServerMessage = (
    Snapshot
    | PresenceChanged
    | Pong
    | HangupConfirmRequired
    | ClientWantsToEnd
    | EndRequestCancelled
    | CallEnded
    | Error
    | ServerSdpOffer
    | ServerSdpAnswer
    | ServerIceCandidate
    | QualityStats
)


# --- edge codecs ------------------------------------------------------------------------

_client_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)
_server_decoder: Final[msgspec.json.Decoder[ServerMessage]] = msgspec.json.Decoder(ServerMessage)
_encoder: Final = msgspec.json.Encoder()

_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]+)`")


def decode_client_message(raw: bytes | str) -> ClientMessage:
    """Decode and validate one client message, or raise ``ProtocolError``."""
    if _size_exceeds_limit(raw):
        raise ProtocolError("too_large", f"Message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        return _client_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _protocol_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("malformed_json", f"Message is not valid JSON: {exc}") from None


def _size_exceeds_limit(raw: bytes | str) -> bool:
    if len(raw) > MAX_MESSAGE_BYTES:
        return True
    # A text frame arrives as str, whose length counts characters; UTF-8 takes at most 4
    # bytes a character, so only a long one can be over in bytes and needs encoding.
    return (
        isinstance(raw, str)
        and len(raw) * 4 > MAX_MESSAGE_BYTES
        and len(raw.encode()) > MAX_MESSAGE_BYTES
    )


def _protocol_error(detail: str) -> ProtocolError:
    at = _AT_PATH.search(detail)
    path = at.group("path") if at else ""
    detail = _AT_PATH.sub("", detail)
    if missing := _MISSING.search(detail):
        name = f"{path}.{missing['name']}" if path else missing["name"]
        return ProtocolError("missing_field", f"Field '{name}' is required", name)
    if unknown := _UNKNOWN.search(detail):
        name = f"{path}.{unknown['name']}" if path else unknown["name"]
        return ProtocolError("unknown_field", f"Field '{name}' is not part of this message", name)
    if path == "type":
        return ProtocolError("unknown_type", "Unknown message type", "type")
    if path == "v":
        return ProtocolError(
            "unsupported_version", f"Protocol version must be {PROTOCOL_VERSION}", "v"
        )
    if not path:
        return ProtocolError("not_an_object", "A message must be a JSON object")
    return ProtocolError("invalid_field", f"Field '{path}' is invalid: {detail}", path)


def encode_server_message(message: ServerMessage) -> bytes:
    return _encoder.encode(message)


def decode_server_message(raw: bytes | str) -> ServerMessage:
    """For clients written in Python (tests, load generators)."""
    return _server_decoder.decode(raw)


def encode_client_message(message: ClientMessage) -> bytes:
    return _encoder.encode(message)
