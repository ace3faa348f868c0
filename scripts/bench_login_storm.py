"""Benchmark: does a storm of logins disturb a live call on the same node?

One ``videoconsult serve`` process (embedded PostgreSQL and Redis), one live call through
it: the clinician's and the client's call sockets, admitted, each side an aiortc peer
sending pre-encoded VP8 640x480@30 and Opus through the server's media legs. While the
call runs, the same three probes are measured twice in the same run, for the same time:

- quiet: nothing else happens;
- storm: waves of ``--logins`` parallel password logins (distinct staff accounts, right
  passwords, so every one runs argon2) one after the other.

Probes: ``/healthz`` latency (one request every 50 ms), the call's signalling round trip
(client hang-up request -> clinician asked -> cancelled -> client told, the relay path of
``bench_signalling.py``; 8 rounds a second, within the socket's message budget), and the
video frames per second each side receives. Figures: p50/p99 of each, the storm/quiet
ratios, logins per second and their p50 latency, and the server's errors and 5xx answers
(from its log).

Progress goes to stderr; the last stdout line is one JSON object. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiortc import RTCSessionDescription

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))

from bench_calls_peers import Participant, encode_clip  # noqa: E402
from bench_signalling import (  # noqa: E402
    Counters,
    ProductCall,
    Server,
    pct,
    raise_open_files_limit,
    seed,
)

HEALTH_INTERVAL_SECONDS = 0.05
ROUND_INTERVAL_SECONDS = 0.125
STAFF_PASSWORD = "storm-password-1"


def log(message: str) -> None:
    print(f"[bench_login_storm {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def add_staff(database_url: str, count: int) -> list[str]:
    """``count`` receptionists of a practice of their own, one password hash for all."""
    from server import practices
    from server.auth.passwords import hash_password

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        practice = await practices.create_practice(pool, "Storm", phone=None)
        hashed = hash_password(STAFF_PASSWORD)
        emails = [f"storm-{i}-{uuid.uuid4().hex[:6]}@example.test" for i in range(count)]
        for email in emails:
            await practices.create_user(
                pool, practice.id, email, "Storm", STAFF_PASSWORD, ["receptionist"],
                password_hash=hashed,
            )  # fmt: skip
        return emails
    finally:
        await pool.close()


async def start_media(call: ProductCall, clip: Any) -> tuple[Participant, Participant]:
    """Each side offers over its call socket, as a browser page does; the server answers."""
    peers = (Participant("clinician", clip), Participant("client", clip))
    for participant, peer in zip((call.doc, call.client), peers, strict=True):
        pc = peer.connection(send=True, receive=True)
        await pc.setLocalDescription(await pc.createOffer())
        await participant.send({"type": "sdp_offer", "v": 1, "sdp": pc.localDescription.sdp})
        answer = await participant.expect("sdp_answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        peer.tap(pc)
    for _ in range(600):  # first frames on both sides within 30 s
        if all(peer.reception.video_frames for peer in peers):
            return peers
        await asyncio.sleep(0.05)
    raise TimeoutError("no video reached both peers within 30 s")


async def probe_health(
    session: aiohttp.ClientSession, base: str, stop: asyncio.Event
) -> list[float]:
    latencies: list[float] = []
    while not stop.is_set():
        began = time.perf_counter()
        async with session.get(f"{base}/healthz") as reply:
            await reply.read()
        latencies.append((time.perf_counter() - began) * 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEALTH_INTERVAL_SECONDS)
    return latencies


async def probe_signalling(call: ProductCall, stop: asyncio.Event) -> list[float]:
    """Rounds at most every ``ROUND_INTERVAL_SECONDS``: a client sends two messages per
    round, and the server allows a socket 20 a second (a browser sends a few)."""
    rounds: list[float] = []
    while not stop.is_set():
        began = time.perf_counter()
        rounds.append(await call.round())
        rest = ROUND_INTERVAL_SECONDS - (time.perf_counter() - began)
        if rest > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rest)
    return rounds


async def storm(base: str, emails: list[str], stop: asyncio.Event) -> dict[str, Any]:
    """Waves of parallel logins, each from its own loopback address (127.0.1.N), as many
    people would log in: from one address the throttle admits 20 attempts at a time."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(index: int, email: str) -> None:
        began = time.perf_counter()
        body = {"email": email, "password": STAFF_PASSWORD}
        address = f"127.0.{1 + index // 250}.{1 + index % 250}"
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(f"{base}/api/login", json=body) as reply,
        ):
            await reply.read()
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
        latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    waves = 0
    unfinished = 0
    while not stop.is_set():
        wave = [asyncio.create_task(one(i, email)) for i, email in enumerate(emails)]
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([*wave, stopped], return_when=asyncio.FIRST_COMPLETED)
        while not stop.is_set() and not all(task.done() for task in wave):
            await asyncio.wait([*wave, stopped], return_when=asyncio.FIRST_COMPLETED)
        # The phase is over: logins still waiting for their hash are given up (counted).
        for task in wave:
            if not task.done():
                unfinished += 1
                task.cancel()
        await asyncio.gather(*wave, return_exceptions=True)
        stopped.cancel()
        waves += 1
    elapsed = time.perf_counter() - began
    return {
        "login_waves": waves,
        "logins_done": len(latencies),
        "logins_unfinished_at_phase_end": unfinished,
        "logins_per_second": round(len(latencies) / elapsed, 1),
        "login_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "login_statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def storm_in_child(base: str, emails: list[str], seconds: float) -> dict[str, Any]:
    """The storm from a process of its own, so its client-side work does not slow this
    process's probes (they would report the load generator, not the server)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--storm-child", base, str(seconds),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate(json.dumps(emails).encode())
    if child.returncode != 0:
        raise RuntimeError(f"the login storm process failed ({child.returncode})")
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


async def storm_child(base: str, seconds: float) -> None:
    emails: list[str] = json.loads(sys.stdin.read())
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    print(json.dumps(await storm(base, emails, stop)), flush=True)


async def phase(
    label: str,
    session: aiohttp.ClientSession,
    base: str,
    call: ProductCall,
    peers: tuple[Participant, Participant],
    seconds: float,
    emails: list[str] | None,
) -> dict[str, Any]:
    log(f"{label}: {seconds:.0f} s" + (f", waves of {len(emails)} logins" if emails else ""))
    stop = asyncio.Event()
    frames_before = [peer.reception.video_frames for peer in peers]
    began = time.perf_counter()
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(probe_health(session, base, stop)),
        asyncio.create_task(probe_signalling(call, stop)),
    ]
    if emails:
        tasks.append(asyncio.create_task(storm_in_child(base, emails, seconds)))
    await asyncio.sleep(seconds)
    stop.set()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    health, rounds = results[0], results[1]
    fps = [
        (peer.reception.video_frames - before) / elapsed
        for peer, before in zip(peers, frames_before, strict=True)
    ]
    figures: dict[str, Any] = {
        "healthz_ms_p50": round(pct(health, 0.5), 2),
        "healthz_ms_p99": round(pct(health, 0.99), 2),
        "healthz_ms_max": round(max(health), 2),
        "signalling_round_ms_p50": round(pct(rounds, 0.5), 2),
        "signalling_round_ms_p99": round(pct(rounds, 0.99), 2),
        "signalling_rounds": len(rounds),
        "received_fps_min": round(min(fps), 1),
        "received_fps_mean": round(sum(fps) / len(fps), 1),
    }
    if emails:
        figures.update(results[2])
    log(f"{label}: {figures}")
    return figures


def ratio(storm_value: float, quiet_value: float) -> float | None:
    return round(storm_value / quiet_value, 2) if quiet_value else None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from server.db import apply_migrations
    from server.embedded import EmbeddedServices

    raise_open_files_limit()
    log_path = Path(args.server_log)
    log_path.unlink(missing_ok=True)  # noqa: ASYNC240 - once, before anything runs
    log("encoding the clip")
    clip = encode_clip(4, 1_000_000)
    figures: dict[str, Any] = {"logins_per_wave": args.logins, "phase_seconds": args.seconds}
    with tempfile.TemporaryDirectory() as folder, EmbeddedServices(Path(folder)) as services:
        await apply_migrations(services.database_url)
        email, ids, links = await seed(services.database_url, 1)
        emails = await add_staff(services.database_url, args.logins)
        server = Server(services, log_path, links, email, None)
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await server.start(session, 20)
                log("setting up the call and its media")
                call = await server.product_call(session, ids[0], Counters())
                peers = await start_media(call, clip)
                await asyncio.sleep(1.0)  # past the first keyframe's burst
                quiet = await phase("quiet", session, server.base, call, peers, args.seconds, None)
                stormy = await phase(
                    "storm", session, server.base, call, peers, args.seconds, emails
                )
                for peer in peers:
                    await peer.close()
                await call.close()
        finally:
            await server.stop()
    figures["quiet"] = quiet
    figures["storm"] = stormy
    figures["healthz_p99_ratio_storm_vs_quiet"] = ratio(
        stormy["healthz_ms_p99"], quiet["healthz_ms_p99"]
    )
    figures["signalling_p99_ratio_storm_vs_quiet"] = ratio(
        stormy["signalling_round_ms_p99"], quiet["signalling_round_ms_p99"]
    )
    figures["received_fps_ratio_storm_vs_quiet"] = ratio(
        stormy["received_fps_min"], quiet["received_fps_min"]
    )
    figures.update(server.problems_logged())
    return figures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--storm-child"]:
        asyncio.run(storm_child(argv[1], float(argv[2])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=100, help="parallel logins per wave")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument(
        "--server-log",
        default=str(Path(tempfile.gettempdir()) / "bench_login_storm_server.log"),
        help="where the server's log is kept",
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(run_until_terminated(args))
    print(json.dumps(figures))


async def run_until_terminated(args: argparse.Namespace) -> dict[str, Any]:
    """SIGTERM cancels the run, so the server and the embedded databases are stopped."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args)


if __name__ == "__main__":
    main()
