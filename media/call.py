"""The media of one call: a leg per side and the relay between them.

The facade the signalling layer drives: open a side's leg from its browser's offer
(again, for Refresh), add trickled candidates, hear each side's status, sample quality,
close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc import RTCConfiguration

from media.leg import LegSettings, LegStatus, MediaLeg
from media.relay import Relay, Side
from media.stats import LegQuality, sample_leg_quality

logger = logging.getLogger(__name__)

CallStatusListener = Callable[[Side, LegStatus], None]


class CallMedia:
    def __init__(
        self,
        configuration: RTCConfiguration,
        settings: LegSettings | None = None,
        *,
        on_status: CallStatusListener | None = None,
    ) -> None:
        self._configuration = configuration
        self._settings = settings or LegSettings()
        self._on_status = on_status
        self._legs: dict[Side, MediaLeg] = {}
        self._quality: dict[Side, LegQuality] = {}
        self.relay = Relay(fast_path=self._settings.fast_path)

    def leg(self, side: Side) -> MediaLeg | None:
        return self._legs.get(side)

    def status(self, side: Side) -> LegStatus:
        leg = self._legs.get(side)
        return leg.status if leg is not None else LegStatus("closed", media_flowing=False)

    async def open_leg(self, side: Side, offer_sdp: str) -> str:
        """Answer `side`'s offer with a fresh leg (replacing any current one: Refresh).

        aiortc has no ICE restart, so Refresh is a new leg: it takes the side's place
        before the old one closes (the old leg's "closed" is not reported as the side's
        status), the relay re-attaches it and asks the other side for a keyframe.
        """
        leg = MediaLeg(self._configuration, self._settings, label=side.value)
        leg.subscribe(self._forward_status)
        try:
            answer = await leg.accept_offer(offer_sdp)
        except BaseException:
            await leg.close()
            raise
        old = self._legs.get(side)
        self._legs[side] = leg
        self._quality.pop(side, None)
        await self.relay.attach(side, leg)
        if old is not None:
            await old.close()
        return answer

    async def add_remote_candidate(
        self, side: Side, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> bool:
        leg = self._legs.get(side)
        if leg is None:
            return False
        return await leg.add_remote_candidate(candidate, sdp_mid, sdp_mline_index)

    async def sample_quality(self, side: Side) -> LegQuality | None:
        leg = self._legs.get(side)
        if leg is None or leg.closed:
            return None
        quality = await sample_leg_quality(leg.peer_connection, self._quality.get(side))
        self._quality[side] = quality
        return quality

    async def close_leg(self, side: Side) -> None:
        leg = self._legs.pop(side, None)
        if leg is not None:
            self.relay.detach(side, leg)
            await leg.close()

    async def close(self) -> None:
        for side in list(self._legs):
            await self.close_leg(side)
        self.relay.close()

    def _forward_status(self, leg: MediaLeg, status: LegStatus) -> None:
        side = Side(leg.label)
        # A replaced leg reports its own closing: not the side's status any more.
        if self._legs.get(side, leg) is not leg or self._on_status is None:
            return
        self._on_status(side, status)
