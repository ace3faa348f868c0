"""``MediaControl`` with the server's own media legs: every call's media goes through this node.

Each participant's browser negotiates one RTCPeerConnection with the call's owner node
over its call WebSocket; here it meets a ``media.CallMedia`` (one per call), which answers
with an aiortc leg and forwards RTP between the two legs without decoding.

Negotiation: the browser always offers, the server always answers. Every ``sdp_offer``
comes from a fresh browser RTCPeerConnection (first start, Refresh, a reloaded page), so
it gets a fresh leg that takes the place of the participant's old one (aiortc has no ICE
restart). The answer carries all the server's candidates (aiortc gathers before it
answers); the browser may trickle its own as ``ice_candidate`` after its offer. The server
never offers, so an ``sdp_answer`` from a browser is refused.

Refresh (R-C1: ``hangup_confirm`` with ``refresh``, or ``refresh``): the browser rebuilds its
connection and sends a new offer. ``restart_leg`` therefore tears nothing down: the old leg
keeps carrying what it can until the new offer's leg replaces it.

Billing follows media (R-M8): each leg's liveness (connected, and RTP from the participant
within the last 1.5 s or RTCP reports on our media within 2.5 s, for a browser without
camera or microphone) goes to the call's room as a ``MediaLiveness`` event, and the call
machine decides what the meter does; a leg that fails or shows no life stops the billable
clock within a few seconds and it starts again when the leg is back.

Every ~3 s a supervisor samples each leg's quality (``quality_stats`` to the clinician,
per-leg gauges in ``/metrics``) and closes legs that failed or were closed by the browser
(it makes a new offer when it is back).

The room waits for an offer's answer (one event at a time), so answering must be quick:
with ``MEDIA_PUBLIC_IP`` set our legs gather host candidates only (no STUN round trip;
an unreachable STUN server would add 5 s to every answer), and an answer taking longer
than ``OFFER_TIMEOUT_SECONDS`` is given up.

Answers, errors and ``quality_stats`` go to the participant's current socket unnumbered
(``seq`` 0), like the peer relay's: a stale answer replayed after a reconnect would be
worse than none (the reconnected page makes a new offer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiortc import RTCConfiguration
from prometheus_client import CollectorRegistry

from media.cadence import PollCadence
from media.call import CallMedia
from media.ice import IceSettings, browser_ice_servers, server_rtc_configuration
from media.leg import LegSettings, LegStatus
from media.ports import PortRange
from media.relay import Side
from server.background import stop_tasks
from server.calls.media_quality import LegQualityReporter
from server.config import Config
from signalling.model import Role
from signalling.protocol import (
    Error,
    IceCandidate,
    MediaMessage,
    QualityStats,
    SdpAnswer,
    SdpOffer,
    ServerMessage,
    ServerSdpAnswer,
)
from signalling.relay import ParticipantSockets

log = logging.getLogger(__name__)

# How long answering one offer may take (ICE gathering included) before it is given up:
# the room waits for it, so a stuck gathering must not hold the call's other messages.
OFFER_TIMEOUT_SECONDS = 10.0
QUALITY_INTERVAL_SECONDS = 3.0


def ice_settings_for(config: Config) -> IceSettings:
    media = config.media
    return IceSettings(
        stun_urls=media.stun_urls,
        turn_urls=media.turn_urls,
        turn_secret=media.turn_secret,
        turn_credential_ttl_s=media.turn_credential_ttl_seconds,
        public_ip=media.public_ip,
        public_ipv6=media.public_ipv6,
        ports=(
            PortRange(media.port_min, media.port_max)
            if media.port_min is not None and media.port_max is not None
            else None
        ),
    )


def ice_servers_for(config: Config, identity: str, now: datetime) -> list[dict[str, object]]:
    """The browser's ``iceServers``: STUN, and TURN with a credential that expires.

    ``identity`` ends up in the TURN username (coturn logs it): an opaque name of who the
    credential is for, such as ``client-<appointment id>``, never personal data.
    """
    return browser_ice_servers(ice_settings_for(config), identity, now)


def leg_setup(ice: IceSettings) -> tuple[RTCConfiguration, LegSettings]:
    """How this node's legs are built (the calls' and the pre-call network checks')."""
    # With the public address known, STUN would only tell our legs what we already
    # know, at the price of a round trip in every answer (5 s if the server is down).
    leg_ice = dataclasses.replace(ice, stun_urls=()) if ice.public_ip else ice
    settings = LegSettings(public_ip=ice.public_ip, public_ipv6=ice.public_ipv6, ports=ice.ports)
    return server_rtc_configuration(leg_ice), settings


