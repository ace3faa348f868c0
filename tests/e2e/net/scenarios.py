"""The four shaped-link scenarios, each a whole call through the real app with the
client's Chromium behind its own link. The tests (test_shaped_links.py) assert bounds on
what people feel; scripts/bench_network.py runs the same scenarios and prints the figures.

Each scenario returns its figures (`Figures`): what both browsers' `getStats` said over
the measured window, and the scenario's own timings (adaptation, recovery).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from playwright.async_api import Browser, expect

# First (see tests/e2e/net/calls.py): it brings tests.e2e.browser in the right order.
from tests.e2e.net.calls import LinkCall, call_over_link

# isort: split
from server.config import Config, MediaConfig
from tests.e2e.browser import LiveServer, serve
from tests.e2e.net import delay_relay
from tests.e2e.net.chromium import chromium
from tests.e2e.net.coturn import coturn
from tests.e2e.net.links import Link
from tests.e2e.net.processes import drain, read_line_starting, running
from tests.e2e.net.webrtc_stats import StatsRecorder
from tests.support import PracticeFixture

TURN_SECRET = "turn-secret-shared-with-coturn"


@dataclass
class Figures:
    scenario: str
    client_receives: dict[str, Any] = field(default_factory=dict)
    clinician_receives: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float | None] = field(default_factory=dict)

    def report(self) -> str:
        return (
            f"[{self.scenario}] timings {self.timings_s}\n"
            f"  client receives:    {self.client_receives}\n"
            f"  clinician receives: {self.clinician_receives}"
        )


@dataclass
class Stage:
    """What a scenario runs in: the link, the app on it, both browsers."""

    link: Link
    server: LiveServer
    clinician_browser: Browser
    client_browser: Browser
    practice: PracticeFixture
    db: asyncpg.Pool
    force_relay: bool = False

    @asynccontextmanager
    async def call(self) -> AsyncIterator[LinkCall]:
        async with call_over_link(
            server=self.server,
            link=self.link,
            clinician_browser=self.clinician_browser,
            client_browser=self.client_browser,
            practice=self.practice,
            db=self.db,
            force_relay=self.force_relay,
        ) as call:
            yield call


@asynccontextmanager
async def stage(
    *,
    link: Link,
    config: Config,
    browser: Browser,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    delay_ms: float = 0.0,
    busy_client_camera: bool = False,
) -> AsyncIterator[Stage]:
    """The app on the link's address and a Chromium each; with `delay_ms`, the client's
    media goes through coturn behind the delay relay (relay-only browser), so every
    packet of theirs waits `delay_ms` each way; with `busy_client_camera`, the client's
    camera needs more than a thin link carries."""
    async with AsyncExitStack() as stack:
        media = config.media
        if delay_ms:
            turn = await stack.enter_async_context(coturn(link.host_ip, TURN_SECRET))
            relay = await stack.enter_async_context(
                running(
                    [
                        sys.executable,
                        delay_relay.__file__,
                        "--listen",
                        link.host_ip,
                        "--upstream",
                        f"{turn.address}:{turn.port}",
                        "--delay-ms",
                        str(delay_ms),
                    ]
                )
            )
            port = int((await read_line_starting(relay, "ready ")).split()[1])
            stack.push_async_callback(_cancel, drain(relay))
            media = MediaConfig(
                turn_urls=(f"turn:{link.host_ip}:{port}?transport=udp",), turn_secret=TURN_SECRET
            )
        server = await stack.enter_async_context(
            serve(dataclasses.replace(config, media=media), also_on=(link.host_ip,))
        )
        clinician_browser = await stack.enter_async_context(chromium(browser.browser_type))
        client_browser = await stack.enter_async_context(
            chromium(
                browser.browser_type,
                link=link,
                secure_origins=(server.also_at[link.host_ip],),
                busy_camera=busy_client_camera,
            )
        )
        yield Stage(
            link,
            server,
            clinician_browser,
            client_browser,
            practice,
            db,
            force_relay=bool(delay_ms),
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _window(call: LinkCall, start: float, end: float) -> tuple[dict[str, Any], dict[str, Any]]:
    return call.client_stats.summary(start, end), call.clinician_stats.summary(start, end)


async def _poll_until(
    check: Callable[[], bool], within_s: float, interval_s: float = 0.2
) -> float | None:
    """Seconds until `check()` holds, or None if it did not within `within_s`."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if check():
            return time.monotonic() - start
        await asyncio.sleep(interval_s)
    return None


