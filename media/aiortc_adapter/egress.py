"""Egress: `EgressPort` and `EgressTrack`, the sending side of a leg's transceiver."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aioice.ice import StunProtocol
from aiortc import (
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unpack_remb_fci,
)

from media.aiortc_adapter._internals import _private
from media.aiortc_adapter.srtp import SrtpCalls, _srtp_calls
from media.fastpath import (
    PacketHistory,
)
from media.kinds import MediaKind

logger = logging.getLogger(__name__)


class EgressPort:
    """Sends forwarded RTP through one `RTCRtpSender` and intercepts its feedback."""

    def __init__(self, transceiver: RTCRtpTransceiver, kind: MediaKind) -> None:
        sender = transceiver.sender
        self.kind = kind
        self.on_keyframe_request: Callable[[], None] | None = None
        self.on_bandwidth_estimate: Callable[[int], Any] | None = None
        self.packets_sent = 0
        self.max_backlog_bytes_seen = 0
        self._tx_srtp: SrtpCalls | None = None
        self._last_codec: RTCRtpCodecParameters | None = None
        self._last_payload_type: int | None = None
        # time.monotonic() of the last RTCP from the remote about what we send (receiver
        # reports, NACK, PLI, REMB): a browser without camera or microphone shows life so.
        self.last_feedback_at: float | None = None
        self._transceiver = transceiver
        self._sender = sender
        self._internals: Any = sender
        self._aiortc_history: dict[int, RtpPacket] = _private(sender, "_RTCRtpSender__rtp_history")
        self._history = PacketHistory(RTP_HISTORY_SIZE)
        for name in (
            "_RTCRtpSender__ntp_timestamp",
            "_RTCRtpSender__rtp_timestamp",
            "_RTCRtpSender__octet_count",
            "_RTCRtpSender__packet_count",
            "_ssrc",
            "_RTCRtpSender__transport",
        ):
            _private(sender, name)
        self._payload_types: dict[str, int] = {}
        self._socket: tuple[Any, tuple[str, int]] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._original_rtcp_handler: Callable[[AnyRtcpPacket], Any] = _private(
            sender, "_handle_rtcp_packet"
        )
        setattr(sender, "_handle_rtcp_packet", self._on_rtcp)  # noqa: B010

    @property
    def sender(self) -> RTCRtpSender:
        return self._sender

    @property
    def ssrc(self) -> int:
        ssrc: int = self._internals._ssrc
        return ssrc

    @property
    def mid(self) -> str | None:
        mid: str | None = self._transceiver.mid
        return mid

    @property
    def transport(self) -> RTCDtlsTransport:
        transport: RTCDtlsTransport = self._sender.transport
        return transport

    def can_send(self, max_backlog_bytes: int) -> bool:
        """Connected, and the socket's write buffer holds no more than `max_backlog_bytes`."""
        if self._internals._RTCRtpSender__transport._state is not DtlsState.CONNECTED:
            return False
        found = self._socket or self._nominated_socket()
        if found is None:
            return True  # a TURN pair: aioice's own send task
        size = int(found[0].get_write_buffer_size())
        if size > self.max_backlog_bytes_seen:
            self.max_backlog_bytes_seen = size
        return size <= max_backlog_bytes

    def payload_type_for(self, codec: RTCRtpCodecParameters) -> int | None:
        """The payload type this leg negotiated for `codec` (legs may number them apart)."""
        if codec is self._last_codec:  # per packet: the same codec object as last time
            return self._last_payload_type
        key = codec.mimeType.lower()
        pt = self._payload_types.get(key)
        if pt is None:
            negotiated: list[RTCRtpCodecParameters] = _private(self._transceiver, "_codecs")
            for candidate in negotiated:
                if candidate.mimeType.lower() == key and candidate.payloadType is not None:
                    pt = self._payload_types[key] = candidate.payloadType
                    break
        if pt is not None:
            self._last_codec, self._last_payload_type = codec, pt
        return pt

    def _nominated_socket(self) -> tuple[Any, tuple[str, int]] | None:
        """The UDP transport and remote address of the nominated pair (plain UDP only)."""
        found = self._socket
        if found is None:
            connection = _private(self._sender.transport.transport, "_connection")
            pair = _private(connection, "_nominated").get(1)
            # A TURN pair wraps data in channel messages: leave it to aioice.
            if pair is None or type(pair.protocol) is not StunProtocol:
                return None
            socket_transport = getattr(pair.protocol, "transport", None)
            if socket_transport is None:
                return None
            # aioice never changes the nominated pair once chosen: look it up once.
            found = self._socket = (socket_transport, pair.remote_addr)
        return found

    def send_packet(self, packet: RtpPacket) -> bool:
        """Send a parsed packet whose sequence number, timestamp and payload type are set."""
        packet.ssrc = self._internals._ssrc
        packet.csrc = []
        extensions = packet.extensions
        extensions.mid = self._transceiver.mid
        # Simulcast ids describe the ingress leg's layers, not ours.
        extensions.rtp_stream_id = None
        extensions.repaired_rtp_stream_id = None
        # abs-send-time is kept from the original sender: the receiver's bandwidth
        # estimator then measures the whole path, and its REMB goes back to that sender.
        data = packet.serialize(self._sender.transport._rtp_header_extensions_map)
        return self.send_rewritten(
            data, packet.payload_type, packet.sequence_number, packet.timestamp, len(packet.payload)
        )

    def send_rewritten(
        self, data: bytes, payload_type: int, seq: int, ts: int, payload_size: int
    ) -> bool:
        """Send a plain RTP packet with these header fields (and this leg's SSRC), protected.

        `data` is the packet as it arrived: the header is rewritten while protecting, in
        the SRTP session's own buffer, and the history keeps `data` and the fields.
        """
        sender = self._internals
        transport = sender._RTCRtpSender__transport
        srtp = self._tx_srtp
        if srtp is None or srtp.session is not transport._tx_srtp:
            srtp = self._tx_srtp = _srtp_calls(srtp, transport._tx_srtp)
            if srtp is None:
                return False
        ssrc = sender._ssrc
        protected = srtp.protect_rewritten(data, payload_type, seq, ts, ssrc)
        if protected is None:
            return False
        found = self._socket or self._nominated_socket()
        if found is not None:
            socket_transport = found[0]
            if socket_transport.is_closing():
                # ICE closed it (consent expired, leg closing) before DTLS noticed.
                self._socket = None
                return False
            socket_transport.sendto(protected, found[1])
        elif not self._send_through_relay(transport, protected):
            return False
        transport._RTCDtlsTransport__tx_bytes += len(protected)
        transport._RTCDtlsTransport__tx_packets += 1
        # What aiortc's own RTP loop records: NACK history (see _on_rtcp) and the
        # counters its RTCP sender reports are built from.
        self._history.put(seq, data, payload_type, ts, ssrc)
        if not self.packets_sent & 7:
            # The SR's (NTP, RTP timestamp) pair need only describe one recent packet.
            sender._RTCRtpSender__ntp_timestamp = _ntp_now()
            sender._RTCRtpSender__rtp_timestamp = ts
        sender._RTCRtpSender__octet_count += payload_size
        sender._RTCRtpSender__packet_count += 1
        self.packets_sent += 1
        return True

    def _send_through_relay(self, transport: Any, protected: bytes) -> bool:
        """A TURN pair: aioice wraps the data in a channel message, from a task."""
        connection = _private(transport.transport, "_connection")
        if connection._nominated.get(1) is None:
            return False  # ICE closed (consent expired) before DTLS noticed
        task = asyncio.get_running_loop().create_task(connection.send(protected))
        self._background.add(task)
        task.add_done_callback(_sent_through_relay)
        task.add_done_callback(self._background.discard)
        return True

    async def _on_rtcp(self, packet: AnyRtcpPacket) -> None:
        self.last_feedback_at = time.monotonic()
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                handler = self.on_keyframe_request
                if handler is not None:
                    handler()
                return
            if packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, _ = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                estimate_handler = self.on_bandwidth_estimate
                if estimate_handler is not None:
                    await estimate_handler(bitrate)
                return
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            # aiortc answers from its history of RtpPackets: parse only what is asked for.
            extensions_map = self._sender.transport._rtp_header_extensions_map
            for seq in packet.lost:
                data = self._history.get(seq)
                if data is not None:
                    self._aiortc_history[seq % RTP_HISTORY_SIZE] = RtpPacket.parse(
                        data, extensions_map
                    )
        # Receiver reports (RTT, loss stats) and NACKs (RTX): aiortc's own handling.
        await self._original_rtcp_handler(packet)


def _sent_through_relay(task: asyncio.Task[None]) -> None:
    # The relay may close between the check and the send: that packet is lost, like UDP.
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, ConnectionError):
        logger.warning("sending through the TURN relay failed: %r", error)


def _ntp_now() -> int:
    # Same value as aiortc.clock.current_ntp_time(), without building a datetime.
    now = time.time() + 2208988800  # seconds between 1900-01-01 and 1970-01-01
    seconds = int(now)
    return (seconds << 32) | int((now - seconds) * (1 << 32))


class EgressTrack(MediaStreamTrack):
    """A placeholder track for a sender fed by `EgressPort`.

    aiortc's sender loop polls every 20 ms while it has no track, and would encode any
    frame a track returned; this track returns nothing until it is stopped, so the
    sender's own loop just waits (and `encode` is never reached).
    """

    def __init__(self, kind: MediaKind) -> None:
        super().__init__()
        self.kind = kind
        self._ended_waiter: Any = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        self._ended_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._ended_waiter
        finally:
            self._ended_waiter = None
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        waiter = self._ended_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# --- self-check of the internals used above -----------------------------------------------
