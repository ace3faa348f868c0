"""Forward RTP between the two legs of a call without decoding: THE aiortc adapter.

This is the only module that touches aiortc internals. aiortc has no public API for
forwarding media (aiortc#449, #55), and its own path for encoded frames (receiver jitter
buffer -> encoded frame -> sender re-packetizes) costs a frame of latency for video and
four packets (80 ms) for audio. So we forward at the RTP level:

- `IngressPort` replaces the receiver's `_handle_rtp_packet` on the instance. It keeps
  what the receiver does that the remote browser relies on (RTCP receiver statistics for
  its RR reports, NACKs for lost video packets, RTX unwrapping) and hands each packet to
  a sink instead of the jitter buffer and decoder thread, which never see a packet.
- `EgressPort` sends forwarded packets through the other leg's `RTCRtpSender`: it sets the
  sender's SSRC, mid and the payload type negotiated on that leg, keeps the sender's
  history (so aiortc answers NACKs with RTX) and counters (so its RTCP SR is right), and
  intercepts keyframe requests (PLI/FIR) and bandwidth estimates (REMB) to pass upstream.
- `StreamForwarder` (one per direction and kind) rewrites sequence numbers and timestamps
  so the egress stream stays continuous when the ingress leg is replaced (Refresh), holds
  video back until a keyframe whenever it had to drop, and requests one upstream.
- `Relay` wires two endpoints (legs) together and can swap either of them.

There is no queue in the forwarding path: a packet is forwarded in the same call that
delivered it, or dropped. Under overload, packets wait in the kernel socket buffer
(bounded by SO_RCVBUF) or aioice's receive queue, and the asyncio write buffer of the
egress socket; both are checked and packets shed past a bound (video then waits for the
next keyframe, which is requested).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiortc
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)

logger = logging.getLogger(__name__)

# The aiortc versions whose internals this adapter was written against and tested with.
# tests/unit/test_aiortc_internals.py fails loudly when the installed version's internals move.
TESTED_AIORTC_VERSIONS: tuple[str, ...] = ("1.16.0",)

MediaKind = Literal["audio", "video"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("audio", "video")

# Shed packets when this many datagrams wait in a leg's aioice receive queue: forwarding
# stale media only adds latency. (With today's aioice the queue rarely exceeds a few.)
MAX_INGRESS_BACKLOG_PACKETS = 64
# Shed packets when the egress socket's asyncio write buffer holds this much: asyncio
# buffers without bound when the kernel refuses a datagram, and aioice ignores
# pause_writing.
MAX_EGRESS_BACKLOG_BYTES = 256 * 1024
# Do not pass keyframe requests upstream more often than this: every request costs the
# sender a large keyframe, and browsers repeat requests while waiting.
MIN_KEYFRAME_REQUEST_INTERVAL_S = 0.25


class AiortcInternalsChanged(RuntimeError):
    """aiortc moved a private attribute or method that the forwarder relies on."""


def _private(obj: object, name: str) -> Any:
    """A private aiortc attribute, or a clear error naming it."""
    try:
        return getattr(obj, name)
    except AttributeError as exc:
        raise AiortcInternalsChanged(
            f"{type(obj).__name__}.{name} is gone (aiortc {aiortc.__version__}; "
            f"media/forward.py was tested with {', '.join(TESTED_AIORTC_VERSIONS)})"
        ) from exc


# --- keyframe detection (pure) ------------------------------------------------------------


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 RTP payload starts a keyframe (RFC 7741 sections 4.2, 4.3)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    # S (start of partition) set and partition id 0: the first packet of a frame.
    if not first & 0x10 or first & 0x07:
        return False
    pos = 1
    if first & 0x80:  # X: extension octet follows
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= len(payload):
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX octet
            pos += 1
    if pos >= len(payload):
        return False
    # VP8 payload header: the P bit is 0 for a keyframe.
    return not payload[pos] & 0x01


_H264_KEY_NAL_TYPES = frozenset({5, 7})  # IDR slice, SPS


def is_h264_keyframe_start(payload: bytes) -> bool:
    """True if this H.264 RTP payload carries an IDR or SPS (RFC 6184)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_NAL_TYPES:
        return True
    if nal_type == 24:  # STAP-A: 16-bit size, then the NAL unit
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in _H264_KEY_NAL_TYPES:
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start bit and original NAL type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in _H264_KEY_NAL_TYPES
    return False


