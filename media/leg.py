"""One media leg: the server-side RTCPeerConnection of one participant.

A leg always has one audio and one video transceiver whose receivers are taken over by
`aiortc_adapter.IngressPort` (media is read and dropped while the participant is alone)
and whose senders are fed by `aiortc_adapter.EgressPort`; once negotiated, a
`DatagramTap` on its ICE connection lets streams take the fast path. It reports its status
to listeners: `connection_state` (aiortc's), `media_flowing` (RTP arrived within the last
`silence_timeout_s`) and `feedback_flowing` (for a receive-only participant, one that sent
no RTP on this leg: RTCP about what we send, such as receiver reports, arrived within
`feedback_timeout_s`; a browser that joined without camera or microphone shows life only
so). The meter bills a participant while `LegStatus.is_live` (R-M8).

aiortc has no ICE restart (`restartIce`, `iceRestart` offers) and cannot renegotiate
transports, so Refresh builds a fresh leg (`call.CallMedia.open_leg`) and the relay
re-attaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from media.aiortc_adapter import DatagramCounter, DatagramTap, EgressPort, EgressTrack, IngressPort
from media.ice import (
    is_mdns_candidate,
    parse_candidate,
    remove_mdns_candidates,
    rewrite_host_candidates,
)
from media.kinds import MEDIA_KINDS, MediaKind
from media.ports import PortRange, confine_to_port_range

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LegSettings:
    # One codec per kind on every leg: forwarding cannot translate between codecs.
    video_codecs: tuple[str, ...] = ("video/VP8",)
    audio_codecs: tuple[str, ...] = ("audio/opus",)
    # A leg without RTP for this long is not carrying media (billing stops).
    silence_timeout_s: float = 1.5
    # Browsers send receiver reports about once a second for video (0.5-1.5 s, RFC 3550's
    # randomised interval), so a longer window than for RTP.
    feedback_timeout_s: float = 2.5
    watch_interval_s: float = 0.25
    # Advertised instead of private host addresses (server behind a 1:1 NAT).
    public_ip: str | None = None
    public_ipv6: str | None = None
    # UDP ports the leg's sockets bind to (a firewall's opening); None: any port.
    ports: PortRange | None = None
    # Forward the common packet in the datagram callback, on the bytes (media/fastpath.py);
    # False keeps every packet on aiortc's own receive path.
    fast_path: bool = True
    # Told how many datagrams the leg's sockets receive (the node's media/cadence.py).
    datagram_counter: DatagramCounter | None = None


@dataclass(frozen=True)
class LegStatus:
    connection_state: str  # aiortc's: new, connecting, connected, failed, closed
    media_flowing: bool
    feedback_flowing: bool = False  # receive-only participant: its reports arrive

    @property
    def is_live(self) -> bool:
        """Connected and showing life (their RTP, or their reports on ours): the participant
        counts as connected for billing (R-M8)."""
        return self.connection_state == "connected" and (
            self.media_flowing or self.feedback_flowing
        )


StatusListener = Callable[["MediaLeg", LegStatus], None]


class LegClosedError(RuntimeError):
    pass


class MediaLeg:
    """The server's RTCPeerConnection for one participant."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        settings: LegSettings | None = None,
        *,
        label: str = "",
    ) -> None:
        self.label = label
        self._settings = settings or LegSettings()
        self._pc = RTCPeerConnection(configuration)
        self._ingress: dict[MediaKind, IngressPort] = {}
        self._egress: dict[MediaKind, EgressPort] = {}
        self._tracks: list[EgressTrack] = []
        for kind in MEDIA_KINDS:
            track = EgressTrack(kind)
            self._tracks.append(track)
            transceiver = self._pc.addTransceiver(track, direction="sendrecv")
            transceiver.setCodecPreferences(self._codec_preferences(kind))
            self._ingress[kind] = IngressPort(transceiver, kind)
            self._egress[kind] = EgressPort(transceiver, kind)
        if self._settings.ports is not None:
            confine_to_port_range(self._pc, self._settings.ports)
        self._taps: dict[int, DatagramTap] = {}
        self._listeners: list[StatusListener] = []
        self._status = LegStatus("new", media_flowing=False)
        self._watch_task: asyncio.Task[None] | None = None
        self._closed = False
        self._pc.on("connectionstatechange", self._update_status)

    def _codec_preferences(self, kind: MediaKind) -> list[RTCRtpCodecCapability]:
        wanted = self._settings.video_codecs if kind == "video" else self._settings.audio_codecs
        wanted_lower = [name.lower() for name in wanted]
        capabilities = RTCRtpSender.getCapabilities(kind).codecs
        chosen = [c for c in capabilities if c.mimeType.lower() in wanted_lower]
        chosen.sort(key=lambda c: wanted_lower.index(c.mimeType.lower()))
        if kind == "video":
            # Keep RTX so browsers can retransmit lost packets to us and we to them.
            chosen += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
        return chosen

    # --- negotiation ----------------------------------------------------------------------

    async def accept_offer(self, offer_sdp: str) -> str:
        """Apply the browser's offer; returns our answer SDP (candidates included)."""
        self._assert_open()
        offer = RTCSessionDescription(sdp=remove_mdns_candidates(offer_sdp), type="offer")
        await self._pc.setRemoteDescription(offer)
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        self._tap_datagrams()
        self._start_watching()
        return self._local_sdp()

    async def create_offer(self) -> str:
        """Our offer SDP, for when the server initiates; follow with `accept_answer`."""
        self._assert_open()
        await self._pc.setLocalDescription(await self._pc.createOffer())
        self._start_watching()
        return self._local_sdp()

    async def accept_answer(self, answer_sdp: str) -> None:
        self._assert_open()
        answer = RTCSessionDescription(sdp=remove_mdns_candidates(answer_sdp), type="answer")
        await self._pc.setRemoteDescription(answer)
        self._tap_datagrams()

    def _tap_datagrams(self) -> None:
        """Once negotiated (BUNDLE has picked the transports), tap each one's datagrams."""
        for port in self._ingress.values():
            transport = port.transport
            tap = self._taps.get(id(transport))
            if tap is None:
                tap = self._taps[id(transport)] = DatagramTap(
                    transport, self._settings.datagram_counter
                )
            port.fast_routes = tap.routes

    async def add_remote_candidate(
        self, candidate: str | None, sdp_mid: str | None = None, sdp_mline_index: int | None = 0
    ) -> bool:
        """Add a trickled browser candidate; `None` or "" means end of candidates.

        Returns False when the candidate was ignored (mDNS `.local` names, which aiortc
        would spend about a second trying to resolve, or a leg already closed).
        """
        if self._closed:
            return False
        if not candidate:
            await self._pc.addIceCandidate(None)
            return True
        if is_mdns_candidate(candidate):
            return False
        parsed = parse_candidate(candidate)
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await self._pc.addIceCandidate(parsed)
        return True

    def _local_sdp(self) -> str:
        sdp: str = self._pc.localDescription.sdp
        if self._settings.public_ip or self._settings.public_ipv6:
            sdp = rewrite_host_candidates(sdp, self._settings.public_ip, self._settings.public_ipv6)
        return sdp

    # --- status ---------------------------------------------------------------------------

    @property
    def status(self) -> LegStatus:
        return self._status

    @property
    def peer_connection(self) -> RTCPeerConnection:
        return self._pc

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        """Call `listener(leg, status)` on every status change; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def ingress(self, kind: MediaKind) -> IngressPort | None:
        return self._ingress.get(kind)

    def egress(self, kind: MediaKind) -> EgressPort | None:
        return self._egress.get(kind)

    def last_media_at(self) -> float | None:
        """time.monotonic() of the last RTP packet from the participant, if any (both paths)."""
        times = [p.last_packet_at for p in self._ingress.values() if p.last_packet_at]
        return max(times) if times else None

    def last_feedback_at(self) -> float | None:
        """time.monotonic() of the last RTCP from the participant about our media, if any."""
        times = [p.last_feedback_at for p in self._egress.values() if p.last_feedback_at]
        return max(times) if times else None

    def _update_status(self) -> None:
        state = "closed" if self._closed else str(self._pc.connectionState)
        now = time.monotonic()
        last = self.last_media_at()
        flowing = (
            state == "connected"
            and last is not None
            and now - last < self._settings.silence_timeout_s
        )
        # Reports count for a participant who sends no media at all; one who does is judged
        # by their media (a cut network is noticed after the shorter RTP silence).
        feedback = self.last_feedback_at() if last is None else None
        reporting = (
            state == "connected"
            and feedback is not None
            and now - feedback < self._settings.feedback_timeout_s
        )
        status = LegStatus(state, flowing, reporting)
        if status == self._status:
            return
        self._status = status
        for listener in list(self._listeners):
            try:
                listener(self, status)
            except Exception:
                logger.exception("leg %s: status listener failed", self.label)

    def _start_watching(self) -> None:
        if self._watch_task is None:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        # Silence is an absence of events, so it has to be polled for.
        interval = self._settings.watch_interval_s
        while not self._closed:
            self._update_status()
            await asyncio.sleep(interval)

    # --- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for port in self._ingress.values():
            port.consumer = None
        await self._pc.close()
        for track in self._tracks:
            track.stop()
        self._update_status()

    @property
    def closed(self) -> bool:
        return self._closed

    def _assert_open(self) -> None:
        if self._closed:
            raise LegClosedError(f"leg {self.label} is closed")
