"""Consent freshness (RFC 7675) as the server keeps it for each leg's ICE connection.

aioice's own check sends one STUN binding request every ~5 s, waits 0.5 s for its answer
with no retransmission, and closes the connection after six such checks in a row go
unanswered. On a busy machine a browser (or any peer whose loop lags) answers after more
than 0.5 s: its late answers are ignored, and a call whose peer is alive and sending is
closed ("Consent to send expired") after ~30 s; measured with 16 calls on a loaded 2-core
machine, where Janus (libnice) kept every call. RFC 7675 asks only that consent expire
when no answer at all came for 30 s: so each check here is a STUN transaction with
retransmissions, an answer however late refreshes consent, and the connection closes
after `expiry_seconds` without one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ConsentTiming:
    check_interval_seconds: float = 5.0  # RFC 7675 §5.1: every 5 s, randomised ±20 %
    expiry_seconds: float = 30.0  # RFC 7675 §5.1: consent expires after 30 s unanswered
    retransmissions: int = 3  # each check waits 0.5 + 1 + 2 + 4 s for its answer

    def next_check_in(self) -> float:
        return self.check_interval_seconds * (0.8 + 0.4 * random.random())


class ConsentClock:
    """When consent was last refreshed, and whether it has expired."""

    def __init__(self, timing: ConsentTiming, now: float) -> None:
        self.timing = timing
        self.last_answer_at = now
        self.checks_sent = 0
        self.answers = 0

    def answered(self, now: float) -> None:
        self.answers += 1
        self.last_answer_at = max(self.last_answer_at, now)

    def expired(self, now: float) -> bool:
        return now - self.last_answer_at >= self.timing.expiry_seconds
