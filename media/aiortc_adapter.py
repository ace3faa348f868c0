"""THE aiortc adapter: the only module that touches aiortc (and aioice) internals.

aiortc has no public API for forwarding media (aiortc#449, #55), and its own path for
encoded frames (receiver jitter buffer -> encoded frame -> sender re-packetizes) costs a
frame of latency for video and four packets (80 ms) for audio. So we forward at the RTP
level, on ports attached to a leg's transceivers:

- `IngressPort` replaces the receiver's `_handle_rtp_packet` (the slow path: aiortc's DTLS
  transport parsed an `RtpPacket`) and its `receive` (the same, minus the decoder thread
  that nothing would ever feed). It keeps what the receiver does that the remote browser
  relies on (RTCP receiver statistics for its RR reports, NACKs for lost video packets,
  RTX unwrapping) and hands each packet to its consumer (`forward.StreamForwarder`).
- `DatagramTap` takes over aioice's `Connection.data_received` for a leg: an SRTP packet
  of an SSRC whose consumer takes bytes is unprotected with the leg's own SRTP session and
  handled right there, in the datagram callback (the fast path, see `fastpath`); all else
  goes to aioice's queue and aiortc's own receive loop as before.
- `EgressPort` sends forwarded packets through the other leg's `RTCRtpSender`: SRTP with
  that leg's session, straight to the nominated socket; it keeps the bytes for NACKs
  (parsed into aiortc's RTX history only when asked), the counters aiortc's RTCP sender
  reports are built from, and intercepts keyframe requests (PLI/FIR) and bandwidth
  estimates (REMB) to pass upstream.
- `EgressTrack` keeps the sender's own loop idle.
- `SrtpCalls` calls libsrtp on a pylibsrtp `Session`'s own context and buffer without the
  allocation and checks pylibsrtp makes on every packet (1.5 µs of 4 per packet measured).
- `keep_consent` replaces aioice's consent-freshness check on a leg's ICE connection by
  one that accepts late answers (see `consent`).

`check_aiortc_internals()` checks every private name used here on a live object, and
`TESTED_AIORTC_VERSIONS` pins the versions this was tested with.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiortc
from aioice import stun
from aioice.ice import Connection as IceConnection
from aioice.ice import StunProtocol
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    rtcdtlstransport,
    rtcrtpreceiver,
)
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
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
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from pylibsrtp import SRTP_MAX_TRAILER_LEN, Policy, Session
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from media.consent import ConsentClock, ConsentTiming
from media.fastpath import (
    PacketHistory,
    has_csrcs,
    is_rtp_not_rtcp,
    read_fixed_header,
    ssrc_of,
)
from media.kinds import MediaKind

logger = logging.getLogger(__name__)

# The aiortc versions whose internals this adapter was written against and tested with.
# tests/unit/test_aiortc_internals.py fails loudly when the installed version's internals move.
TESTED_AIORTC_VERSIONS: tuple[str, ...] = ("1.16.0",)

# Shed packets when this many datagrams wait in a leg's aioice receive queue: forwarding
# stale media only adds latency. (The fast path bypasses the queue; what remains in it is
# RTCP, RTX and streams on the slow path.)
MAX_INGRESS_BACKLOG_PACKETS = 64


class AiortcInternalsChanged(RuntimeError):
    """aiortc moved a private attribute or method that the forwarder relies on."""


def _private(obj: object, name: str) -> Any:
    """A private aiortc attribute, or a clear error naming it."""
    try:
        return getattr(obj, name)
    except AttributeError as exc:
        raise AiortcInternalsChanged(
            f"{type(obj).__name__}.{name} is gone (aiortc {aiortc.__version__}; "
            f"media/aiortc_adapter.py was tested with {', '.join(TESTED_AIORTC_VERSIONS)})"
        ) from exc


class StreamConsumer(Protocol):
    """What an ingress port hands its packets to (a `forward.StreamForwarder`)."""

    @property
    def takes_bytes(self) -> bool:
        """True while plain bytes may be forwarded as they are (the fast path)."""
        ...

    def forward_packet(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None: ...

    def forward_bytes(
        self, data: bytes, codec: RTCRtpCodecParameters, seq: int, ts: int, ssrc: int
    ) -> None: ...

    def shed(self, seq: int) -> None:
        """The packet `seq` was dropped before reaching the consumer (backlog)."""
        ...


class _SequenceAndTimestamp:
    """What aiortc's StreamStatistics and NackGenerator read from a packet, for bytes."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


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
        self._streams: dict[int, StreamStatistics] = _private(
            receiver, "_RTCRtpReceiver__remote_streams"
        )
        self._rtx_ssrc: dict[int, int] = _private(receiver, "_RTCRtpReceiver__rtx_ssrc")
        self._nack = NackGenerator() if kind == "video" else None
        self._header = _SequenceAndTimestamp()
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
            routes = self.fast_routes
            if routes is not None and routes.get(packet.ssrc) is not self:
                # From the next datagram on, the tap may take this stream's fast path.
                routes[packet.ssrc] = self

        if self._nack is not None and self._nack.add(packet):
            await self._internals._send_rtcp_nack(packet.ssrc, sorted(self._nack.missing))

        self.last_packet_at = time.monotonic()
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

    def receive_plain(self, data: bytes) -> None:
        """The fast path: a plain (unprotected) RTP packet of this port's media SSRC."""
        payload_type, seq, ts, ssrc = read_fixed_header(data)
        codec = self._codecs.get(payload_type)
        consumer = self.consumer
        if codec is None or consumer is None:
            return
        header: Any = self._header
        header.sequence_number = seq
        header.timestamp = ts
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = StreamStatistics(codec.clockRate)
        stream.add(header)
        nack = self._nack
        if nack is not None and nack.add(header):
            self._in_background(self._internals._send_rtcp_nack(ssrc, sorted(nack.missing)))
        self.last_packet_at = time.monotonic()
        self.packets_received += 1
        self.packets_on_fast_path += 1
        consumer.forward_bytes(data, codec, seq, ts, ssrc)

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


