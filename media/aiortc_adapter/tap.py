"""`DatagramTap`: the fast path's entry on a leg's ICE connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import RTCDtlsTransport

from media.aiortc_adapter._internals import _private
from media.aiortc_adapter.ice_consent import keep_consent
from media.aiortc_adapter.ingress import IngressPort
from media.aiortc_adapter.srtp import SrtpCalls, _srtp_calls
from media.consent import ConsentTiming
from media.fastpath import fast_path_ssrc


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
                port.receive_plain(plain)
                return
        self._queue_datagram(data, component)
