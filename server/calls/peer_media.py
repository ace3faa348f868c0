"""``MediaControl`` for browsers that negotiate their media with each other (peer to peer).

Until the server's own media legs (``media/``) are wired into calls, the two browsers of a
call build one RTCPeerConnection between themselves and the server relays their SDP offers,
answers and ICE candidates, as a classic signalling server does. The meter then follows
presence on the call (``meter_follows_presence=True``).

Negotiation messages go straight to the other side's current socket, unnumbered (``seq``
0): they are not kept for ``resume``, because a stale offer replayed after a reconnect would
be worse than none; a browser that reconnects renegotiates.
"""

from __future__ import annotations

from server.calls.hub import SocketHub
from signalling.model import Role
from signalling.protocol import (
    IceCandidate,
    MediaMessage,
    SdpAnswer,
    SdpOffer,
    ServerIceCandidate,
    ServerMessage,
    ServerSdpAnswer,
    ServerSdpOffer,
)


class PeerSignalRelay:
    def __init__(self, hub: SocketHub) -> None:
        self._hub = hub

    async def forward(self, call_id: str, role: Role, message: MediaMessage) -> None:
        connection_id = self._hub.current(call_id, role.other)
        if connection_id is None:
            return  # the other side is away; it negotiates afresh when it joins
        await self._hub.send(call_id, role.other, connection_id, _for_peer(message))

    async def restart_leg(self, call_id: str, role: Role) -> None:
        # Refresh (R-C1) peer to peer is driven by the refreshing browser: it makes an ICE
        # restart offer, which ``forward`` relays. The server holds no leg to restart.
        return None

    async def close_legs(self, call_id: str) -> None:
        # The browsers close their peer connection on ``call_ended``; the server holds none.
        return None


def _for_peer(message: MediaMessage) -> ServerMessage:
    match message:
        case SdpOffer(sdp=sdp):
            return ServerSdpOffer(sdp=sdp)
        case SdpAnswer(sdp=sdp):
            return ServerSdpAnswer(sdp=sdp)
        case IceCandidate(candidate=candidate, sdp_mid=mid, sdp_mline_index=index):
            return ServerIceCandidate(candidate=candidate, sdp_mid=mid, sdp_mline_index=index)
    raise AssertionError(f"not a media message: {message!r}")  # pragma: no cover
