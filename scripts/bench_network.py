"""Benchmark: what people feel on real-world links, measured by the browsers themselves.

Runs the shaped-link scenarios of tests/e2e/net (the same code the tests assert on): a
whole call through the real app, the clinician's Chromium on this machine, the client's
Chromium in its own network namespace behind a veth pair we shape (nftables loss and
outages, a tbf rate cap, a userspace delay relay in front of Debian's coturn). Each
scenario prints both browsers' getStats figures: fps, longest freeze, NACKs, PLIs, loss.

Baseline, in the same run: the same call over the same kind of link, unshaped. The
ratios say how much of the clean link's frame rate each scenario keeps.

Needs root (namespaces) and coturn, nftables, iproute2, chromium. Embedded PostgreSQL
and Redis in a temporary folder; test addresses on the veth pairs only. Progress on
stderr; the last stdout line is one JSON object.

    sudo python scripts/bench_network.py [--only clean,loss,cap,outage,refresh]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from server.config import Config  # noqa: E402
from server.db import apply_migrations  # noqa: E402
from server.embedded import EmbeddedServices  # noqa: E402
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.net import scenarios  # noqa: E402
from tests.e2e.net.links import namespaces_unavailable, participant_link  # noqa: E402
from tests.support import make_practice  # noqa: E402

SECRET = "bench-secret-key-" + "n" * 32
ALL = ("clean", "loss", "cap", "outage", "refresh")


def log(message: str) -> None:
    print(f"[bench_network {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run_scenario(
    name: str, config: Config, pool: asyncpg.Pool, browser: Any, args: argparse.Namespace
) -> scenarios.Figures:
    practice = await make_practice(pool, f"Bench {name}")
    with participant_link() as link:
        async with scenarios.stage(
            link=link,
            config=config,
            browser=browser,
            practice=practice,
            db=pool,
            delay_ms=50 if name == "loss" else 0,
            busy_client_camera=name == "cap",
        ) as stage:
            if name == "clean":
                return await scenarios.steady_link(stage, loss_percent=0, seconds=args.window)
            if name == "loss":
                return await scenarios.steady_link(stage, loss_percent=5, seconds=args.window)
            if name == "cap":
                return await scenarios.capped_uplink(
                    stage, cap_kbit=500, seconds=args.cap_seconds, ramp_within_s=40
                )
            if name == "outage":
                return await scenarios.outage(stage, seconds=2.0)
            return await scenarios.refresh_on_lossy_link(stage, loss_percent=10)


def fps(side: dict[str, Any]) -> float:
    return float(side.get("fps", 0.0))


def figures_json(results: dict[str, scenarios.Figures]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    clean = results.get("clean")
    clean_fps = min(fps(clean.client_receives), fps(clean.clinician_receives)) if clean else None
    if clean is not None:
        out["clean_fps_min_both_ways"] = clean_fps
    loss = results.get("loss")
    if loss is not None:
        worst = min(fps(loss.client_receives), fps(loss.clinician_receives))
        out["loss5_delay50_fps_min_both_ways"] = worst
        out["loss5_delay50_longest_freeze_s"] = max(
            loss.client_receives["longest_freeze_s"], loss.clinician_receives["longest_freeze_s"]
        )
        out["loss5_delay50_rtt_ms"] = loss.client_receives["rtt_ms"]
        out["loss5_delay50_nacks_sent"] = (
            loss.client_receives["nacks_sent"] + loss.clinician_receives["nacks_sent"]
        )
        if clean_fps:
            out["loss5_delay50_fps_ratio_vs_clean"] = round(worst / clean_fps, 2)
    cap = results.get("cap")
    if cap is not None:
        out["cap500_adaptation_s"] = cap.timings_s["adaptation_s"]
        out["cap500_recovery_after_lift_s"] = cap.timings_s["recovery_after_lift_s"]
        out["cap500_ramp_to_above_cap_s"] = cap.timings_s["ramp_to_above_cap_s"]
        out["cap500_capped_send_kbps"] = cap.client_receives["capped"]["send_kbps"]
        out["cap500_capped_fps_at_clinician"] = cap.clinician_receives["capped"]["fps"]
        out["cap500_capped_longest_freeze_s"] = cap.clinician_receives["capped"]["longest_freeze_s"]
    outage = results.get("outage")
    if outage is not None:
        out["outage2s_client_media_back_s"] = outage.timings_s["client_media_back_s"]
        out["outage2s_clinician_media_back_s"] = outage.timings_s["clinician_media_back_s"]
    refresh = results.get("refresh")
    if refresh is not None:
        out["refresh_loss10_client_media_back_s"] = refresh.timings_s["client_media_back_s"]
        out["refresh_loss10_clinician_longest_freeze_s"] = refresh.timings_s[
            "clinician_longest_freeze_s"
        ]
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, scenarios.Figures] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-network-") as folder,
        EmbeddedServices(Path(folder)) as services,
    ):
        await apply_migrations(services.database_url)
        config = Config(
            database_url=services.database_url,
            redis_url=services.redis_url,
            redis_prefix=f"bench:{uuid.uuid4().hex[:6]}:",
            secret_key=SECRET,
            drain_seconds=0.0,
        )
        pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=5)
        assert pool is not None
        try:
            async with async_playwright() as playwright:
                # Only its browser_type is used: each scenario starts its own Chromiums.
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                try:
                    for name in args.only:
                        log(f"scenario {name}…")
                        results[name] = figures = await run_scenario(
                            name, config, pool, browser, args
                        )
                        log(figures.report())
                finally:
                    await browser.close()
        finally:
            await pool.close()
    return figures_json(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        type=lambda raw: [x.strip() for x in raw.split(",") if x.strip()],
        default=list(ALL),
        help=f"comma-separated scenarios ({','.join(ALL)}; default all)",
    )
    parser.add_argument("--window", type=float, default=10.0, help="steady window, seconds")
    parser.add_argument("--cap-seconds", type=float, default=30.0, help="uplink cap, seconds")
    args = parser.parse_args()
    unknown = [x for x in args.only if x not in ALL]
    if unknown:
        parser.error(f"unknown scenarios: {unknown}")
    # Stopped with SIGTERM: unwind like Ctrl-C, so namespaces and processes are removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    reason = namespaces_unavailable()
    if reason:
        print(f"bench_network: {reason}", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