# --- 1. loss and delay (or a clean link) ----------------------------------------------


async def steady_link(stage: Stage, *, loss_percent: int, seconds: float) -> Figures:
    """Random loss both ways (none: a clean link, the baseline) on the stage's link, which
    may also delay every packet (the stage's delay relay). Measures a steady window after
    a short settling time."""
    async with stage.call() as call:
        stage.link.shape(loss_percent=loss_percent)
        await asyncio.sleep(2.0)  # NACK/RTX and the bandwidth estimate settle
        start = time.monotonic()
        await asyncio.sleep(seconds)
        end = time.monotonic()
        client, clinician = _window(call, start, end)
        stage.link.restore()
        return Figures(f"{loss_percent}% loss", client, clinician)


# --- 2. a thin uplink -------------------------------------------------------------------


def _send_kbps_now(stats: StatsRecorder, window_s: float = 2.0) -> float:
    now = time.monotonic()
    return stats.send_kbps(now - window_s, now)


async def capped_uplink(
    stage: Stage,
    *,
    cap_kbit: int,
    seconds: float,
    ramp_within_s: float = 20.0,
    recover_within_s: float = 60.0,
) -> Figures:
    """Cap the client's uplink for `seconds`, then lift it. Before the cap the client's
    browser must be sending more than the cap (else there is nothing to adapt)."""
    async with stage.call() as call:
        sender = call.client_stats  # the client's own outbound-rtp figures
        ramp = await _poll_until(
            lambda: _send_kbps_now(sender) > cap_kbit * 1.2, within_s=ramp_within_s
        )
        before = _send_kbps_now(sender)
        capped_at = time.monotonic()
        stage.link.cap_uplink(cap_kbit)
        adapted = await _poll_until(lambda: _send_kbps_now(sender) < cap_kbit, within_s=seconds)
        await asyncio.sleep(max(0.0, capped_at + seconds - time.monotonic()))
        cap_end = time.monotonic()
        client_capped, clinician_capped = _window(call, capped_at + seconds / 2, cap_end)
        stage.link.lift_uplink_cap()
        # Recovered: sending above what the cap allowed again (on a REMB-only path the
        # estimate climbs back at Chromium's multiplicative rate, ~8% a second).
        recovered = await _poll_until(
            lambda: _send_kbps_now(sender) > cap_kbit, within_s=recover_within_s
        )
        after = time.monotonic()
        client_after, clinician_after = _window(call, after - 4.0, after)
        started = sender.samples[0].at
        print(
            f"client every 2 s, cap from {capped_at - started:.0f} s to "
            f"{cap_end - started:.0f} s: send/target/available kbps "
            f"{_sender_trajectory(sender, started, after)}",
            file=sys.stderr,
        )
        return Figures(
            "uplink cap",
            {"capped": client_capped, "after": client_after},
            {"capped": clinician_capped, "after": clinician_after},
            {
                "ramp_to_above_cap_s": ramp,
                "send_kbps_before_cap": round(before),
                "adaptation_s": adapted,
                "recovery_after_lift_s": recovered,
            },
        )


def _sender_trajectory(sender: StatsRecorder, start: float, end: float) -> list[str]:
    """Send rate, the encoder's target and the path's estimate, every 2 s."""
    points = []
    for at in _every(start + 2.0, end, 2.0):
        window = sender.between(at - 2.0, at)
        if not window:
            continue
        target = window[-1].get("video_out", "target_bps") / 1000
        available = window[-1].get("pair", "available_out_kbps")
        points.append(f"{sender.send_kbps(at - 2.0, at):.0f}/{target:.0f}/{available:.0f}")
    return points


