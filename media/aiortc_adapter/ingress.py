"""Ingress: `IngressPort`, the receiving side of a leg's transceiver."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from aiortc import (
    RTCRtpReceiver,
    RTCRtpTransceiver,
)
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)

from media.aiortc_adapter._internals import MAX_INGRESS_BACKLOG_PACKETS, _private
from media.aiortc_adapter.reception import FastNackGenerator, FastStreamStatistics
from media.fastpath import FIXED_HEADER
from media.kinds import MediaKind
from media.nack import NackRequester

_unpack_fixed_header = FIXED_HEADER.unpack_from


class StreamConsumer(Protocol):
    """What an ingress port hands its packets to (a `forward.StreamForwarder`)."""

    # True while plain bytes may be forwarded as they are (the fast path); read per
    # datagram, so a plain attribute.
    takes_bytes: bool

    def forward_packet(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None: ...

    def forward_bytes(
        self, data: bytes, codec: RTCRtpCodecParameters, seq: int, ts: int, ssrc: int, now: float
    ) -> None:
        """A plain packet with these header fields, received at `now` (time.monotonic())."""
        ...

    def shed(self, seq: int) -> None:
        """The packet `seq` was dropped before reaching the consumer (backlog)."""
        ...


def header_extension_ids(transport: RTCDtlsTransport) -> tuple[object, ...]:
    """The extension ids a leg negotiated (equal on two legs: extensions copy as bytes)."""
    ids = _private(transport._rtp_header_extensions_map, "_HeaderExtensionsMap__ids")
    return (
        ids.mid,
        ids.repaired_rtp_stream_id,
        ids.rtp_stream_id,
        ids.abs_send_time,
        ids.transmission_offset,
        ids.audio_level,
        ids.transport_sequence_number,
    )


# --- ingress ------------------------------------------------------------------------------


class IngressPort:
    """Takes over RTP reception of one `RTCRtpReceiver`: no jitter buffer, no decoder.

    Installed when the leg is created, so a participant's media is always consumed,
    even while they are alone in the call (nothing piles up), and dropped when no
    consumer is attached.
    """

    def __init__(self, transceiver: RTCRtpTransceiver, kind: MediaKind) -> None:
        receiver = transceiver.receiver
        self.kind = kind
        self.consumer: StreamConsumer | None = None
        self.last_packet_at: float | None = None  # time.monotonic() of the last media packet
        self.media_ssrc: int | None = None
        self.packets_received = 0
        self.packets_on_fast_path = 0
        self.packets_shed = 0
        self.max_backlog_seen = 0
        # Set by the leg's DatagramTap: media SSRCs it may handle on the fast path.
        self.fast_routes: dict[int, IngressPort] | None = None
        self._transceiver = transceiver
        self._receiver = receiver
        self._internals: Any = receiver
        # These dicts are created in __init__ and filled in by receive(): bind them once.
        self._codecs: dict[int, RTCRtpCodecParameters] = _private(
            receiver, "_RTCRtpReceiver__codecs"
        )
        # aiortc's receiver reports read these; the fast path fills them from two integers.
        self._streams: dict[int, FastStreamStatistics] = _private(
            receiver, "_RTCRtpReceiver__remote_streams"
        )
        self._rtx_ssrc: dict[int, int] = _private(receiver, "_RTCRtpReceiver__rtx_ssrc")
        # Video only (audio is never NACKed): what is missing (aiortc's bookkeeping), and
        # when to ask for it (read only while `_nack` is set).
        self._nack = FastNackGenerator() if kind == "video" else None
        self._nack_requester = NackRequester()
        # The leg's sender on the same transceiver measures the round trip (RTCP RR).
        self._sender_internals: Any = transceiver.sender
        _private(self._sender_internals, "_RTCRtpSender__rtt")
        self._ingress_queue: Any = None
        self._background: set[asyncio.Task[None]] = set()
        for name in ("_handle_rtp_packet", "_send_rtcp_pli", "_send_rtcp_nack", "_run_rtcp"):
            _private(receiver, name)
        # Instance attributes shadow the methods: RTCDtlsTransport routes packets to
        # `receiver._handle_rtp_packet(packet, arrival_time_ms=...)` and the peer
        # connection starts the receiver with `receiver.receive(parameters)`.
        setattr(receiver, "_handle_rtp_packet", self._on_rtp)  # noqa: B010
        setattr(receiver, "receive", self._receive_without_decoder)  # noqa: B010

    @property
    def receiver(self) -> RTCRtpReceiver:
        return self._receiver

    @property
    def mid(self) -> str | None:
        mid: str | None = self._transceiver.mid
        return mid

    @property
    def transport(self) -> RTCDtlsTransport:
        transport: RTCDtlsTransport = self._receiver.transport
        return transport

    async def _receive_without_decoder(self, parameters: RTCRtpReceiveParameters) -> None:
        """`RTCRtpReceiver.receive` without starting its decoder thread (never fed here)."""
        receiver = self._internals
        if receiver._RTCRtpReceiver__started:
            return
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                self._codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        receiver.transport._register_rtp_receiver(receiver, parameters)
        receiver._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(receiver._run_rtcp())
        receiver._RTCRtpReceiver__started = True

    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """The slow path: aiortc parsed and routed this packet."""
        if not self._internals._enabled:
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = FastStreamStatistics(codec.clockRate)
        stream.add(packet)

        if is_rtx(codec):
            original_ssrc = self._rtx_ssrc.get(packet.ssrc, self.media_ssrc)
            apt = codec.parameters.get("apt")
            # Payloads under 2 bytes are bandwidth-probe padding, not retransmissions.
            if original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int):
                return
            base_codec = self._codecs.get(apt)
            if base_codec is None:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = base_codec
        else:
            self.media_ssrc = packet.ssrc
            routes = self.fast_routes
            if routes is not None and routes.get(packet.ssrc) is not self:
                # From the next datagram on, the tap may take this stream's fast path.
                routes[packet.ssrc] = self

        now = self.last_packet_at = time.monotonic()
        nack = self._nack
        if nack is not None and (
            nack.add(packet) or (nack.missing and now >= self._nack_requester.next_check_at)
        ):
            self._request_missing(nack, packet.ssrc, now)

        self.packets_received += 1
        consumer = self.consumer
        if consumer is None:
            return
        backlog = self.backlog_packets()
        if backlog > self.max_backlog_seen:
            self.max_backlog_seen = backlog
        if backlog > MAX_INGRESS_BACKLOG_PACKETS:
            # The event loop fell behind: this packet is stale, forwarding it would only
            # add latency. The consumer's drop path recovers (keyframe for video).
            self.packets_shed += 1
            consumer.shed(packet.sequence_number)
            return
        consumer.forward_packet(packet, codec)

    def receive_plain(self, data: bytes, shed: bool = False) -> None:
        """The fast path: a plain (unprotected) RTP packet of this port's media SSRC.

        With `shed` (the socket is backlogged) the packet is counted as received, so no
        NACK asks for it again, and handed to the consumer's drop path instead.
        """
        _, second, seq, ts, ssrc = _unpack_fixed_header(data)
        codec = self._codecs.get(second & 0x7F)
        consumer = self.consumer
        if codec is None or consumer is None:
            return
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = FastStreamStatistics(codec.clockRate)
        stream.add_fields(seq, ts)
        now = self.last_packet_at = time.monotonic()
        nack = self._nack
        if nack is not None and (
            nack.add_seq(seq) or (nack.missing and now >= self._nack_requester.next_check_at)
        ):
            self._request_missing(nack, ssrc, now)
        self.packets_received += 1
        if shed:
            self.packets_shed += 1
            consumer.shed(seq)
            return
        self.packets_on_fast_path += 1
        consumer.forward_bytes(data, codec, seq, ts, ssrc, now)

    def _request_missing(self, nack: FastNackGenerator, ssrc: int, now: float) -> None:
        """NACK the missing packets that are due (new ones, and those asked for a round
        trip ago: `media.nack`); called on a new gap, and while packets are missing."""
        round_trip_s: float | None = self._sender_internals._RTCRtpSender__rtt
        wanted = self._nack_requester.due(nack.missing, now, round_trip_s)
        if wanted:
            self._in_background(self._internals._send_rtcp_nack(ssrc, wanted))

    def backlog_packets(self) -> int:
        """Datagrams received by aioice for this leg and not yet processed."""
        queue = self._ingress_queue
        if queue is None:
            # Bound lazily: BUNDLE may swap the receiver's transport during negotiation.
            connection = _private(self._receiver.transport.transport, "_connection")
            queue = self._ingress_queue = _private(connection, "_queue")
        return int(queue.qsize())

    async def request_keyframe(self) -> bool:
        """Send a PLI to the browser for its current video stream."""
        if self.media_ssrc is None:
            return False
        await self._internals._send_rtcp_pli(self.media_ssrc)
        return True

    async def send_bandwidth_estimate(self, bitrate_bps: int) -> None:
        """Tell the browser how much the far end can receive (REMB)."""
        rtcp_ssrc = _private(self._receiver, "_RTCRtpReceiver__rtcp_ssrc")
        if self.media_ssrc is None or rtcp_ssrc is None:
            return
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=rtcp_ssrc,
            media_ssrc=0,
            fci=pack_remb_fci(bitrate_bps, [self.media_ssrc]),
        )
        await self._internals._send_rtcp(packet)

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
