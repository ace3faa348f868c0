"""`check_aiortc_internals()`: every private name the adapter uses, checked live."""

from __future__ import annotations

import inspect
from typing import Any

import aiortc
from aiortc import (
    RTCPeerConnection,
    RTCRtpSender,
    rtcdtlstransport,
    rtcrtpreceiver,
)
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp import Policy, Session

from media.aiortc_adapter._internals import TESTED_AIORTC_VERSIONS
from media.aiortc_adapter.srtp import SrtpCalls

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
    # reception.py restates these two methods on integers.
    (
        rtcrtpreceiver.StreamStatistics.add,
        "self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)",
        "jitter",
    ),
    (rtcrtpreceiver.NackGenerator.add, "self.missing.discard(packet.sequence_number)", "NACK"),
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
                    "_RTCRtpSender__transport",
                    "_RTCRtpSender__rtt",
                ),
            ),
            (
                rtcrtpreceiver.StreamStatistics(90000),
                (
                    "base_seq",
                    "max_seq",
                    "cycles",
                    "packets_received",
                    "_clockrate",
                    "_jitter_q4",
                    "_last_arrival",
                    "_last_timestamp",
                ),
            ),
            (rtcrtpreceiver.NackGenerator(), ("max_seq", "missing", "truncate")),
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