def _every(start: float, end: float, step: float) -> list[float]:
    times = []
    while start <= end:
        times.append(start)
        start += step
    return times


# --- 3. an outage -----------------------------------------------------------------------


async def outage(stage: Stage, *, seconds: float) -> Figures:
    """Every packet of the client's link dropped for `seconds` (the call must survive:
    R-C8), then media must come back by itself."""
    async with stage.call() as call:
        marker = "window.__vcSamePage = true"
        await call.client.evaluate(marker)
        cut_at = time.monotonic()
        stage.link.shape(outage=True)
        await asyncio.sleep(seconds)
        stage.link.restore()
        back_at = time.monotonic()
        client_back = await _poll_until(
            lambda: call.client_stats.first_frame_after(back_at) is not None, within_s=15.0
        )
        clinician_back = await _poll_until(
            lambda: call.clinician_stats.first_frame_after(back_at) is not None, within_s=15.0
        )
        await asyncio.sleep(3.0)
        end = time.monotonic()
        client, clinician = _window(call, end - 3.0, end)
        # No page reload, and both are still in the call.
        same_page = await call.client.evaluate("window.__vcSamePage === true")
        for page in (call.clinician, call.client):
            await expect(page.locator("body")).to_have_attribute("data-screen", "call")
        return Figures(
            "outage",
            client,
            clinician,
            {
                "client_media_back_s": call.client_stats.first_frame_after(back_at),
                "clinician_media_back_s": call.clinician_stats.first_frame_after(back_at),
                "same_page": 1.0 if same_page else 0.0,
                # The outage was real: the pictures stood still during it (the window runs a
                # little past it, so a sampler slowed by a busy machine still sees the gap).
                "client_freeze_in_outage_s": call.client_stats.longest_freeze_s(
                    cut_at, back_at + 1.0
                ),
                "clinician_freeze_in_outage_s": call.clinician_stats.longest_freeze_s(
                    cut_at, back_at + 1.0
                ),
                "polled_client_s": client_back,
                "polled_clinician_s": clinician_back,
            },
        )


# --- 4. Refresh on a lossy link ---------------------------------------------------------


async def refresh_on_lossy_link(stage: Stage, *, loss_percent: int) -> Figures:
    """The client presses Hang up -> Refresh (R-C1) while the link loses packets."""
    async with stage.call() as call:
        stage.link.shape(loss_percent=loss_percent)
        await asyncio.sleep(2.0)
        connections_before = await call.client.evaluate("window.__vcPeerConnections.length")
        await call.client.get_by_role("button", name="Hang up").click()
        dialog = call.client.get_by_role("alertdialog", name="End the call?")
        await dialog.get_by_role("button", name="Refresh").click()
        pressed_at = time.monotonic()

        def new_connection_plays(stats: StatsRecorder) -> Callable[[], bool]:
            def check() -> bool:
                samples = [s for s in stats.samples if s.at >= pressed_at]
                return any(
                    s.stats["pc"] >= connections_before and s.get("video_in", "frames_decoded") > 0
                    for s in samples
                )

            return check

        client_back = await _poll_until(new_connection_plays(call.client_stats), within_s=15.0)
        await asyncio.sleep(3.0)
        end = time.monotonic()
        client, clinician = _window(call, end - 3.0, end)
        # The clinician's page keeps its connection: the client's video stops while the
        # client's new leg is set up, then comes from it once the server re-attaches it.
        clinician_gap = call.clinician_stats.longest_freeze_s(pressed_at - 0.5, end)
        stage.link.restore()
        await expect(call.client.locator("body")).to_have_attribute("data-screen", "call")
        return Figures(
            "refresh+loss",
            client,
            clinician,
            {"client_media_back_s": client_back, "clinician_longest_freeze_s": clinician_gap},
        )


Scenario = Callable[[Stage], Awaitable[Figures]]
