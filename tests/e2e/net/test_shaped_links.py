"""Calls over links we shape ourselves: the client's Chromium in its own network namespace
behind a veth pair, the clinician's Chromium on this machine, the real app between them.
Each scenario asserts media both ways and a bound on what people feel, and prints what
the browsers' own `getStats` said (fps, freezes, loss, NACKs, PLIs, RTT, bitrates).
Figures for the README: scripts/bench_network.py runs the same scenarios.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from playwright.async_api import Browser

# First (see tests/e2e/net/calls.py): it brings tests.e2e.browser in the right order.
from tests.e2e.net import scenarios

# isort: split
from server.config import Config
from tests.e2e.net.coturn import requires_coturn
from tests.e2e.net.links import Link, participant_link, requires_namespaces
from tests.support import PracticeFixture

pytest_plugins = ["tests.e2e.browser"]
# These scenarios measure what people would feel (frame rates, freezes, recovery times) over
# shaped links with two real browsers: a machine starved of CPU by other work can miss a
# bound once, so each gets two more tries (pytest-rerunfailures); three misses in a row fail.
# (Seen in two clean runs of the whole suite, each time on the last try of the 5% loss +
# 50 ms scenario: the clinician's page, on the unshaped side, stayed at "Starting…" while
# the client joined. Not reproduced alone, nor after failed tries; not yet explained. When
# it happens, calls.py prints what the page's requests and the server's handlers await.)
pytestmark = [pytest.mark.browser, requires_namespaces, pytest.mark.flaky(reruns=2, reruns_delay=2)]


@pytest.fixture
def link() -> Iterator[Link]:
    with participant_link() as made:
        yield made


@pytest.fixture
async def direct_stage(
    link: Link, config: Config, browser: Browser, practice: PracticeFixture, db: asyncpg.Pool
) -> AsyncIterator[scenarios.Stage]:
    async with scenarios.stage(
        link=link, config=config, browser=browser, practice=practice, db=db
    ) as made:
        yield made


@pytest.fixture
async def busy_stage(
    link: Link, config: Config, browser: Browser, practice: PracticeFixture, db: asyncpg.Pool
) -> AsyncIterator[scenarios.Stage]:
    async with scenarios.stage(
        link=link,
        config=config,
        browser=browser,
        practice=practice,
        db=db,
        busy_client_camera=True,
    ) as made:
        yield made


@pytest.fixture
async def delayed_stage(
    link: Link, config: Config, browser: Browser, practice: PracticeFixture, db: asyncpg.Pool
) -> AsyncIterator[scenarios.Stage]:
    async with scenarios.stage(
        link=link, config=config, browser=browser, practice=practice, db=db, delay_ms=50
    ) as made:
        yield made


@requires_coturn
@pytest.mark.timeout(120)
async def test_five_percent_loss_and_50_ms_delay_keep_video_smooth(
    delayed_stage: scenarios.Stage,
) -> None:
    figures = await scenarios.steady_link(delayed_stage, loss_percent=5, seconds=10)
    print(figures.report())
    for side in (figures.client_receives, figures.clinician_receives):
        # The path really is the delayed relay, and the loss really happens.
        assert side["fps"] >= 20, figures.report()
        assert side["longest_freeze_s"] <= 1.0, figures.report()
        assert side["longest_audio_gap_s"] <= 0.5, figures.report()
    assert figures.client_receives["path"] == "relay"
    assert figures.client_receives["rtt_ms"] >= 100  # 50 ms each way through the relay
    lost = (
        figures.client_receives["video_packets_lost"]
        + figures.clinician_receives["video_packets_lost"]
    )
    assert lost > 0, "no loss seen: the link was not shaped"
    # The client's browser asked the server to repair what its downlink lost (NACK), and
    # the picture stayed smooth: the server's legs answered with retransmissions.
    assert figures.client_receives["nacks_sent"] > 0, figures.report()


@pytest.mark.timeout(180)
async def test_a_500_kbit_uplink_cap_is_adapted_to_and_recovered_from(
    busy_stage: scenarios.Stage,
) -> None:
    figures = await scenarios.capped_uplink(busy_stage, cap_kbit=500, seconds=30, ramp_within_s=40)
    print(figures.report())
    timings = figures.timings_s
    assert timings["ramp_to_above_cap_s"] is not None, "the client never sent above the cap"
    # The sender learns the link's capacity through the server (RTCP from our leg).
    assert timings["adaptation_s"] is not None and timings["adaptation_s"] <= 10, timings
    capped = figures.clinician_receives["capped"]
    assert capped["fps"] >= 5 and capped["longest_freeze_s"] <= 2.0, figures.report()
    assert timings["recovery_after_lift_s"] is not None, "the send rate never came back"
    assert figures.clinician_receives["after"]["fps"] >= 15, figures.report()


@pytest.mark.timeout(120)
async def test_a_two_second_outage_does_not_end_the_call_and_media_returns(
    direct_stage: scenarios.Stage,
) -> None:
    # R-C8: losing the network is not an end; media comes back without a reload.
    figures = await scenarios.outage(direct_stage, seconds=2.0)
    print(figures.report())
    timings = figures.timings_s
    assert timings["same_page"] == 1.0
    for name in ("client_freeze_in_outage_s", "clinician_freeze_in_outage_s"):
        frozen = timings[name]
        assert frozen is not None and frozen >= 1.0, f"the outage was not felt: {timings}"
    for name in ("client_media_back_s", "clinician_media_back_s"):
        back = timings[name]
        assert back is not None and back <= 3.0, figures.report()
    # Flowing again both ways (the senders' estimates are still climbing back after the
    # losses of the outage, so not yet at full frame rate).
    assert figures.client_receives["fps"] >= 10 and figures.clinician_receives["fps"] >= 10


@pytest.mark.timeout(120)
async def test_refresh_during_ten_percent_loss_brings_media_back_within_3_s(
    direct_stage: scenarios.Stage,
) -> None:
    # R-C1: Refresh re-establishes the media connection without leaving the call.
    figures = await scenarios.refresh_on_lossy_link(direct_stage, loss_percent=10)
    print(figures.report())
    timings = figures.timings_s
    assert timings["client_media_back_s"] is not None, figures.report()
    assert timings["client_media_back_s"] <= 3.0, figures.report()
    assert timings["clinician_longest_freeze_s"] is not None
    assert timings["clinician_longest_freeze_s"] <= 3.0, figures.report()
    assert figures.client_receives["fps"] > 0 and figures.clinician_receives["fps"] > 0
