"""When to ask a sending browser again for video packets still missing (pure).

aiortc's receiver sends a NACK only when a packet reveals a new gap, and then lists every
packet still missing. A packet whose retransmission was lost too is asked for again only at
the next new gap, which on a clean stretch may be a second away: over 5% loss and a
100 ms round trip the far end's picture froze for up to 1.7 s waiting for such a packet.
libwebrtc's receiver (modules/video_coding/nack_requester.cc) asks for each missing packet
again once a round trip has passed since it last asked, at most 10 times; `NackRequester`
does the same for a leg's ingress. The ingress still learns what is missing from aiortc's
`NackGenerator` (the `missing` set, which aiortc trims to its last 128 packets).
"""

from __future__ import annotations

from collections.abc import Set

# libwebrtc's kMaxNackRetries: after this many requests a packet is given up on (the
# receiving browser's own keyframe request recovers the picture).
MAX_REQUESTS_PER_PACKET = 10
# The round trip assumed until RTCP has measured one (libwebrtc's kDefaultRttMs).
DEFAULT_ROUND_TRIP_S = 0.1
# Never ask for the same packet more often than this, however short the round trip: the
# sender would be asked again before its retransmission could have arrived.
MIN_REQUEST_INTERVAL_S = 0.02


class NackRequester:
    """Which missing packets to ask for now, and when to look again."""

    def __init__(self) -> None:
        # seq -> (when last asked, how many times)
        self._asked: dict[int, tuple[float, int]] = {}
        # The ingress calls `due` on a new gap, or on any packet from this time on while
        # packets are missing: one comparison per packet otherwise.
        self.next_check_at = 0.0

    def due(self, missing: Set[int], now: float, round_trip_s: float | None) -> list[int]:
        """The packets of `missing` to ask for now, counted as asked: those never asked
        for, and those last asked a round trip ago or more (up to the request limit)."""
        interval = max(
            MIN_REQUEST_INTERVAL_S,
            DEFAULT_ROUND_TRIP_S if round_trip_s is None else round_trip_s,
        )
        asked = self._asked
        for seq in [seq for seq in asked if seq not in missing]:
            del asked[seq]  # arrived, or no longer tracked
        wanted: list[int] = []
        for seq in missing:
            last = asked.get(seq)
            if last is None:
                asked[seq] = (now, 1)
                wanted.append(seq)
            elif last[1] < MAX_REQUESTS_PER_PACKET and now - last[0] >= interval:
                asked[seq] = (now, last[1] + 1)
                wanted.append(seq)
        self.next_check_at = now + MIN_REQUEST_INTERVAL_S
        wanted.sort()
        return wanted