class SrtpCalls:
    """protect / unprotect of one pylibsrtp `Session`, per packet without its overhead.

    pylibsrtp's own methods allocate an `int *`, type-check and raise on every call; these
    reuse one length cell and answer None for a packet libsrtp refuses (replayed, forged,
    too long). Same context, same buffer, same libsrtp calls: aiortc's own uses of the
    session (RTCP, the slow path) interleave freely, all on the one event loop thread.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._context = _private(session, "_srtp")[0]
        self._cdata = _private(session, "_cdata")
        self._buffer = _private(session, "_buffer")
        self._room = len(self._cdata) - SRTP_MAX_TRAILER_LEN
        self._length = srtp_ffi.new("int *")

    def protect(self, data: bytes) -> bytes | None:
        return self._call(srtp_lib.srtp_protect, data)

    def unprotect(self, data: bytes) -> bytes | None:
        return self._call(srtp_lib.srtp_unprotect, data)

    def _call(self, function: Any, data: bytes) -> bytes | None:
        size = len(data)
        if size > self._room:
            return None
        self._buffer[0:size] = data
        length = self._length
        length[0] = size
        if function(self._context, self._cdata, length):
            return None
        result: bytes = self._buffer[0 : length[0]]
        return result


def _srtp_calls(cached: SrtpCalls | None, session: Session | None) -> SrtpCalls | None:
    """The `SrtpCalls` of `session`, rebuilt when the transport's session changed."""
    if session is None:
        return None
    if cached is None or cached.session is not session:
        return SrtpCalls(session)
    return cached


