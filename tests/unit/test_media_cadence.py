"""`wants_ticks`: when batching the loop's polls pays for the cadence's own wake-ups."""

from __future__ import annotations

import pytest

from media.cadence import PollCadence, wants_ticks


def test_ticks_only_when_an_interval_would_gather_enough_datagrams() -> None:
    # 1 call: two participants' audio and video, ~330 datagrams/s: 2.6 per 8 ms tick.
    assert not wants_ticks(330, 1.0, 0.008, 4)
    # 2 calls: ~660/s, 5.3 per tick.
    assert wants_ticks(660, 1.0, 0.008, 4)
    assert wants_ticks(165, 0.25, 0.008, 4)
    # Nothing counted, no time elapsed, or the cadence off: never.
    assert not wants_ticks(0, 0.25, 0.008, 4)
    assert not wants_ticks(1000, 0.0, 0.008, 4)
    assert not wants_ticks(1000, 1.0, 0.0, 4)


@pytest.mark.parametrize("interval_s", [-0.001, 0.021, 1.0])
def test_an_interval_outside_0_to_20_ms_is_refused(interval_s: float) -> None:
    with pytest.raises(ValueError, match="0 \\(off\\) to 20 ms"):
        PollCadence(interval_s)


async def test_an_interval_of_0_never_runs() -> None:
    cadence = PollCadence(0.0)
    cadence.add(10_000)
    await cadence.run()  # returns at once
    assert not cadence.ticking and cadence.ticks == 0
