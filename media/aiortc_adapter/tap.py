"""`DatagramTap`: the fast path's entry on a leg's ICE connection."""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, Protocol

from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import RTCDtlsTransport

from media.aiortc_adapter._internals import (
    MAX_SOCKET_QUEUE_BYTES,
    SOCKET_QUEUE_SAMPLE_DATAGRAMS,
    _private,
)
from media.aiortc_adapter.ice_consent import keep_consent
from media.aiortc_adapter.ingress import IngressPort
from media.aiortc_adapter.srtp import SrtpCalls, _srtp_calls
from media.consent import ConsentTiming
from media.fastpath import fast_path_ssrc

# Linux's SO_MEMINFO (not in the socket module): the socket's memory counters, the first
# being the bytes of datagrams queued for reading.
_SO_MEMINFO = 55
_MEMINFO = struct.Struct("=9I")


def socket_queued_bytes(sock: Any) -> int | None:
    """Bytes the kernel holds queued for reading on this UDP socket (None: cannot tell)."""
    if sys.platform != "linux":
        return None
    try:
        info = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
    except (OSError, AttributeError, ValueError):
        return None
    queued: int = _MEMINFO.unpack(info)[0]
    return queued


class DatagramCounter(Protocol):
    """Where a tap reports how many datagrams it read (the node's `cadence.PollCadence`)."""

    def add(self, datagrams: int) -> None: ...


class DatagramTap:
    """The fast path's entry: every datagram of a leg's ICE connection passes here first.

    aioice's `StunProtocol.datagram_received` hands every non-STUN datagram to
    `Connection.data_received`, which queues it for aiortc's DTLS transport task. The tap
    replaces that method on the instance: SRTP media of a stream on the fast path is
    unprotected and forwarded at once (no queue, no task wake-up, no `RtpPacket`);
    anything else is queued exactly as before.

    The fast path has no queue of its own, so its backlog is the kernel's: every
    `SOCKET_QUEUE_SAMPLE_DATAGRAMS` datagrams the tap reads how much waits on the socket,
    and while that is over `MAX_SOCKET_QUEUE_BYTES` and not draining (the event loop fell
    behind, not a burst being read) the media it reads is shed through the forwarder's drop
    path (keyframe hold and request) instead of forwarded late: shedding costs a fraction
    of forwarding, so the queue drains.
    """

    def __init__(self, transport: RTCDtlsTransport, counter: DatagramCounter | None = None) -> None:
        self._counter = counter
        self.routes: dict[int, IngressPort] = {}
        self.datagrams_on_fast_path = 0
        self.unprotect_failures = 0
        # Set from the last sample of a socket's queue (see the class docstring).
        self.backlogged = False
        self.largest_queue_seen = 0
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
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        counter = self._counter
        countdown = SOCKET_QUEUE_SAMPLE_DATAGRAMS
        previous_queue = 0

        def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
            nonlocal countdown, previous_queue
            if type(data) is bytes and data and 127 < data[0] < 192:
                countdown -= 1
                if not countdown:
                    countdown = SOCKET_QUEUE_SAMPLE_DATAGRAMS
                    if sock is not None:
                        previous_queue = self._sample_queue(sock, previous_queue)
                    if counter is not None:
                        counter.add(SOCKET_QUEUE_SAMPLE_DATAGRAMS)
                on_datagram(data, component)
            else:
                stun_received(data, addr)

        setattr(protocol, "datagram_received", datagram_received)  # noqa: B010

    def _sample_queue(self, sock: Any, previous: int) -> int:
        """Backlogged: over the limit and not draining since the last sample.

        A burst (a keyframe arriving during a short stall) drains as it is read; only a
        queue that stays over the limit or grows means the loop cannot keep up.
        """
        queued = socket_queued_bytes(sock)
        if queued is None:
            return previous
        if queued > self.largest_queue_seen:
            self.largest_queue_seen = queued
        self.backlogged = queued > MAX_SOCKET_QUEUE_BYTES and queued >= previous
        return queued

    def _on_datagram(self, data: bytes, component: int) -> None:
        port = self.routes.get(fast_path_ssrc(data))
        if port is not None:
            consumer = port.consumer
            srtp = self._rx_srtp
            dtls = self._dtls
            if srtp is None or srtp.session is not dtls._rx_srtp:
                srtp = self._rx_srtp = _srtp_calls(srtp, dtls._rx_srtp)
            if consumer is not None and consumer.takes_bytes and srtp is not None:
                plain = srtp.unprotect(data)
                if plain is None:
                    # aiortc drops these too (replayed or forged).
                    self.unprotect_failures += 1
                    return
                dtls._RTCDtlsTransport__rx_bytes += len(data)
                dtls._RTCDtlsTransport__rx_packets += 1
                self.datagrams_on_fast_path += 1
                port.receive_plain(plain, self.backlogged)
                return
        self._queue_datagram(data, component)
