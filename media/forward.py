"""Forward one kind of media from one participant's leg to the other's, without decoding.

`StreamForwarder` (one per direction and kind) sits between an `IngressPort` and an
`EgressPort` (see `aiortc_adapter`). It rewrites sequence numbers and timestamps
(`sequence.StreamRewriter`) so the egress stream stays continuous when the ingress leg is
replaced (Refresh) or packets were dropped, holds video back until a keyframe whenever it
had to drop (`keyframes`), and requests one upstream.

Each packet takes one of two paths, chosen per stream, with the same decisions: the fast
path (`forward_bytes`, plain bytes from the datagram callback, header patched with
`fastpath.rewrite_fixed_header`) while both legs negotiated the same header extension ids
and mid, so the extensions can be copied byte for byte; otherwise the slow path
(`forward_packet`, an `RtpPacket` from aiortc's receive loop, re-serialized for the egress
leg). There is no queue in either: a packet is forwarded in the same call that delivered
it, or dropped. Every drop goes through `_drop` (keyframe hold and request for video).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.aiortc_adapter import EgressPort, IngressPort, header_extension_ids
from media.fastpath import payload_offset
from media.keyframes import is_keyframe_start
from media.kinds import MediaKind
from media.sequence import StreamRewriter

# Shed packets when the egress socket's asyncio write buffer holds this much: asyncio
# buffers without bound when the kernel refuses a datagram, and aioice ignores
# pause_writing.
MAX_EGRESS_BACKLOG_BYTES = 256 * 1024
# Do not pass keyframe requests upstream more often than this: every request costs the
# sender a large keyframe, and browsers repeat requests while waiting.
MIN_KEYFRAME_REQUEST_INTERVAL_S = 0.25


@dataclass
class ForwardingCounters:
    forwarded: int = 0
    forwarded_on_fast_path: int = 0
    dropped: int = 0
    # Late or duplicate packets with no slot left in the egress stream (never re-numbered).
    refused: int = 0
    keyframe_requests_upstream: int = 0
    keyframe_requests_from_receiver: int = 0
    bandwidth_estimates_passed: int = 0


class StreamForwarder:
    """Forwards one kind of media from one participant's leg to the other's."""

    def __init__(self, kind: MediaKind, *, fast_path: bool = True) -> None:
        self.kind = kind
        self.counters = ForwardingCounters()
        self._fast_path_allowed = fast_path
        self._ingress: IngressPort | None = None
        self._egress: EgressPort | None = None
        self._rewriter: StreamRewriter | None = None
        self._is_video = kind == "video"
        # Video starts held back: the receiver can decode nothing before a keyframe.
        self._waiting_for_keyframe = self._is_video
        self._last_keyframe_request_at = -1e9
        # None until checked on a packet with both legs connected (see `takes_bytes`).
        self._bytes_compatible: bool | None = None
        # May the ingress hand this stream's packets over as bytes (the fast path)? Read
        # by the tap on every datagram: kept equal to `bool(self._bytes_compatible)`.
        self.takes_bytes = False
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_for_keyframe

    def connect_ingress(self, port: IngressPort | None) -> None:
        if self._ingress is not None and self._ingress.consumer is self:
            self._ingress.consumer = None
        self._ingress = port
        if port is not None:
            port.consumer = self
        self._set_bytes_compatible(None)
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
        self._set_bytes_compatible(None)
        self._hold_until_keyframe()

    def _set_bytes_compatible(self, compatible: bool | None) -> None:
        self._bytes_compatible = compatible
        self.takes_bytes = bool(compatible)

    def _hold_until_keyframe(self) -> None:
        if self._is_video:
            self._waiting_for_keyframe = True
        if self._rewriter is not None:
            self._rewriter.mark_gap()

    # --- the two paths --------------------------------------------------------------------

    def forward_packet(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        """The slow path: a parsed packet, re-serialized for the egress leg."""
        egress = self._admit_egress(packet.sequence_number)
        if egress is None:
            return
        if self._bytes_compatible is None:
            self._check_bytes_compatible(egress)
        if self._waiting_for_keyframe and not self._passes_keyframe_gate(codec, packet.payload):
            return
        mapped = self._map(
            egress, codec, packet.ssrc, packet.sequence_number, packet.timestamp, time.monotonic()
        )
        if mapped is None:
            return
        packet.sequence_number, packet.timestamp, packet.payload_type = mapped
        if egress.send_packet(packet):
            self.counters.forwarded += 1
        else:
            self._drop(packet.sequence_number)

    def forward_bytes(
        self, data: bytes, codec: RTCRtpCodecParameters, seq: int, ts: int, ssrc: int, now: float
    ) -> None:
        """The fast path: plain RTP bytes, header fields patched while protecting."""
        egress = self._admit_egress(seq)
        if egress is None:
            return
        offset = payload_offset(data)
        if self._waiting_for_keyframe and not self._passes_keyframe_gate(codec, data[offset:]):
            return
        mapped = self._map(egress, codec, ssrc, seq, ts, now)
        if mapped is None:
            return
        out_seq, out_ts, payload_type = mapped
        if egress.send_rewritten(data, payload_type, out_seq, out_ts, len(data) - offset):
            counters = self.counters
            counters.forwarded += 1
            counters.forwarded_on_fast_path += 1
        else:
            self._drop(seq)

    # --- shared decisions -----------------------------------------------------------------

    def _admit_egress(self, seq: int) -> EgressPort | None:
        egress = self._egress
        if egress is None:
            # Alone in the call: read and dropped (the fast path may take it meanwhile).
            if self._bytes_compatible is None:
                self._set_bytes_compatible(self._fast_path_allowed)
            self._drop(seq)
            return None
        if not egress.can_send(MAX_EGRESS_BACKLOG_BYTES):
            self._drop(seq)
            return None
        return egress

    def _check_bytes_compatible(self, egress: EgressPort) -> None:
        ingress = self._ingress
        self._set_bytes_compatible(
            self._fast_path_allowed
            and ingress is not None
            and ingress.mid == egress.mid
            and header_extension_ids(ingress.transport) == header_extension_ids(egress.transport)
        )

    def _passes_keyframe_gate(self, codec: RTCRtpCodecParameters, payload: bytes) -> bool:
        if is_keyframe_start(codec, payload):
            self._waiting_for_keyframe = False
            return True
        self.counters.dropped += 1
        self._request_keyframe()
        return False

    def _map(
        self,
        egress: EgressPort,
        codec: RTCRtpCodecParameters,
        ssrc: int,
        seq: int,
        ts: int,
        now: float,
    ) -> tuple[int, int, int] | None:
        payload_type = egress.payload_type_for(codec)
        if payload_type is None:
            self._drop(seq)
            return None
        rewriter = self._rewriter
        if rewriter is None:
            rewriter = self._rewriter = StreamRewriter(codec.clockRate)
        mapped = rewriter.rewrite(ssrc, seq, ts, now)
        if mapped is None:
            self.counters.refused += 1
            return None
        return mapped[0], mapped[1], payload_type

    def shed(self, seq: int) -> None:
        """Dropped before reaching us (ingress backlog): the same recovery as our drops."""
        self._drop(seq)

    def _drop(self, seq: int) -> None:
        self.counters.dropped += 1
        if self._is_video:
            # The gate asks upstream for a keyframe on the next packet that may be sent.
            self._hold_until_keyframe()
        elif self._rewriter is not None:
            # Audio carries on at once: later packets close up over the dropped one.
            self._rewriter.drop(seq)

    # --- feedback -------------------------------------------------------------------------

    def on_keyframe_request(self) -> None:
        """The receiving browser lost picture (or just joined): ask the sender for a keyframe."""
        self.counters.keyframe_requests_from_receiver += 1
        self._request_keyframe()

    async def request_keyframe_now(self) -> None:
        """Ask the sending browser for a keyframe, ignoring the rate limit (leg replaced)."""
        ingress = self._ingress
        if not self._is_video or ingress is None:
            return
        if await ingress.request_keyframe():
            self._last_keyframe_request_at = time.monotonic()
            self.counters.keyframe_requests_upstream += 1

    def _request_keyframe(self) -> None:
        ingress = self._ingress
        if not self._is_video or ingress is None:
            return
        now = time.monotonic()
        if now - self._last_keyframe_request_at < MIN_KEYFRAME_REQUEST_INTERVAL_S:
            return
        self._last_keyframe_request_at = now
        self.counters.keyframe_requests_upstream += 1
        # Called from the datagram callback too: the PLI goes out from a task.
        self._in_background(ingress.request_keyframe())

    async def on_bandwidth_estimate(self, bitrate_bps: int) -> None:
        ingress = self._ingress
        if ingress is not None:
            await ingress.send_bandwidth_estimate(bitrate_bps)
            self.counters.bandwidth_estimates_passed += 1

    def _in_background(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