class DatagramTap:
    """The fast path's entry: every datagram of a leg's ICE connection passes here first.

    aioice's `StunProtocol.datagram_received` hands every non-STUN datagram to
    `Connection.data_received`, which queues it for aiortc's DTLS transport task. The tap
    replaces that method on the instance: SRTP media of a stream on the fast path is
    unprotected and forwarded at once (no queue, no task wake-up, no `RtpPacket`);
    anything else is queued exactly as before.
    """

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self.routes: dict[int, IngressPort] = {}
        self.datagrams_on_fast_path = 0
        self.unprotect_failures = 0
        self._dtls: Any = transport
        self._rx_srtp: SrtpCalls | None = None
        connection = _private(transport.transport, "_connection")
        self._queue_datagram: Callable[[bytes, int], None] = _private(connection, "data_received")
        _private(transport, "_rx_srtp")
        _private(transport, "_RTCDtlsTransport__rx_bytes")
        setattr(connection, "data_received", self._on_datagram)  # noqa: B010
        keep_consent(connection, ConsentTiming())
        # aioice first tries to parse every datagram as STUN: skip that for SRTP/SRTCP
        # (first byte 128-191, RFC 7983) on our plain UDP sockets; TURN relays still
        # come through `data_received` above.
        for protocol in _private(connection, "_protocols"):
            if type(protocol) is StunProtocol:
                self._tap_protocol(protocol)

    def _tap_protocol(self, protocol: StunProtocol) -> None:
        stun_received = protocol.datagram_received
        component = protocol.local_candidate.component
        on_datagram = self._on_datagram

        def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
            if type(data) is bytes and data and 127 < data[0] < 192:
                on_datagram(data, component)
            else:
                stun_received(data, addr)

        setattr(protocol, "datagram_received", datagram_received)  # noqa: B010

    def _on_datagram(self, data: bytes, component: int) -> None:
        if is_rtp_not_rtcp(data) and not has_csrcs(data):
            port = self.routes.get(ssrc_of(data))
            if port is not None:
                consumer = port.consumer
                srtp = self._rx_srtp
                if srtp is None or srtp.session is not self._dtls._rx_srtp:
                    srtp = self._rx_srtp = _srtp_calls(srtp, self._dtls._rx_srtp)
                if consumer is not None and consumer.takes_bytes and srtp is not None:
                    plain = srtp.unprotect(data)
                    if plain is None:
                        # aiortc drops these too (replayed or forged).
                        self.unprotect_failures += 1
                        return
                    dtls = self._dtls
                    dtls._RTCDtlsTransport__rx_bytes += len(data)
                    dtls._RTCDtlsTransport__rx_packets += 1
                    self.datagrams_on_fast_path += 1
                    port.receive_plain(plain)
                    return
        self._queue_datagram(data, component)


def keep_consent(connection: IceConnection, timing: ConsentTiming) -> ConsentClock:
    """Replace aioice's consent check on `connection` (RFC 7675, late answers accepted).

    aioice starts `connection.query_consent()` as a task once ICE completes and cancels that
    task on close, so the replacement is an instance attribute of the same name; if ICE has
    already completed, the running check is swapped at once.
    """
    clock = ConsentClock(timing, time.monotonic())
    nominated: dict[int, Any] = _private(connection, "_nominated")
    build_request: Callable[..., stun.Message] = _private(connection, "build_request")
    checks: set[asyncio.Task[None]] = set()

    async def check(pair: Any, password: str) -> None:
        clock.checks_sent += 1
        try:
            await pair.protocol.request(
                build_request(pair, nominate=False),
                pair.remote_addr,
                integrity_key=password.encode("utf8"),
                retransmissions=timing.retransmissions,
            )
        except stun.TransactionError:
            return  # unanswered (or refused): the clock alone decides when consent expires
        except ConnectionError:
            return  # the socket went away: the connection is closing
        clock.answered(time.monotonic())

    async def query_consent() -> None:
        clock.last_answer_at = time.monotonic()  # ICE has just completed: consent is fresh
        try:
            while True:
                await asyncio.sleep(timing.next_check_in())
                password = connection.remote_password
                for pair in list(nominated.values()):
                    if password is not None:
                        task = asyncio.ensure_future(check(pair, password))
                        checks.add(task)
                        task.add_done_callback(checks.discard)
                if clock.expired(time.monotonic()):
                    logger.info(
                        "consent to send expired: no answer to %d consent checks in %.0f s",
                        clock.checks_sent,
                        timing.expiry_seconds,
                    )
                    setattr(connection, "_query_consent_task", None)  # noqa: B010
                    await connection.close()
                    return
        finally:
            for task in list(checks):
                task.cancel()

    running: asyncio.Task[None] | None = _private(connection, "_query_consent_task")
    setattr(connection, "query_consent", query_consent)  # noqa: B010
    if running is not None and not running.done():
        running.cancel()
        setattr(connection, "_query_consent_task", asyncio.ensure_future(query_consent()))  # noqa: B010
    return clock


