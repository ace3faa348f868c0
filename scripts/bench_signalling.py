"""Signalling benchmark: relay latency through the call engine vs a raw aiohttp relay, and
memory per idle waiting-room socket.

Each call has two WebSocket participants on a ``videoconsult serve`` process (its own
process, embedded PostgreSQL and Redis, loopback only). One round = the client's End Call
(R-C3: ``hangup_confirm`` end) reaches the clinician as ``client_wants_to_end``, the
clinician answers cancel, the client gets ``end_request_cancelled``: two relays through
the server, each through router, room, state machine and the audit log's transaction
(the clinician's cancel is an audited decision). The baseline is a bare aiohttp server
that forwards each text frame to the other socket of the pair, in its own process, run in
the same script: same hops, no logic.

Memory: N clients connect and say hello to N appointments' waiting rooms; the server's RSS
delta / N is the cost of one idle socket (room, stream, socket).

Last stdout line: one JSON object of figures. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

SECRET = "bench-secret-key-" + "x" * 32
PUBLIC_URL = "http://127.0.0.1:8080"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- baseline relay server ---------------------------------------------------------------


def run_echo_relay() -> None:
    """A bare relay: each text frame goes to the other socket of the same pair."""
    pairs: dict[str, dict[str, web.WebSocketResponse]] = {}

    async def relay(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        pair, side = request.query["pair"], request.query["side"]
        pairs.setdefault(pair, {})[side] = ws
        other = "b" if side == "a" else "a"
        async for frame in ws:
            peer = pairs[pair].get(other)
            if peer is not None and frame.type is aiohttp.WSMsgType.TEXT:
                await peer.send_str(frame.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", relay)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), print=None)


# --- helpers ---------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    assert match
    return int(match.group(1)) * 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )


async def read_until(proc: asyncio.subprocess.Process, pattern: str) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"server stopped before {pattern!r}")
            if match := re.search(pattern, line):
                return match.group(1)


async def drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass


# --- set-up of the product side ------------------------------------------------------------


async def seed(database_url: str, appointments: int) -> tuple[str, list[uuid.UUID], Any]:
    """A funded practice, a clinician and ``appointments`` video appointments with links."""
    from server import practices
    from server.diary.appointments import NewAppointments, insert_appointments
    from server.diary.links import insert_links
    from server.diary.recurrence import Occurrence
    from server.wallet.ledger import adjust_balance

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        practice = await practices.create_practice(pool, "Bench", phone="01632 960000")
        email = f"bench-{uuid.uuid4().hex[:6]}@example.test"
        clinician = await practices.create_user(
            pool, practice.id, email, "Dr Bench", "bench-password-1", ["clinician"]
        )
        client = await practices.create_client(pool, practice.id, "Casey")
        kind = await practices.create_appointment_type(pool, practice.id, "Video", 30, True)
        await adjust_balance(pool, practice.id, 10**9, "bench")
        ids = [uuid.uuid4() for _ in range(appointments)]
        start = datetime.now(UTC)
        new = NewAppointments(practice.id, clinician.id, client.id, kind.id, None, None)
        occurrences = [Occurrence(1, start, start + timedelta(minutes=30)) for _ in ids]
        async with pool.acquire() as conn, conn.transaction():
            await insert_appointments(conn, new, ids, occurrences)
            await insert_links(conn, practice.id, [uuid.uuid4() for _ in ids], ids)
        links = {
            r["appointment_id"]: r["id"]
            for r in await pool.fetch("SELECT id, appointment_id FROM video_links")
        }
        return email, ids, (practice.id, links)
    finally:
        await pool.close()


def client_token(appointment_id: uuid.UUID, link_id: uuid.UUID, practice_id: uuid.UUID) -> str:
    from server.auth.tokens import TokenIssuer

    token, _ = TokenIssuer(SECRET, PUBLIC_URL).issue_call(
        appointment_id, link_id, practice_id, 3600
    )
    return token


# --- the product's relay ------------------------------------------------------------------


async def product_rounds(
    session: aiohttp.ClientSession,
    base: str,
    staff: dict[str, str],
    appointment_id: uuid.UUID,
    token: str,
    rounds: int,
) -> list[float]:
    path = f"{base}/ws/appointments/{appointment_id}/call"
    async with session.post(
        f"{base}/api/appointments/{appointment_id}/video/start", json={}, headers=staff
    ) as started:
        assert started.status in (200, 201), await started.text()
    doc = await session.ws_connect(path, headers=staff)
    client = await session.ws_connect(path, params={"token": token})

    async def wait(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads((await ws.receive()).data)
            if message["type"] == kind:
                return message

    try:
        await doc.send_json({"type": "hello", "v": 1})
        await client.send_json({"type": "hello", "v": 1})
        await wait(doc, "snapshot")
        await wait(client, "snapshot")
        await doc.send_json({"type": "admit", "v": 1})
        await wait(client, "snapshot")
        latencies = []
        for _ in range(rounds):
            await client.send_json({"type": "hangup_request", "v": 1})
            dialog = await wait(client, "hangup_confirm_required")
            began = time.perf_counter()
            confirm = {"type": "hangup_confirm", "v": 1, "choice": "end"}
            await client.send_json({**confirm, "confirm_id": dialog["confirm_id"]})
            ask = await wait(doc, "client_wants_to_end")
            decision = {"type": "end_request_decision", "v": 1, "decision": "cancel"}
            await doc.send_json({**decision, "request_id": ask["request_id"]})
            await wait(client, "end_request_cancelled")
            latencies.append((time.perf_counter() - began) * 1000)
        return latencies
    finally:
        await doc.close()
        await client.close()


async def baseline_rounds(
    session: aiohttp.ClientSession, base: str, pair: int, rounds: int
) -> list[float]:
    a = await session.ws_connect(f"{base}/ws", params={"pair": str(pair), "side": "a"})
    b = await session.ws_connect(f"{base}/ws", params={"pair": str(pair), "side": "b"})
    try:
        await asyncio.sleep(0.05)
        latencies = []
        for n in range(rounds):
            began = time.perf_counter()
            await a.send_str(json.dumps({"type": "hangup_confirm", "n": n}))
            await b.receive()
            await b.send_str(json.dumps({"type": "end_request_decision", "n": n}))
            await a.receive()
            latencies.append((time.perf_counter() - began) * 1000)
        return latencies
    finally:
        await a.close()
        await b.close()


async def sweep(concurrency: int, rounds: int, run: Any, label: str) -> tuple[list[float], float]:
    began = time.perf_counter()
    results = await asyncio.gather(*(run(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies = [x for r in results for x in r]
    rate = len(latencies) * 4 / elapsed  # four messages per round
    log(
        f"{label}: {concurrency} calls, p50 {pct(latencies, 0.5):.2f} ms, "
        f"p99 {pct(latencies, 0.99):.2f} ms, {rate:.0f} msg/s"
    )
    return latencies, rate


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from server.db import apply_migrations
    from server.embedded import EmbeddedServices

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sweeps = [int(n) for n in args.calls.split(",")]
    total = sum(sweeps) + args.idle_sockets
    figures: dict[str, Any] = {"rounds_per_call": args.rounds}
    with tempfile.TemporaryDirectory() as folder, EmbeddedServices(Path(folder)) as services:
        await apply_migrations(services.database_url)
        log(f"seeding {total} appointments")
        email, ids, (practice_id, links) = await seed(services.database_url, total)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_PORT": str(args.baseline_port)}
        server = await spawn(
            sys.executable, "-m", "server.cli", "serve",
            "--database-url", services.database_url, "--redis-url", services.redis_url,
            "--secret-key", SECRET, "--public-url", PUBLIC_URL, "--port", "0",
            "--log-format", "json", env=env,
        )  # fmt: skip
        base = await read_until(server, r"listening on (http://[0-9.:]+)")
        drainer = asyncio.create_task(drain(server))
        echo = await spawn(sys.executable, __file__, "--echo-relay", env=env)
        baseline_base = f"http://127.0.0.1:{args.baseline_port}"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(100):
                try:
                    async with session.get(f"{baseline_base}/ws"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            async with session.post(
                f"{base}/api/login", json={"email": email, "password": "bench-password-1"}
            ) as login:
                staff = {"Authorization": f"Bearer {(await login.json())['token']}"}
            used = 0
            for concurrency in sweeps:
                batch = ids[used : used + concurrency]
                used += concurrency

                async def product(i: int, batch: list[uuid.UUID] = batch) -> list[float]:
                    appointment = batch[i]
                    token = client_token(appointment, links[appointment], practice_id)
                    return await product_rounds(
                        session, base, staff, appointment, token, args.rounds
                    )

                async def baseline(i: int, offset: int = used) -> list[float]:
                    return await baseline_rounds(session, baseline_base, offset + i, args.rounds)

                ours, our_rate = await sweep(concurrency, args.rounds, product, "videoconsult")
                raw, raw_rate = await sweep(concurrency, args.rounds, baseline, "raw relay")
                figures[f"calls_{concurrency}"] = {
                    "relay_ms_p50": round(pct(ours, 0.5), 2),
                    "relay_ms_p99": round(pct(ours, 0.99), 2),
                    "messages_per_s": round(our_rate),
                    "baseline_relay_ms_p50": round(pct(raw, 0.5), 2),
                    "baseline_relay_ms_p99": round(pct(raw, 0.99), 2),
                    "baseline_messages_per_s": round(raw_rate),
                    "p99_ratio_vs_baseline": round(pct(ours, 0.99) / pct(raw, 0.99), 2),
                }
            if args.idle_sockets:
                assert server.pid is not None
                await asyncio.sleep(1.0)
                before = rss_bytes(server.pid)
                idle = ids[used : used + args.idle_sockets]
                sockets = []
                for n, appointment in enumerate(idle):
                    token = client_token(appointment, links[appointment], practice_id)
                    ws = await session.ws_connect(
                        f"{base}/ws/appointments/{appointment}/call", params={"token": token}
                    )
                    await ws.send_json({"type": "hello", "v": 1})
                    await ws.receive()
                    sockets.append(ws)
                    if (n + 1) % 1000 == 0:
                        log(f"{n + 1} idle waiting-room sockets")
                await asyncio.sleep(1.0)
                after = rss_bytes(server.pid)
                figures["idle_sockets"] = len(sockets)
                figures["server_rss_delta_mb"] = round((after - before) / 2**20, 1)
                figures["rss_kb_per_idle_socket"] = round((after - before) / len(sockets) / 1024, 1)
                figures["server_rss_mb"] = round(after / 2**20, 1)
                log(f"idle sockets: {figures['rss_kb_per_idle_socket']} KiB each")
                await asyncio.gather(*(ws.close() for ws in sockets))
        echo.terminate()
        server.terminate()
        await echo.wait()
        await server.wait()
        await drainer
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="10,100,1000", help="concurrent calls per sweep step")
    parser.add_argument("--rounds", type=int, default=10, help="relay round trips per call")
    parser.add_argument("--idle-sockets", type=int, default=10000)
    parser.add_argument("--baseline-port", type=int, default=18765)
    parser.add_argument("--echo-relay", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.echo_relay:
        run_echo_relay()
    else:
        print(json.dumps(asyncio.run(asyncio.wait_for(main(parsed), 900))), flush=True)
