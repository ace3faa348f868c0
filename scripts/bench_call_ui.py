"""Benchmark: how quickly two real browsers get from the call pages to each other's video.

Each round books a video appointment, then drives two headless Chromium contexts (a
clinician and a client, fake camera and microphone) through the real app on loopback:
Switch to Video -> waiting room; client link -> device check -> waiting room; Admit ->
first remote video frame on both sides; End Call -> both ended screens.

Baseline, in the same run and the same browser: two RTCPeerConnections in one page,
connected directly (no server, no pages), from offer to the first remote frame. The ratio
says what our pages, WebSocket signalling and waiting room add to WebRTC's own set-up.

Embedded PostgreSQL and Redis in a temporary folder. Progress on stderr; the last stdout
line is one JSON object. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402
from playwright.async_api import Browser, Page, async_playwright  # noqa: E402

from server import practices  # noqa: E402
from server.app import create_app  # noqa: E402
from server.config import Config  # noqa: E402
from server.db import apply_migrations  # noqa: E402
from server.diary.appointments import NewAppointments, insert_appointments  # noqa: E402
from server.diary.links import LinkSigner, insert_links  # noqa: E402
from server.diary.recurrence import Occurrence  # noqa: E402
from server.embedded import EmbeddedServices  # noqa: E402
from server.wallet.ledger import adjust_balance  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "bench-password-1"
SECRET = "bench-secret-key-" + "z" * 32
FIRST_FRAME = (
    "document.getElementById('remote-video').getVideoPlaybackQuality().totalVideoFrames > 0"
)

BASELINE_PAGE = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; document.body.append(video);
  const began = performance.now();
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = e => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = e => e.candidate && a.addIceCandidate(e.candidate);
  b.ontrack = e => { video.srcObject = e.streams[0]; };
  for (const track of stream.getTracks()) a.addTrack(track, stream);
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  while (video.getVideoPlaybackQuality().totalVideoFrames === 0) {
    await new Promise(r => setTimeout(r, 5));
  }
  const ms = performance.now() - began;
  a.close(); b.close(); stream.getTracks().forEach(t => t.stop()); video.remove();
  return ms;
}
"""