# --- egress -------------------------------------------------------------------------------


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

    def is_ready(self) -> bool:
        # `state` builds a string on every call; this runs once per forwarded packet.
        return bool(self._sender.transport._state is DtlsState.CONNECTED)

    def can_send(self, max_backlog_bytes: int) -> bool:
        """Connected, and the socket's write buffer holds no more than `max_backlog_bytes`."""
        return self.is_ready() and self.backlog_bytes() <= max_backlog_bytes

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

    def backlog_bytes(self) -> int:
        """Bytes waiting in the asyncio write buffer of this leg's socket."""
        found = self._nominated_socket()
        if found is None:
            return 0
        size = int(found[0].get_write_buffer_size())
        if size > self.max_backlog_bytes_seen:
            self.max_backlog_bytes_seen = size
        return size

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
        return self.send_bytes(data, packet.sequence_number, packet.timestamp, len(packet.payload))

    def send_bytes(self, data: bytes, seq: int, ts: int, payload_size: int) -> bool:
        """Protect and send a plain RTP packet already rewritten for this leg."""
        transport: Any = self._sender.transport
        srtp = self._tx_srtp
        if srtp is None or srtp.session is not transport._tx_srtp:
            srtp = self._tx_srtp = _srtp_calls(srtp, transport._tx_srtp)
            if srtp is None:
                return False
        protected = srtp.protect(data)
        if protected is None:
            return False
        found = self._nominated_socket()
        if found is not None:
            socket_transport = found[0]
            if socket_transport.is_closing():
                # ICE closed it (consent expired, leg closing) before DTLS noticed.
                self._socket = None
                return False
            socket_transport.sendto(protected, found[1])
        else:
            connection = _private(transport.transport, "_connection")
            if connection._nominated.get(1) is None:
                return False  # ICE closed (consent expired) before DTLS noticed
            # A TURN pair: aioice wraps the data in a channel message.
            task = asyncio.get_running_loop().create_task(connection.send(protected))
            self._background.add(task)
            task.add_done_callback(_sent_through_relay)
            task.add_done_callback(self._background.discard)
        transport._RTCDtlsTransport__tx_bytes += len(protected)
        transport._RTCDtlsTransport__tx_packets += 1
        # What aiortc's own RTP loop records: NACK history (bytes here; see _on_rtcp)
        # and the counters its RTCP sender reports are built from.
        self._history.put(seq, data)
        sender = self._internals
        if not self.packets_sent & 7:
            # The SR's (NTP, RTP timestamp) pair need only describe one recent packet.
            sender._RTCRtpSender__ntp_timestamp = _ntp_now()
            sender._RTCRtpSender__rtp_timestamp = ts
        sender._RTCRtpSender__octet_count += payload_size
        sender._RTCRtpSender__packet_count += 1
        self.packets_sent += 1
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

