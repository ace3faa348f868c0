"""aiortc's per-stream reception state, fed from header fields instead of an `RtpPacket`.

aiortc's receiver keeps, per incoming stream, a `StreamStatistics` (what its receiver
reports say: highest sequence number, cycles, jitter, loss) and, for video, a
`NackGenerator` (which sequence numbers are missing, for its NACKs). Both read only a
packet's sequence number and timestamp. The fast path has those as two integers; these
subclasses take them directly, with the same arithmetic as aiortc 1.16's `add` methods
(tests/unit/test_media_reception.py feeds both the same packets and compares), and
without a Python call per 16-bit comparison. The slow path keeps calling `add(packet)`,
inherited unchanged, on the same objects.
"""

from __future__ import annotations

import time

from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics


class FastStreamStatistics(StreamStatistics):
    """`StreamStatistics` with `add_fields(seq, ts)`: `add(packet)` on two integers."""

    def add_fields(self, seq: int, ts: int) -> None:
        max_seq = self.max_seq
        self.packets_received += 1
        if self.base_seq is None:
            self.base_seq = seq
        # aiortc's uint16_gt(seq, max_seq): newer within half the sequence space.
        if max_seq is not None and not 0 < ((seq - max_seq) & 0xFFFF) < 0x8000:
            return
        arrival = int(time.time() * self._clockrate)
        if max_seq is not None and seq < max_seq:
            self.cycles += 1 << 16
        self.max_seq = seq
        last_timestamp = self._last_timestamp
        last_arrival = self._last_arrival
        if ts != last_timestamp and self.packets_received > 1:
            assert last_timestamp is not None and last_arrival is not None
            diff = abs((arrival - last_arrival) - (ts - last_timestamp))
            self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
        self._last_arrival = arrival
        self._last_timestamp = ts


class FastNackGenerator(NackGenerator):
    """`NackGenerator` with `add_seq(seq)`: `add(packet)` on one integer."""

    def add_seq(self, seq: int) -> bool:
        """Mark `seq` received; True when it revealed newly missing packets."""
        max_seq = self.max_seq
        if max_seq is None:
            self.max_seq = seq
            return False
        missing = self.missing
        delta = (seq - max_seq) & 0xFFFF
        missed = False
        if 0 < delta < 0x8000:
            self.max_seq = seq
            if delta == 1 and not missing:
                return False  # the common packet: next in line, nothing outstanding
            for gap in range(1, delta):
                missing.add((max_seq + gap) & 0xFFFF)
                missed = True
        else:
            missing.discard(seq)
        if missing:
            self.truncate()
        return missed
