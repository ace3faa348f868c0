"""A call's relay: the four stream forwarders between its two sides, and who is on each side."""

from __future__ import annotations

import enum
from typing import Protocol

from media.aiortc_adapter import EgressPort, IngressPort
from media.forward import StreamForwarder
from media.kinds import MEDIA_KINDS, MediaKind


class RelayEndpoint(Protocol):
    """What the relay needs from a leg."""

    def ingress(self, kind: MediaKind) -> IngressPort | None: ...

    def egress(self, kind: MediaKind) -> EgressPort | None: ...


class Side(enum.Enum):
    CLINICIAN = "clinician"
    CLIENT = "client"

    @property
    def other(self) -> Side:
        return Side.CLIENT if self is Side.CLINICIAN else Side.CLINICIAN


class Relay:
    """Forwards audio and video between the two sides of a call, both ways.

    Either side may be empty (the other participant is alone: their media is still read
    and dropped) and either side's leg may be replaced at any time (Refresh): the other
    side's streams continue without interruption and the new leg gets a keyframe at once.
    `fast_path=False` keeps every stream on aiortc's own receive path (for comparison).
    """

    def __init__(self, *, fast_path: bool = True) -> None:
        self._endpoints: dict[Side, RelayEndpoint] = {}
        # Keyed by the side whose media is forwarded.
        self._streams: dict[tuple[Side, MediaKind], StreamForwarder] = {
            (side, kind): StreamForwarder(kind, fast_path=fast_path)
            for side in Side
            for kind in MEDIA_KINDS
        }

    def endpoint(self, side: Side) -> RelayEndpoint | None:
        return self._endpoints.get(side)

    def stream(self, source: Side, kind: MediaKind) -> StreamForwarder:
        """The forwarder carrying `source`'s media of `kind` to the other side."""
        return self._streams[(source, kind)]

    async def attach(self, side: Side, endpoint: RelayEndpoint) -> None:
        """Put `endpoint` on `side`, replacing any previous one, and start forwarding."""
        self._endpoints[side] = endpoint
        for kind in MEDIA_KINDS:
            self._streams[(side, kind)].connect_ingress(endpoint.ingress(kind))
            self._streams[(side.other, kind)].connect_egress(endpoint.egress(kind))
        # The new leg's browser needs a keyframe from the other side right away; the
        # gate would ask on the next packet anyway, this saves a packet's wait.
        await self._streams[(side.other, "video")].request_keyframe_now()

    def detach(self, side: Side, endpoint: RelayEndpoint | None = None) -> None:
        """Take `side`'s endpoint out (only if it is still `endpoint`, when given)."""
        current = self._endpoints.get(side)
        if current is None or (endpoint is not None and current is not endpoint):
            return
        del self._endpoints[side]
        for kind in MEDIA_KINDS:
            self._streams[(side, kind)].connect_ingress(None)
            self._streams[(side.other, kind)].connect_egress(None)

    def close(self) -> None:
        for side in list(self._endpoints):
            self.detach(side)