# Source fragments of aiortc/aioice code the adapter copies or depends on being called.
_EXPECTED_SOURCE: tuple[tuple[Any, str, str], ...] = (
    (rtcdtlstransport.RTCDtlsTransport, "receiver._handle_rtp_packet(", "RTP routing"),
    (rtcdtlstransport.RTCDtlsTransport, "recipient._handle_rtcp_packet(", "RTCP routing"),
    (rtcdtlstransport.RTCDtlsTransport, "self._rx_srtp.unprotect(data)", "SRTP receive"),
    (rtcdtlstransport.RTCDtlsTransport, "self._tx_srtp.protect(data)", "SRTP send"),
    (RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()", "PLI handling"),
    (RTCRtpSender._handle_rtcp_packet, "await self._retransmit(seq)", "NACK handling"),
    (RTCRtpSender._retransmit, "self.__rtp_history.get(", "RTX history"),
    # receive() is replaced by a copy without the decoder thread: it must not grow.
    (rtcrtpreceiver.RTCRtpReceiver.receive, "self.__decoder_thread.start()", "receive"),
    (rtcrtpreceiver.RTCRtpReceiver.receive, "._register_rtp_receiver(self, parameters)", "receive"),
    (rtcrtpreceiver.RTCRtpReceiver.receive, "asyncio.ensure_future(self._run_rtcp())", "receive"),
)
_RECEIVE_STATEMENTS = 20  # non-blank, non-comment lines of the body of receive() in 1.16.0


def _srtp_calls_problems() -> list[str]:
    """`SrtpCalls` must produce what pylibsrtp's own methods produce."""
    key = bytes(range(30))
    sending = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    receiving = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))
    for name in ("_srtp", "_cdata", "_buffer"):
        if not hasattr(sending, name):
            return [f"pylibsrtp Session.{name} is missing (SrtpCalls)"]
    plain = bytes([0x80, 96, 0, 1, 0, 0, 0, 9, 0, 0, 0, 7]) + b"payload"
    protected = SrtpCalls(sending).protect(plain)
    if protected is None or receiving.unprotect(protected) != plain:
        return ["SrtpCalls.protect no longer matches pylibsrtp's unprotect"]
    if SrtpCalls(receiving).unprotect(protected) is not None:
        return ["SrtpCalls.unprotect accepted a replayed packet"]
    return []


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
        connection = sender.transport.transport._connection
        for obj, names in (
            (
                receiver,
                (
                    "_handle_rtp_packet",
                    "_handle_rtcp_packet",
                    "_send_rtcp",
                    "_send_rtcp_pli",
                    "_send_rtcp_nack",
                    "_run_rtcp",
                    "_enabled",
                    "_RTCRtpReceiver__codecs",
                    "_RTCRtpReceiver__remote_streams",
                    "_RTCRtpReceiver__rtx_ssrc",
                    "_RTCRtpReceiver__rtcp_ssrc",
                    "_RTCRtpReceiver__started",
                    "_RTCRtpReceiver__rtcp_task",
                    "_RTCRtpReceiver__decoder_thread",
                ),
            ),
            (
                sender,
                (
                    "_handle_rtcp_packet",
                    "_send_keyframe",
                    "_retransmit",
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
                (
                    "_send_rtp",
                    "_rtp_header_extensions_map",
                    "_rtp_router",
                    "_state",
                    "_rx_srtp",
                    "_tx_srtp",
                    "_RTCDtlsTransport__rx_bytes",
                    "_RTCDtlsTransport__rx_packets",
                    "_RTCDtlsTransport__tx_bytes",
                    "_RTCDtlsTransport__tx_packets",
                ),
            ),
            (sender.transport._rtp_header_extensions_map, ("_HeaderExtensionsMap__ids",)),
            (sender.transport.transport, ("_connection", "_send")),
            (
                connection,
                (
                    "_queue",
                    "_nominated",
                    "_protocols",
                    "_query_consent_task",
                    "build_request",
                    "data_received",
                    "query_consent",
                    "remote_password",
                ),
            ),
        ):
            for name in names:
                if not hasattr(obj, name):
                    problems.append(f"{type(obj).__name__}.{name} is missing")
        if not hasattr(DtlsState, "CONNECTED"):
            problems.append("aiortc.rtcdtlstransport.State.CONNECTED is missing")
        for owner, needle, what in _EXPECTED_SOURCE:
            if needle not in inspect.getsource(owner):
                problems.append(f"{owner.__qualname__} no longer has `{needle}` ({what})")
        body = inspect.getsource(rtcrtpreceiver.RTCRtpReceiver.receive).split('"""')[-1]
        statements = [
            line for line in body.splitlines() if line.strip() and not line.strip().startswith("#")
        ]
        if len(statements) != _RECEIVE_STATEMENTS:
            problems.append(
                "RTCRtpReceiver.receive changed (IngressPort._receive_without_decoder copies it)"
            )
        from aioice import ice

        problems += _srtp_calls_problems()
        if "asyncio.create_task(self.query_consent())" not in inspect.getsource(ice.Connection):
            problems.append("aioice Connection no longer starts self.query_consent() (consent)")
        if "self.receiver.data_received(" not in inspect.getsource(ice.StunProtocol):
            problems.append("aioice StunProtocol no longer calls Connection.data_received")
    finally:
        await pc.close()
    return problems