@dataclass
class _CallLegs:
    media: CallMedia
    opening: int = 0  # offers being answered: the call must not be dropped meanwhile


class ServerMediaLegs:
    """One node's media legs, for every call it owns. Close it when the node stops."""

    def __init__(
        self,
        *,
        sockets: ParticipantSockets,
        on_liveness: Callable[[str, Role], None],
        ice: IceSettings,
        registry: CollectorRegistry,
        leg_settings: LegSettings | None = None,
        quality_interval: float = QUALITY_INTERVAL_SECONDS,
        poll_cadence: PollCadence | None = None,
    ) -> None:
        self._sockets = sockets
        self._on_liveness = on_liveness
        self._rtc_configuration, default_settings = leg_setup(ice)
        # The legs' taps report what they receive to the cadence (media/cadence.py), which
        # batches the event loop's polls while media flows.
        self._cadence = poll_cadence
        self._leg_settings = dataclasses.replace(
            leg_settings or default_settings, datagram_counter=poll_cadence
        )
        self._quality_interval = quality_interval
        self._quality = LegQualityReporter(registry)
        self._calls: dict[str, _CallLegs] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._cadence_task: asyncio.Task[None] | None = None
        self._closing = False

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def status(self, call_id: str, role: Role) -> LegStatus | None:
        """The participant's leg status, or None when they have no leg here."""
        call = self._calls.get(call_id)
        if call is None or call.media.leg(Side(role.value)) is None:
            return None
        return call.media.status(Side(role.value))

    # --- MediaControl ---------------------------------------------------------------------

    async def forward(self, call_id: str, role: Role, message: MediaMessage) -> None:
        match message:
            case SdpOffer(sdp=sdp):
                await self._answer_offer(call_id, role, sdp)
            case IceCandidate(candidate=candidate, sdp_mid=mid, sdp_mline_index=index):
                await self._add_candidate(call_id, role, candidate, mid, index)
            case SdpAnswer():
                await self._tell(
                    call_id,
                    role,
                    Error(
                        code="unexpected_answer",
                        message="The server does not make offers: send an sdp_offer",
                        field="type",
                    ),
                )

    async def restart_leg(self, call_id: str, role: Role) -> None:
        # Refresh is driven by the browser: its new offer replaces the leg (``open_leg``).
        # Closing the old leg now would only cut the media earlier than necessary.
        self._quality.count_refresh()
        log.info("call %s: %s asked for a media refresh", call_id, role)

    async def close_legs(self, call_id: str) -> None:
        """The call ended: close both legs (the browsers see their connection close)."""
        call = self._calls.pop(call_id, None)
        if call is not None:
            await call.media.close()
        self._quality.forget(call_id)

    # --- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Node stopping: close every leg (browsers rebuild theirs with the next owner)."""
        self._closing = True
        await stop_tasks(task for task in (self._supervisor, self._cadence_task) if task)
        for call_id in list(self._calls):
            await self.close_legs(call_id)

    # --- negotiation ----------------------------------------------------------------------

    async def _answer_offer(self, call_id: str, role: Role, sdp: str) -> None:
        if self._closing:
            return
        call = self._calls.get(call_id)
        if call is None:
            media = CallMedia(
                self._rtc_configuration,
                self._leg_settings,
                on_status=self._status_listener(call_id),
            )
            call = self._calls[call_id] = _CallLegs(media)
        self._start_background_tasks()
        call.opening += 1
        try:
            async with asyncio.timeout(OFFER_TIMEOUT_SECONDS):
                answer = await call.media.open_leg(Side(role.value), sdp)
        except TimeoutError:
            log.warning("call %s: answering %s's offer timed out", call_id, role)
            await self._tell(
                call_id,
                role,
                Error(
                    code="media_unavailable",
                    message="The video connection could not be set up: try again",
                ),
            )
            return
        except Exception as refused:
            # The offer is the only input here: what aiortc cannot use is a bad offer.
            log.info("call %s: %s's offer refused: %s", call_id, role, _reason(refused))
            await self._tell(
                call_id,
                role,
                Error(
                    code="invalid_field",
                    message="The SDP offer could not be used: it must be a WebRTC offer "
                    "with audio and/or video (Opus, VP8)",
                    field="sdp",
                ),
            )
            return
        finally:
            call.opening -= 1
        self._quality.count_leg_opened()
        await self._tell(call_id, role, ServerSdpAnswer(sdp=answer))

    async def _add_candidate(
        self, call_id: str, role: Role, candidate: str, mid: str | None, index: int | None
    ) -> None:
        call = self._calls.get(call_id)
        if call is None or call.media.leg(Side(role.value)) is None:
            # Before the offer, or after the call's legs closed: nothing to add it to. The
            # browser sends its offer first, and the offer carries what it had gathered.
            return
        if candidate and mid is None and index is None:
            await self._tell(
                call_id,
                role,
                Error(
                    code="invalid_field",
                    message="A candidate needs sdp_mid or sdp_mline_index",
                    field="sdp_mid",
                ),
            )
            return
        try:
            await call.media.add_remote_candidate(Side(role.value), candidate or None, mid, index)
        except Exception as refused:
            log.info("call %s: %s's candidate refused: %s", call_id, role, _reason(refused))
            await self._tell(
                call_id,
                role,
                Error(
                    code="invalid_field",
                    message="The ICE candidate could not be read: expected an SDP "
                    "'candidate:' attribute",
                    field="candidate",
                ),
            )

    async def _tell_quality(self, call_id: str, role: Role, message: QualityStats) -> None:
        """The clinician sees both connections; the client only their own (their page
        shows a notice when it is poor), never the clinician's."""
        await self._tell(call_id, Role.CLINICIAN, message)
        if role is Role.CLIENT:
            await self._tell(call_id, Role.CLIENT, message)

    async def _tell(self, call_id: str, role: Role, message: ServerMessage) -> None:
        connection_id = self._sockets.current(call_id, role)
        if connection_id is not None:
            await self._sockets.send(call_id, role, connection_id, message)

    # --- billing follows media (R-M8) ------------------------------------------------------

    def _status_listener(self, call_id: str) -> Callable[[Side, LegStatus], None]:
        def on_status(side: Side, status: LegStatus) -> None:
            role = Role(side.value)
            self._quality.export_status(call_id, role, status)
            # The room reads ``status`` again when it runs the event (so events queued
            # behind each other cannot apply an older value last).
            self._on_liveness(call_id, role)

        return on_status

    def is_live(self, call_id: str, role: Role) -> bool:
        """Whether the participant's leg here shows life now (R-M8)."""
        status = self.status(call_id, role)
        return status is not None and status.is_live

    # --- supervision: quality every few seconds, dead legs closed; the poll cadence -------

    def _start_background_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = loop.create_task(self._supervise(), name="media-legs-supervisor")
        cadence = self._cadence
        if cadence is not None and (self._cadence_task is None or self._cadence_task.done()):
            self._cadence_task = loop.create_task(cadence.run(), name="media-poll-cadence")

    async def _supervise(self) -> None:
        # A plain sleep (no wait_for), so cancelling on close is never swallowed.
        while not self._closing:
            await asyncio.sleep(self._quality_interval)
            for call_id in list(self._calls):
                try:
                    await self._check_call(call_id)
                except Exception:
                    log.exception("call %s: media supervision failed", call_id)

    async def _check_call(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        for side in Side:
            leg = call.media.leg(side)
            role = Role(side.value)
            if leg is None:
                # Nobody there: say so, rather than leave their last figures on screen.
                absent = self._quality.message(call_id, role, None, None)
                await self._tell_quality(call_id, role, absent)
                continue
            if leg.status.connection_state in ("failed", "closed") and not call.opening:
                # The browser is gone (tab closed, network lost for good). It makes a new
                # offer when it comes back; until then the dead leg only holds a socket.
                await call.media.close_leg(side)
                self._quality.forget_leg(call_id, role)
                continue
            quality = await call.media.sample_quality(side)
            if self._calls.get(call_id) is call:  # not ended meanwhile
                if quality is not None:
                    self._quality.export_quality(call_id, role, quality)
                message = self._quality.message(call_id, role, leg.status, quality)
                await self._tell_quality(call_id, role, message)
        no_legs = all(call.media.leg(side) is None for side in Side)
        if no_legs and not call.opening and self._calls.get(call_id) is call:
            del self._calls[call_id]
            await call.media.close()
            self._quality.forget(call_id)


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:200]
