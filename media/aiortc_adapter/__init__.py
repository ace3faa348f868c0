"""THE aiortc adapter: the only package that touches aiortc (and aioice) internals.

aiortc has no public API for forwarding media (aiortc#449, #55), and its own path for
encoded frames (receiver jitter buffer -> encoded frame -> sender re-packetizes) costs a
frame of latency for video and four packets (80 ms) for audio. So we forward at the RTP
level, on ports attached to a leg's transceivers, one part per module:

- `IngressPort` (`ingress`) replaces the receiver's `_handle_rtp_packet` (the slow
  path: aiortc's DTLS transport parsed an `RtpPacket`) and its `receive` (the same, minus
  the decoder thread that nothing would ever feed). It keeps what the receiver does that
  the remote browser relies on (RTCP receiver statistics for its RR reports, NACKs for
  lost video packets, RTX unwrapping) and hands each packet to its consumer
  (`forward.StreamForwarder`).
- `DatagramTap` (`tap`) takes over aioice's `Connection.data_received` for a leg: an SRTP packet
  of an SSRC whose consumer takes bytes is unprotected with the leg's own SRTP session and
  handled right there, in the datagram callback (the fast path, see `fastpath`); all else
  goes to aioice's queue and aiortc's own receive loop as before.
- `EgressPort` (`egress`) sends forwarded packets through the other leg's `RTCRtpSender`: SRTP with
  that leg's session, straight to the nominated socket; it keeps the bytes for NACKs
  (parsed into aiortc's RTX history only when asked), the counters aiortc's RTCP sender
  reports are built from, and intercepts keyframe requests (PLI/FIR) and bandwidth
  estimates (REMB) to pass upstream.
- `EgressTrack` keeps the sender's own loop idle.
- `SrtpCalls` (`srtp`) calls libsrtp on a pylibsrtp `Session`'s own context and buffer
  without the allocation and checks pylibsrtp makes on every packet (1.5 µs of 4 measured).
- `keep_consent` (`ice_consent`) replaces aioice's consent-freshness check on a leg's ICE
  connection by one that accepts late answers (see `media.consent`).

`check_aiortc_internals()` (`selfcheck`) checks every private name used here on a live object, and
`TESTED_AIORTC_VERSIONS` pins the versions this was tested with.
"""

from media.aiortc_adapter._internals import (
    MAX_INGRESS_BACKLOG_PACKETS,
    MAX_SOCKET_QUEUE_BYTES,
    TESTED_AIORTC_VERSIONS,
    AiortcInternalsChanged,
)
from media.aiortc_adapter.egress import EgressPort, EgressTrack
from media.aiortc_adapter.ice_consent import keep_consent
from media.aiortc_adapter.ingress import IngressPort, StreamConsumer, header_extension_ids
from media.aiortc_adapter.selfcheck import check_aiortc_internals
from media.aiortc_adapter.srtp import SrtpCalls
from media.aiortc_adapter.tap import DatagramCounter, DatagramTap, socket_queued_bytes

__all__ = [
    "MAX_INGRESS_BACKLOG_PACKETS",
    "MAX_SOCKET_QUEUE_BYTES",
    "TESTED_AIORTC_VERSIONS",
    "AiortcInternalsChanged",
    "DatagramCounter",
    "DatagramTap",
    "EgressPort",
    "EgressTrack",
    "IngressPort",
    "SrtpCalls",
    "StreamConsumer",
    "check_aiortc_internals",
    "header_extension_ids",
    "keep_consent",
    "socket_queued_bytes",
]