def log(message: str) -> None:
    print(f"[bench_call_ui {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Seeded:
    def __init__(self, pool: asyncpg.Pool, config: Config) -> None:
        self.pool = pool
        self.config = config
        self.practice: practices.Practice | None = None
        self.clinician: practices.User | None = None
        self.client: practices.Client | None = None
        self.kind: practices.AppointmentType | None = None

    async def setup(self) -> None:
        self.practice = await practices.create_practice(self.pool, "Bench", phone="01632 960000")
        self.clinician = await practices.create_user(
            self.pool, self.practice.id, "dr@bench.test", "Dr Bench", PASSWORD, ["clinician"]
        )
        self.client = await practices.create_client(self.pool, self.practice.id, "Casey")
        self.kind = await practices.create_appointment_type(
            self.pool, self.practice.id, "Video", 30, True
        )
        await adjust_balance(self.pool, self.practice.id, 10**8, "bench")

    async def book(self) -> tuple[str, str]:
        """(clinician page path, client link path) of a new appointment starting now."""
        assert self.practice and self.clinician and self.client and self.kind
        start = datetime.now(UTC).replace(microsecond=0)
        appointment_id, link_id = uuid.uuid4(), uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await insert_appointments(
                conn,
                NewAppointments(
                    self.practice.id, self.clinician.id, self.client.id, self.kind.id, None, None
                ),
                [appointment_id],
                [Occurrence(1, start, start + timedelta(minutes=30))],
            )
            await insert_links(conn, self.practice.id, [link_id], [appointment_id])
        token = LinkSigner(self.config.secret_key, self.config.base_url).token(link_id)
        return f"/appointments/{appointment_id}/video", f"/v/{token}"


@asynccontextmanager
async def running_app(database_url: str, redis_url: str) -> AsyncIterator[Config]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    config = Config(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"bench:{uuid.uuid4().hex[:6]}:",
        secret_key=SECRET,
        host="127.0.0.1",
        port=port,
        public_url=url,
        drain_seconds=0.0,
    )
    runner = web.AppRunner(create_app(config), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, shutdown_timeout=0.5).start()
        yield config
    finally:
        await runner.cleanup()
        sock.close()


async def one_call(browser: Browser, seeded: Seeded) -> dict[str, float]:
    config = seeded.config
    clinician_page, link = await seeded.book()
    options: dict[str, Any] = {
        "base_url": config.base_url,
        "permissions": ["camera", "microphone"],
        # The pages forbid eval (CSP); Playwright's wait_for_function needs it to poll.
        "bypass_csp": True,
    }
    clinician_context = await browser.new_context(**options)
    client_context = await browser.new_context(**options)
    try:
        login = await clinician_context.request.post(
            "/api/login", data={"email": "dr@bench.test", "password": PASSWORD}
        )
        assert login.ok, await login.text()
        clinician: Page = await clinician_context.new_page()
        client: Page = await client_context.new_page()

        began = time.perf_counter()
        await clinician.goto(clinician_page, wait_until="domcontentloaded")
        await clinician.wait_for_selector("#admit-button", state="visible")
        switch_ms = (time.perf_counter() - began) * 1000

        began = time.perf_counter()
        await client.goto(link, wait_until="domcontentloaded")
        await client.click("#join-button")  # waits until the device check enables it
        await clinician.wait_for_selector("#client-presence[data-present=true]")
        link_to_waiting_ms = (time.perf_counter() - began) * 1000

        began = time.perf_counter()
        await clinician.click("#admit-button")
        await clinician.wait_for_function(FIRST_FRAME, polling="raf")
        await client.wait_for_function(FIRST_FRAME, polling="raf")
        admit_ms = (time.perf_counter() - began) * 1000

        began = time.perf_counter()
        await clinician.click("#hangup-button")
        await clinician.click("#hangup-dialog [data-choice=end]")
        await clinician.wait_for_selector("body[data-screen=ended]")
        await client.wait_for_selector("body[data-screen=ended]")
        end_ms = (time.perf_counter() - began) * 1000
        return {
            "switch_ms": switch_ms,
            "link_to_waiting_ms": link_to_waiting_ms,
            "admit_to_first_frames_ms": admit_ms,
            "end_ms": end_ms,
        }
    finally:
        await clinician_context.close()
        await client_context.close()


async def baseline(browser: Browser, base_url: str) -> float:
    context = await browser.new_context(base_url=base_url, permissions=["camera", "microphone"])
    try:
        page = await context.new_page()
        await page.goto("/login", wait_until="domcontentloaded")  # a secure-context origin
        ms: float = await page.evaluate(BASELINE_PAGE)
        return ms
    finally:
        await context.close()


async def run(rounds: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-call-ui-") as folder,
        EmbeddedServices(Path(folder)) as services,
    ):
        await apply_migrations(services.database_url)
        async with running_app(services.database_url, services.redis_url) as config:
            pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=4)
            assert pool is not None
            try:
                seeded = Seeded(pool, config)
                await seeded.setup()
                return await measure(seeded, rounds)
            finally:
                await pool.close()


async def measure(seeded: Seeded, rounds: int) -> dict[str, Any]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            await one_call(browser, seeded)  # warm-up: first page loads compile the modules
            calls, direct = [], []
            for n in range(rounds):
                direct.append(await baseline(browser, seeded.config.base_url))
                calls.append(await one_call(browser, seeded))
                shown = ", ".join(f"{k} {v:.0f}" for k, v in calls[-1].items())
                log(f"round {n + 1}/{rounds}: {shown}; direct baseline {direct[-1]:.0f} ms")
        finally:
            await browser.close()
    figures: dict[str, Any] = {"rounds": rounds}
    for name in calls[0]:
        figures[f"{name}_p50"] = round(statistics.median(c[name] for c in calls))
    figures["baseline_direct_first_frame_ms_p50"] = round(statistics.median(direct))
    figures["ratio_admit_to_frames_vs_direct"] = round(
        figures["admit_to_first_frames_ms_p50"]
        / max(figures["baseline_direct_first_frame_ms_p50"], 1),
        2,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="calls to measure (default 3)")
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="give up after this many seconds"
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be between 1 and 50")

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(args.timeout):
            return await run(args.rounds)

    figures = asyncio.run(bounded())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
