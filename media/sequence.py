"""Sequence numbers and timestamps of one forwarded stream (pure).

The egress leg's receiver must see one continuous stream even when the ingress leg is
rebuilt (Refresh: new SSRC, new random sequence numbers and timestamps) or the forwarder
dropped packets (it would otherwise wait for, and NACK, packets that will never come).

`SequenceRewriter` follows mediasoup's `RTC::SeqManager` (worker/src/RTC/SeqManager.cpp):
an output is `input + base`, minus the inputs dropped below it; `sync()` rebases so the
next input continues right after the highest output sent; `drop()` marks an input the
forwarder chose not to send, so later inputs close up over it. Unlike a plain offset it
never hands out an output number twice: an input at or below the rebase point (a late or
retransmitted packet from before a gap) has no slot left and is refused, and so is an
input already forwarded (a duplicate). Numbers are unwrapped to 64-bit internally (as
libwebrtc's `SeqNumUnwrapper`), so every comparison is a plain integer one.
"""

from __future__ import annotations

import bisect
import random

SEQ_MODULO = 1 << 16
TS_MODULO = 1 << 32
# Inputs further back than this behind the highest one seen are refused as stale: a
# receiver's jitter buffer has long given up on them, and duplicates are tracked this far.
REORDER_WINDOW = 1024
# After this many stale inputs in a row the source has jumped (not a late packet): rebase
# instead of refusing it forever.
MAX_STALE_IN_A_ROW = 32


class SequenceRewriter:
    """Maps 16-bit input sequence numbers onto strictly increasing output numbers."""

    def __init__(self, first_output: int) -> None:
        # Unwrapped: the 16-bit output is `ext & 0xFFFF`.
        self._max_output = first_output - 1
        self._max_input = 0
        self._base = 0
        # Inputs at or below this one came before the last rebase: no slot for them.
        self._floor = 0
        self._sync_pending = True
        self._dropped: list[int] = []  # sorted, unwrapped, above `_floor`
        self._forwarded: set[int] = set()  # unwrapped inputs within REORDER_WINDOW
        self._stale_in_a_row = 0

    @property
    def max_output_unwrapped(self) -> int:
        """The highest output number handed out, unwrapped (it only ever grows)."""
        return self._max_output

    def sync(self) -> None:
        """Rebase: the next input continues right after the highest output sent."""
        self._sync_pending = True

    def drop(self, seq: int) -> None:
        """The forwarder chose not to send `seq`: later inputs close up over its slot."""
        if self._sync_pending:
            return  # the rebase at the next input closes the gap anyway
        ext = self._unwrap(seq)
        if ext > self._max_input:
            self._max_input = ext
            bisect.insort(self._dropped, ext)

    def rewrite(self, seq: int) -> int | None:
        """The output number for input `seq`, or None when it has no slot (refused)."""
        if self._sync_pending:
            self._sync_pending = False
            self._stale_in_a_row = 0
            ext = self._max_input + SEQ_MODULO + ((seq - self._max_input) & 0xFFFF)
            self._floor = ext - 1
            self._base = self._max_output + 1 - ext
            self._max_input = ext
            self._dropped.clear()
            self._forwarded.clear()
            self._forwarded.add(ext)
            self._max_output += 1
            return self._max_output & 0xFFFF
        max_input = self._max_input
        delta = (seq - max_input) & 0xFFFF  # `_unwrap(seq)`, inline: once per packet
        ext = max_input + (delta - SEQ_MODULO if delta >= 0x8000 else delta)
        if ext <= max_input - REORDER_WINDOW:
            self._stale_in_a_row += 1
            if self._stale_in_a_row >= MAX_STALE_IN_A_ROW:
                self._sync_pending = True
                return self.rewrite(seq)
            return None
        self._stale_in_a_row = 0
        if ext <= self._floor:
            return None
        forwarded = self._forwarded
        if ext in forwarded:
            return None
        dropped = self._dropped
        below = 0
        if dropped:
            index = bisect.bisect_left(dropped, ext)
            if index < len(dropped) and dropped[index] == ext:
                return None
            below = index
        out = ext + self._base - below
        forwarded.add(ext)
        if ext > max_input:
            self._max_input = ext
            if len(forwarded) > 2 * REORDER_WINDOW:
                self._forget_old_inputs()
        if out > self._max_output:
            self._max_output = out
        return out & 0xFFFF

    def _unwrap(self, seq: int) -> int:
        """The unwrapped number nearest the highest input seen with these low 16 bits."""
        delta = (seq - self._max_input) & 0xFFFF
        if delta >= 0x8000:
            delta -= SEQ_MODULO
        return self._max_input + delta

    def _forget_old_inputs(self) -> None:
        horizon = self._max_input - REORDER_WINDOW
        self._forwarded = {ext for ext in self._forwarded if ext > horizon}
        # Dropped inputs below the horizon lie below every input still accepted: fold
        # them into the base instead of counting them on every packet.
        folded = bisect.bisect_right(self._dropped, horizon)
        if folded:
            self._base -= folded
            del self._dropped[:folded]


class StreamRewriter:
    """Sequence numbers (`SequenceRewriter`) and timestamps of one egress stream.

    A new ingress source (SSRC) rebases both: sequence numbers continue after the last
    one sent, timestamps keep moving at wall-clock pace from the last packet sent.
    """

    def __init__(self, clock_rate: int, *, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self._clock_rate = clock_rate
        self._source_ssrc: int | None = None
        self._ts_offset = 0
        # Start low like aiortc does: a wrap soon after start upsets some SRTP stacks.
        self._sequence = SequenceRewriter(rng.randrange(0, 32768))
        self._last_ts = rng.randrange(0, TS_MODULO)
        self._last_sent_at: float | None = None

    def mark_gap(self) -> None:
        """Packets were dropped: the next packet continues right after the last one sent."""
        self._sequence.sync()

    def drop(self, seq: int) -> None:
        """One input of the current source is not forwarded: close up over it."""
        self._sequence.drop(seq)

    def rewrite(self, ssrc: int, seq: int, ts: int, now: float) -> tuple[int, int] | None:
        """(output seq, output timestamp), or None when the packet must not be sent."""
        if ssrc != self._source_ssrc:
            # A new source: keep our timeline moving at wall-clock pace from the last packet.
            if self._last_sent_at is None:
                elapsed_ticks = 0
            else:
                elapsed_ticks = max(1, int((now - self._last_sent_at) * self._clock_rate))
            self._ts_offset = (self._last_ts + elapsed_ticks - ts) & 0xFFFFFFFF
            self._source_ssrc = ssrc
            self._sequence.sync()
        sequence = self._sequence
        previous_max = sequence.max_output_unwrapped
        out_seq = sequence.rewrite(seq)
        if out_seq is None:
            return None
        out_ts = (ts + self._ts_offset) & 0xFFFFFFFF
        if sequence.max_output_unwrapped > previous_max:  # the newest packet sent so far
            self._last_ts = out_ts
            self._last_sent_at = now
        return out_seq, out_ts