def is_keyframe_start(codec: RTCRtpCodecParameters, payload: bytes) -> bool:
    name = codec.name.lower()
    if name == "vp8":
        return is_vp8_keyframe_start(payload)
    if name == "h264":
        return is_h264_keyframe_start(payload)
    # Unknown video codec: we cannot tell, so never hold it back.
    return True


# --- sequence number / timestamp rewriting (pure) -----------------------------------------


class StreamRewriter:
    """Maps ingress (SSRC, sequence number, timestamp) onto one continuous egress stream.

    The egress leg's receiver must see one stream even when the ingress leg is rebuilt
    (Refresh: new SSRC, new random sequence numbers and timestamps) or we dropped packets
    (it would otherwise wait for, and NACK, packets that will never come).
    """

    def __init__(self, clock_rate: int, *, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self._clock_rate = clock_rate
        self._source_ssrc: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        # Start low like aiortc does: a wrap soon after start upsets some SRTP stacks.
        self._last_seq = rng.randrange(0, 32768)
        self._last_ts = rng.randrange(0, 1 << 32)
        self._last_sent_at: float | None = None
        self._rebase_seq = True

    def mark_gap(self) -> None:
        """Packets were dropped: the next packet continues right after the last one sent."""
        self._rebase_seq = True

    def rewrite(self, ssrc: int, seq: int, ts: int, now: float) -> tuple[int, int]:
        if ssrc != self._source_ssrc:
            # A new source: keep our timeline moving at wall-clock pace from the last packet.
            if self._last_sent_at is None:
                elapsed_ticks = 0
            else:
                elapsed_ticks = max(1, int((now - self._last_sent_at) * self._clock_rate))
            self._ts_offset = (self._last_ts + elapsed_ticks - ts) & 0xFFFFFFFF
            self._source_ssrc = ssrc
            self._rebase_seq = True
        if self._rebase_seq:
            self._seq_offset = (self._last_seq + 1 - seq) & 0xFFFF
            self._rebase_seq = False
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (ts + self._ts_offset) & 0xFFFFFFFF
        # Only move forward; a late (reordered or retransmitted) packet keeps its place.
        if 0 < ((out_seq - self._last_seq) & 0xFFFF) < 0x8000:
            self._last_seq = out_seq
            self._last_ts = out_ts
            self._last_sent_at = now
        return out_seq, out_ts


# --- ports on a leg's transceivers --------------------------------------------------------

PacketSink = Callable[[RtpPacket, RTCRtpCodecParameters], Awaitable[None]]


class IngressPort:
    """Takes over RTP reception of one `RTCRtpReceiver`: no jitter buffer, no decoder.

    Installed when the leg is created, so a participant's media is always consumed,
    even while they are alone in the call (nothing piles up), and dropped when no sink
    is attached.
    """

    def __init__(self, receiver: RTCRtpReceiver, kind: MediaKind) -> None:
        self.kind = kind
        self.sink: PacketSink | None = None
        self.last_packet_at: float | None = None  # time.monotonic() of the last media packet
        self.media_ssrc: int | None = None
        self.packets_received = 0
        self.packets_shed = 0
        self.max_backlog_seen = 0
        self._receiver = receiver
        self._internals: Any = receiver
        # These dicts are created in __init__ and filled in by receive(): bind them once.
        self._codecs: dict[int, RTCRtpCodecParameters] = _private(
            receiver, "_RTCRtpReceiver__codecs"
        )
        self._streams: dict[int, StreamStatistics] = _private(
            receiver, "_RTCRtpReceiver__remote_streams"
        )
        self._rtx_ssrc: dict[int, int] = _private(receiver, "_RTCRtpReceiver__rtx_ssrc")
        self._nack = NackGenerator() if kind == "video" else None
        self._ingress_queue: Any = None
        _private(receiver, "_handle_rtp_packet")
        _private(receiver, "_send_rtcp_pli")
        # An instance attribute shadows the method: RTCDtlsTransport routes packets to
        # `receiver._handle_rtp_packet(packet, arrival_time_ms=...)`.
        setattr(receiver, "_handle_rtp_packet", self._on_rtp)  # noqa: B010

    @property
    def receiver(self) -> RTCRtpReceiver:
        return self._receiver

    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self._internals._enabled:
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
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

        if self._nack is not None and self._nack.add(packet):
            await self._internals._send_rtcp_nack(packet.ssrc, sorted(self._nack.missing))

        self.last_packet_at = time.monotonic()
        self.packets_received += 1
        sink = self.sink
        if sink is None:
            return
        backlog = self.backlog_packets()
        if backlog > self.max_backlog_seen:
            self.max_backlog_seen = backlog
        if backlog > MAX_INGRESS_BACKLOG_PACKETS:
            # The event loop fell behind: this packet is stale, forwarding it would only
            # add latency. The forwarder sees the gap and recovers (keyframe for video).
            self.packets_shed += 1
            return
        await sink(packet, codec)

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


class EgressPort:
    """Sends forwarded RTP through one `RTCRtpSender` and intercepts its feedback."""

    def __init__(self, transceiver: RTCRtpTransceiver, kind: MediaKind) -> None:
        sender = transceiver.sender
        self.kind = kind
        self.on_keyframe_request: Callable[[], Awaitable[None]] | None = None
        self.on_bandwidth_estimate: Callable[[int], Awaitable[None]] | None = None
        self.packets_sent = 0
        self.max_backlog_bytes_seen = 0
        # time.monotonic() of the last RTCP from the remote about what we send (receiver
        # reports, NACK, PLI, REMB): a browser without camera or microphone shows life so.
        self.last_feedback_at: float | None = None
        self._transceiver = transceiver
        self._sender = sender
        self._internals: Any = sender
        self._history: dict[int, RtpPacket] = _private(sender, "_RTCRtpSender__rtp_history")
        for name in (
            "_RTCRtpSender__ntp_timestamp",
            "_RTCRtpSender__rtp_timestamp",
            "_RTCRtpSender__octet_count",
            "_RTCRtpSender__packet_count",
            "_ssrc",
        ):
            _private(sender, name)
        self._payload_types: dict[str, int] = {}
        self._socket_transport: Any = None
        self._original_rtcp_handler: Callable[[AnyRtcpPacket], Awaitable[None]] = _private(
            sender, "_handle_rtcp_packet"
        )
        setattr(sender, "_handle_rtcp_packet", self._on_rtcp)  # noqa: B010

    @property
    def sender(self) -> RTCRtpSender:
        return self._sender

    def is_ready(self) -> bool:
        # `state` builds a string on every call; this runs once per forwarded packet.
        return bool(self._sender.transport._state is DtlsState.CONNECTED)

    def payload_type_for(self, codec: RTCRtpCodecParameters) -> int | None:
        """The payload type this leg negotiated for `codec` (legs may number them apart)."""
        key = codec.mimeType.lower()
        pt = self._payload_types.get(key)
        if pt is None:
            negotiated: list[RTCRtpCodecParameters] = _private(self._transceiver, "_codecs")
            for candidate in negotiated:
                if candidate.mimeType.lower() == key and candidate.payloadType is not None:
                    pt = self._payload_types[key] = candidate.payloadType
                    break
        return pt

    def backlog_bytes(self) -> int:
        """Bytes waiting in the asyncio write buffer of this leg's socket."""
        socket_transport = self._socket_transport
        if socket_transport is None:
            connection = _private(self._sender.transport.transport, "_connection")
            pair = _private(connection, "_nominated").get(1)
            if pair is None:
                return 0
            # aioice never changes the nominated pair once chosen: look it up once.
            socket_transport = self._socket_transport = getattr(pair.protocol, "transport", None)
            if socket_transport is None:
                return 0
        size = int(socket_transport.get_write_buffer_size())
        if size > self.max_backlog_bytes_seen:
            self.max_backlog_bytes_seen = size
        return size

    async def send(self, packet: RtpPacket) -> bool:
        """Send a packet whose sequence number, timestamp and payload type are set."""
        sender = self._internals
        packet.ssrc = sender._ssrc
        packet.csrc = []
        extensions = packet.extensions
        extensions.mid = self._transceiver.mid
        # Simulcast ids describe the ingress leg's layers, not ours.
        extensions.rtp_stream_id = None
        extensions.repaired_rtp_stream_id = None
        # abs-send-time is kept from the original sender: the receiver's bandwidth
        # estimator then measures the whole path, and its REMB goes back to that sender.
        transport = self._sender.transport
        data = packet.serialize(transport._rtp_header_extensions_map)
        try:
            await transport._send_rtp(data)
        except ConnectionError:
            return False
        # What aiortc's own RTP loop records: NACK history (answered with RTX by the
        # sender itself) and the counters its RTCP sender reports are built from.
        self._history[packet.sequence_number % RTP_HISTORY_SIZE] = packet
        sender._RTCRtpSender__ntp_timestamp = _ntp_now()
        sender._RTCRtpSender__rtp_timestamp = packet.timestamp
        sender._RTCRtpSender__octet_count += len(packet.payload)
        sender._RTCRtpSender__packet_count += 1
        self.packets_sent += 1
        return True

    async def _on_rtcp(self, packet: AnyRtcpPacket) -> None:
        self.last_feedback_at = time.monotonic()
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                handler = self.on_keyframe_request
                if handler is not None:
                    await handler()
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
        # Receiver reports (RTT, loss stats) and NACKs: aiortc's own handling.
        await self._original_rtcp_handler(packet)


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


# --- forwarding one stream ----------------------------------------------------------------


@dataclass
class ForwardingCounters:
    forwarded: int = 0
    dropped: int = 0
    keyframe_requests_upstream: int = 0
    keyframe_requests_from_receiver: int = 0
    bandwidth_estimates_passed: int = 0


class StreamForwarder:
    """Forwards one kind of media from one participant's leg to the other's."""

    def __init__(self, kind: MediaKind) -> None:
        self.kind = kind
        self.counters = ForwardingCounters()
        self._ingress: IngressPort | None = None
        self._egress: EgressPort | None = None
        self._rewriter: StreamRewriter | None = None
        self._is_video = kind == "video"
        # Video starts held back: the receiver can decode nothing before a keyframe.
        self._waiting_for_keyframe = self._is_video
        self._last_keyframe_request_at = -1e9

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_for_keyframe

    def connect_ingress(self, port: IngressPort | None) -> None:
        if self._ingress is not None and self._ingress.sink == self.forward:
            self._ingress.sink = None
        self._ingress = port
        if port is not None:
            port.sink = self.forward
        self._hold_until_keyframe()

    def connect_egress(self, port: EgressPort | None) -> None:
        if self._egress is not None:
            self._egress.on_keyframe_request = None
            self._egress.on_bandwidth_estimate = None
        self._egress = port
        # A new egress leg is a new stream for its receiver: start a fresh mapping.
        self._rewriter = None
        if port is not None:
            port.on_keyframe_request = self.on_keyframe_request
            port.on_bandwidth_estimate = self.on_bandwidth_estimate
        self._hold_until_keyframe()

    def _hold_until_keyframe(self) -> None:
        if self._is_video:
            self._waiting_for_keyframe = True
        if self._rewriter is not None:
            self._rewriter.mark_gap()

    async def forward(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        egress = self._egress
        if egress is None or not egress.is_ready():
            self._drop()
            return
        if egress.backlog_bytes() > MAX_EGRESS_BACKLOG_BYTES:
            self._drop()
            return
        if self._waiting_for_keyframe:
            if not is_keyframe_start(codec, packet.payload):
                self.counters.dropped += 1
                await self._request_keyframe()
                return
            self._waiting_for_keyframe = False
        payload_type = egress.payload_type_for(codec)
        if payload_type is None:
            self._drop()
            return
        rewriter = self._rewriter
        if rewriter is None:
            rewriter = self._rewriter = StreamRewriter(codec.clockRate)
        packet.sequence_number, packet.timestamp = rewriter.rewrite(
            packet.ssrc, packet.sequence_number, packet.timestamp, time.monotonic()
        )
        packet.payload_type = payload_type
        if await egress.send(packet):
            self.counters.forwarded += 1
        else:
            self._drop()

    def _drop(self) -> None:
        self.counters.dropped += 1
        self._hold_until_keyframe()

    async def on_keyframe_request(self) -> None:
        """The receiving browser lost picture (or just joined): ask the sender for a keyframe."""
        self.counters.keyframe_requests_from_receiver += 1
        await self._request_keyframe()

    async def request_keyframe_now(self) -> None:
        """Ask the sending browser for a keyframe, ignoring the rate limit (leg replaced)."""
        self._last_keyframe_request_at = -1e9
        await self._request_keyframe()

    async def _request_keyframe(self) -> None:
        ingress = self._ingress
        if not self._is_video or ingress is None:
            return
        now = time.monotonic()
        if now - self._last_keyframe_request_at < MIN_KEYFRAME_REQUEST_INTERVAL_S:
            return
        if await ingress.request_keyframe():
            self._last_keyframe_request_at = now
            self.counters.keyframe_requests_upstream += 1

    async def on_bandwidth_estimate(self, bitrate_bps: int) -> None:
        ingress = self._ingress
        if ingress is not None:
            await ingress.send_bandwidth_estimate(bitrate_bps)
            self.counters.bandwidth_estimates_passed += 1


# --- a call: two endpoints ----------------------------------------------------------------


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
    """

    def __init__(self) -> None:
        self._endpoints: dict[Side, RelayEndpoint] = {}
        # Keyed by the side whose media is forwarded.
        self._streams: dict[tuple[Side, MediaKind], StreamForwarder] = {
            (side, kind): StreamForwarder(kind) for side in Side for kind in MEDIA_KINDS
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


# --- self-check of the internals used above -----------------------------------------------


async def check_aiortc_internals() -> list[str]:
    """Every private aiortc attribute this module relies on, checked on a live object.

    Returns the list of problems (empty when all is well); the unit test asserts it is empty
    and prints it, so an aiortc upgrade that moves something fails with a clear message.
    """
    problems: list[str] = []
    if aiortc.__version__ not in TESTED_AIORTC_VERSIONS:
        problems.append(
            f"aiortc {aiortc.__version__} is not in TESTED_AIORTC_VERSIONS "
            f"{TESTED_AIORTC_VERSIONS}: re-run the media tests and update the pin"
        )
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        receiver: Any = transceiver.receiver
        sender: Any = transceiver.sender
        for obj, names in (
            (
                receiver,
                (
                    "_handle_rtp_packet",
                    "_handle_rtcp_packet",
                    "_send_rtcp",
                    "_send_rtcp_pli",
                    "_send_rtcp_nack",
                    "_enabled",
                    "_RTCRtpReceiver__codecs",
                    "_RTCRtpReceiver__remote_streams",
                    "_RTCRtpReceiver__rtx_ssrc",
                    "_RTCRtpReceiver__rtcp_ssrc",
                    "_RTCRtpReceiver__decoder_queue",
                ),
            ),
            (
                sender,
                (
                    "_handle_rtcp_packet",
                    "_send_keyframe",
                    "_ssrc",
                    "_RTCRtpSender__rtp_history",
                    "_RTCRtpSender__ntp_timestamp",
                    "_RTCRtpSender__rtp_timestamp",
                    "_RTCRtpSender__octet_count",
                    "_RTCRtpSender__packet_count",
                ),
            ),
            (transceiver, ("_codecs",)),
            (
                sender.transport,
                ("_send_rtp", "_rtp_header_extensions_map", "_rtp_router", "_state"),
            ),
            (sender.transport.transport, ("_connection",)),
            (sender.transport.transport._connection, ("_queue", "_nominated")),
        ):
            for name in names:
                if not hasattr(obj, name):
                    problems.append(f"{type(obj).__name__}.{name} is missing")
        if not hasattr(DtlsState, "CONNECTED"):
            problems.append("aiortc.rtcdtlstransport.State.CONNECTED is missing")
        # The RTCP router must still call the (shadowable) instance attribute.
        import inspect

        from aiortc import rtcdtlstransport

        source = inspect.getsource(rtcdtlstransport.RTCDtlsTransport)
        for needle in ("receiver._handle_rtp_packet(", "recipient._handle_rtcp_packet("):
            if needle not in source:
                problems.append(f"RTCDtlsTransport no longer calls {needle}...)")
        if "self._send_keyframe()" not in inspect.getsource(RTCRtpSender._handle_rtcp_packet):
            problems.append("RTCRtpSender._handle_rtcp_packet no longer calls _send_keyframe")
    finally:
        await pc.close()
    return problems
