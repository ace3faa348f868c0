"""Signalling benchmark: relay latency through the call engine vs a raw aiohttp relay, and
memory per idle waiting-room socket.

What is relayed, and why that message. In this product the only messages one participant
sends *to the other* through the server are the hang-up dialogue's (R-C3): the client's
End Call reaches the clinician as ``client_wants_to_end``, the clinician's Cancel reaches the
client as ``end_request_cancelled``. (SDP offers and ICE candidates go to the server's own
media leg, not to the other browser.) So one round is: the client opens its dialog
(``hangup_request``, answered by the server with ``hangup_confirm_required``; untimed), then,
timed: client ``hangup_confirm`` end -> clinician receives ``client_wants_to_end`` ->
clinician ``end_request_decision`` cancel -> client receives ``end_request_cancelled``. That
is two relays through socket, decoding and validation, router, room, state machine,
sequence stamping (kept for resume) and encoding; nothing of it is durable (no phase
changes), so no database write is on this path.

The baseline is a bare aiohttp server in its own process that forwards each text frame to
the other socket of its pair, unparsed, except that a ``hangup_request`` frame is answered
to its sender (as our server answers it with the dialog). The benchmark's client sends it
the very same frames (same bytes) it sends our server, and both sides of both runs use the
same client code: every socket has a reader task (so pings are answered, as a browser
does) that decodes each frame into a queue. Same hops, same frames, no logic.

Each sweep step sets up N calls at once (Switch to Video, two sockets, hello, admit; the
set-up time and any 503 "busy" answers, retried after Retry-After, are reported), waits
until every call is set up, then runs all calls' rounds concurrently, then the same for N
baseline pairs. Figures per step: p50/p99 relay latency (ms, one relay = half a timed
round), relayed messages per second in the timed phase, and their ratios to the baseline.

Memory: N clients connect and say hello to N appointments' waiting rooms (not opened yet),
answering pings, held for more than two heartbeat intervals; the server's RSS delta / N is
the cost of one idle socket (socket, room, stream, directory entry). RLIMIT_NOFILE is
raised to its hard limit in this process and in the server.

The server's log is kept (``--server-log``); errors and 5xx answers in it are counted in the
figures. Last stdout line: one JSON object of figures. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECRET = "bench-secret-key-" + "x" * 32
PUBLIC_URL = "http://127.0.0.1:8080"
HEARTBEAT_SECONDS = 5.0  # the server's WebSocket ping interval (server/calls/sockets.py)
EXPECT_TIMEOUT_SECONDS = 60.0
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the server it starts)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def child_setup() -> None:
    """In each child process: the same open-files limit, and stop if this script dies."""
    raise_open_files_limit()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# --- baseline relay server ---------------------------------------------------------------


def run_raw_relay() -> None:
    """A bare relay: each text frame goes to the other socket of the same pair, unparsed."""
    pairs: dict[str, dict[str, web.WebSocketResponse]] = {}

    async def relay(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)  # as our call sockets: same wire work
        await ws.prepare(request)
        pair, side = request.query["pair"], request.query["side"]
        sockets = pairs.setdefault(pair, {})
        sockets[side] = ws
        other = "b" if side == "a" else "a"
        try:
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                if frame.data.startswith('{"type":"hangup_request"'):
                    await ws.send_str(frame.data)  # our server answers this one itself
                    continue
                peer = sockets.get(other)
                if peer is not None:
                    await peer.send_str(frame.data)
        finally:
            sockets.pop(side, None)
            if not sockets:
                pairs.pop(pair, None)
        return ws

    app = web.Application()
    app.router.add_get("/ws", relay)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), print=None)


# --- client side --------------------------------------------------------------------------


class Participant:
    """One WebSocket, read all the time (pings answered, as a browser does) into a queue."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self._inbox.put_nowait(json.loads(frame.data))
        finally:
            self._inbox.put_nowait(None)

    async def send(self, message: dict[str, Any]) -> None:
        # Compact separators: the exact bytes a browser's JSON.stringify sends.
        await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def expect(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(EXPECT_TIMEOUT_SECONDS):
            while True:
                message = await self._inbox.get()
                if message is None:
                    code = self.ws.close_code
                    raise ConnectionError(f"socket closed ({code}) while waiting for {kind}")
                if message["type"] == kind:
                    return message
                if message["type"] == "error":
                    raise RuntimeError(f"server error while waiting for {kind}: {message}")

    @property
    def open(self) -> bool:
        return not self.ws.closed

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


# Browsers offer permessage-deflate on every WebSocket (window bits 15); so do we, unless
# --no-deflate. The server decides whether to accept.
CLIENT_DEFLATE_BITS = {"bits": 15}


async def connect_ws(
    session: aiohttp.ClientSession, url: str, **options: Any
) -> aiohttp.ClientWebSocketResponse:
    ws: aiohttp.ClientWebSocketResponse = await session.ws_connect(
        url, compress=CLIENT_DEFLATE_BITS["bits"], **options
    )
    return ws


class Counters:
    def __init__(self) -> None:
        self.busy_503 = 0
        self.failed: list[str] = []


async def with_busy_retries(counters: Counters, attempt: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``attempt``; on 503 busy wait Retry-After and try again (what a browser page does)."""
    for _ in range(30):
        try:
            return await attempt()
        except aiohttp.WSServerHandshakeError as refused:
            if refused.status != 503:
                raise
            headers = refused.headers
            retry_after = float(headers.get("Retry-After", "1") if headers is not None else 1)
        except BusyError as busy:
            retry_after = busy.retry_after
        counters.busy_503 += 1
        await asyncio.sleep(retry_after)
    raise RuntimeError("still busy after 30 attempts")


class BusyError(Exception):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after


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


class ProductCall:
    """A live call on our server: the clinician's and the client's sockets, admitted."""

    def __init__(self, doc: Participant, client: Participant) -> None:
        self.doc = doc
        self.client = client

    @classmethod
    async def set_up(
        cls,
        session: aiohttp.ClientSession,
        base: str,
        staff: dict[str, str],
        appointment_id: uuid.UUID,
        token: str,
        counters: Counters,
    ) -> ProductCall:
        async def start() -> None:
            url = f"{base}/api/appointments/{appointment_id}/video/start"
            async with session.post(url, json={}, headers=staff) as started:
                if started.status == 503:
                    raise BusyError(float(started.headers.get("Retry-After", "1")))
                if started.status not in (200, 201):
                    raise RuntimeError(f"start: {started.status} {await started.text()}")

        path = f"{base}/ws/appointments/{appointment_id}/call"
        await with_busy_retries(counters, start)
        doc = Participant(
            await with_busy_retries(counters, lambda: connect_ws(session, path, headers=staff))
        )
        client = Participant(
            await with_busy_retries(
                counters, lambda: connect_ws(session, path, params={"token": token})
            )
        )
        await doc.send({"type": "hello", "v": 1})
        await client.send({"type": "hello", "v": 1})
        await doc.expect("snapshot")
        await client.expect("snapshot")
        await doc.send({"type": "admit", "v": 1})
        await client.expect("snapshot")
        return cls(doc, client)

    async def round(self) -> float:
        """One round; returns the timed part (two relays) in ms."""
        await self.client.send({"type": "hangup_request", "v": 1})
        dialog = await self.client.expect("hangup_confirm_required")
        began = time.perf_counter()
        await self.client.send(
            {"type": "hangup_confirm", "v": 1, "confirm_id": dialog["confirm_id"], "choice": "end"}
        )
        ask = await self.doc.expect("client_wants_to_end")
        await self.doc.send(
            {
                "type": "end_request_decision",
                "v": 1,
                "request_id": ask["request_id"],
                "decision": "cancel",
            }
        )
        await self.client.expect("end_request_cancelled")
        return (time.perf_counter() - began) * 1000

    async def close(self) -> None:
        await self.doc.close()
        await self.client.close()


class BaselinePair:
    """Two sockets on the raw relay, sent the same frames as a product call's."""

    def __init__(self, a: Participant, b: Participant) -> None:
        self.client = a
        self.doc = b

    @classmethod
    async def set_up(cls, session: aiohttp.ClientSession, base: str, pair: int) -> BaselinePair:
        a = await connect_ws(session, f"{base}/ws", params={"pair": str(pair), "side": "a"})
        b = await connect_ws(session, f"{base}/ws", params={"pair": str(pair), "side": "b"})
        return cls(Participant(a), Participant(b))

    async def round(self) -> float:
        confirm_id = uuid.uuid4().hex[:16]
        await self.client.send({"type": "hangup_request", "v": 1})
        await self.client.expect("hangup_request")
        began = time.perf_counter()
        await self.client.send(
            {"type": "hangup_confirm", "v": 1, "confirm_id": confirm_id, "choice": "end"}
        )
        ask = await self.doc.expect("hangup_confirm")
        await self.doc.send(
            {
                "type": "end_request_decision",
                "v": 1,
                "request_id": ask["confirm_id"],
                "decision": "cancel",
            }
        )
        await self.client.expect("end_request_decision")
        return (time.perf_counter() - began) * 1000

    async def close(self) -> None:
        await self.client.close()
        await self.doc.close()


# --- measuring ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed_rounds(label: str, calls: list[Any], rounds: int) -> dict[str, float]:
    """All calls' rounds at once; latencies are per relay (half a timed round)."""

    async def run(call: Any) -> list[float]:
        return [await call.round() / 2 for _ in range(rounds)]

    began = time.perf_counter()
    results = await asyncio.gather(*(run(call) for call in calls))
    elapsed = time.perf_counter() - began
    relays = [x for r in results for x in r]
    figures = {
        "relay_ms_p50": round(pct(relays, 0.5), 2),
        "relay_ms_p99": round(pct(relays, 0.99), 2),
        # Two relayed messages per round (the end request, its cancellation).
        "relayed_messages_per_s": round(2 * len(relays) / elapsed),
    }
    log(
        f"  {label}: {len(calls)} calls, relay p50 {figures['relay_ms_p50']} ms, "
        f"p99 {figures['relay_ms_p99']} ms, {figures['relayed_messages_per_s']} relayed msg/s"
    )
    return figures


async def sweep_step(
    session: aiohttp.ClientSession,
    server: Server,
    baseline_base: str,
    appointments: list[uuid.UUID],
    rounds: int,
    pair_offset: int,
) -> dict[str, Any]:
    n = len(appointments)
    counters = Counters()
    log(f"{n} calls: setting up on videoconsult")
    began = time.perf_counter()
    set_up = await asyncio.gather(
        *(server.product_call(session, a, counters) for a in appointments),
        return_exceptions=True,
    )
    setup_s = time.perf_counter() - began
    calls = [c for c in set_up if isinstance(c, ProductCall)]
    failures = [repr(c) for c in set_up if isinstance(c, BaseException)]
    for failure in failures[:3]:
        log(f"  set-up failed: {failure[:300]}")
    log(f"  set up {len(calls)}/{n} calls in {setup_s:.1f} s ({counters.busy_503} busy 503s)")
    profile = f"{server.profile}.calls_{n}" if server.profile else None
    async with profiling(server.pid, profile):  # the timed phase only
        ours = await timed_rounds("videoconsult", calls, rounds) if calls else {}
    open_after = sum(c.doc.open and c.client.open for c in calls)
    await asyncio.gather(*(c.close() for c in calls))
    pairs = await asyncio.gather(
        *(BaselinePair.set_up(session, baseline_base, pair_offset + i) for i in range(n))
    )
    raw = await timed_rounds("raw relay", pairs, rounds)
    await asyncio.gather(*(p.close() for p in pairs))
    step: dict[str, Any] = {
        "calls_set_up": len(calls),
        "calls_failed": len(failures),
        "calls_still_connected": open_after,
        "setup_s": round(setup_s, 2),
        "busy_503_retries": counters.busy_503,
        **ours,
        **{f"baseline_{name}": value for name, value in raw.items()},
    }
    if ours:
        step["p50_ratio_vs_baseline"] = round(ours["relay_ms_p50"] / raw["relay_ms_p50"], 2)
        step["p99_ratio_vs_baseline"] = round(ours["relay_ms_p99"] / raw["relay_ms_p99"], 2)
        step["throughput_ratio_vs_baseline"] = round(
            ours["relayed_messages_per_s"] / raw["relayed_messages_per_s"], 2
        )
    return step


async def idle_sockets(
    session: aiohttp.ClientSession, server: Server, appointments: list[uuid.UUID]
) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    before = server.rss_bytes()
    gate = asyncio.Semaphore(200)  # connecting pace; all stay connected
    counters = Counters()

    async def connect(appointment: uuid.UUID) -> Participant:
        token = server.token_for(appointment)
        path = f"{server.base}/ws/appointments/{appointment}/call"
        async with gate:
            ws = await with_busy_retries(
                counters, lambda: connect_ws(session, path, params={"token": token})
            )
            participant = Participant(ws)
            await participant.send({"type": "hello", "v": 1})
            await participant.expect("snapshot")
            return participant

    began = time.perf_counter()
    sockets: list[Participant] = []
    for start in range(0, len(appointments), 1000):
        batch = appointments[start : start + 1000]
        sockets += await asyncio.gather(*(connect(a) for a in batch))
        log(f"  {len(sockets)} idle waiting-room sockets, server RSS {server.rss_mb():.0f} MB")
    connect_s = time.perf_counter() - began
    # Held past two ping intervals: each socket must answer pings to stay (as browsers do).
    await asyncio.sleep(2 * HEARTBEAT_SECONDS + 1)
    after = server.rss_bytes()
    still_open = sum(p.open for p in sockets)
    figures = {
        "idle_sockets": len(sockets),
        "idle_sockets_still_open": still_open,
        "idle_connect_s": round(connect_s, 1),
        "idle_busy_503_retries": counters.busy_503,
        "server_rss_before_idle_mb": round(before / 2**20, 1),
        "server_rss_with_idle_mb": round(after / 2**20, 1),
        "server_rss_delta_mb": round((after - before) / 2**20, 1),
        "rss_kib_per_idle_socket": round((after - before) / len(sockets) / 1024, 1),
    }
    log(f"  idle sockets: {figures['rss_kib_per_idle_socket']} KiB each, {still_open} open")
    await asyncio.gather(*(p.close() for p in sockets))
    return figures


# --- processes ----------------------------------------------------------------------------


class Server:
    """``videoconsult serve`` in its own process, its output kept in ``log_path``."""

    def __init__(
        self, services: Any, log_path: Path, links: Any, staff_email: str, profile: str | None
    ) -> None:
        self._services = services
        self.profile = profile
        self.log_path = log_path
        self._practice_id, self._links = links
        self._email = staff_email
        self.base = ""
        self.staff: dict[str, str] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def start(self, session: aiohttp.ClientSession, pool_size: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DATABASE_POOL_SIZE": str(pool_size)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve",
            "--database-url", self._services.database_url,
            "--redis-url", self._services.redis_url,
            "--secret-key", SECRET, "--public-url", PUBLIC_URL, "--port", "0",
            "--log-format", "json", "--workers", "1", env=env, preexec_fn=child_setup,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self._proc.stdout is not None
        out = self.log_path.open("ab")
        async with asyncio.timeout(60):
            while True:
                line = await self._proc.stdout.readline()
                out.write(line)
                if not line:
                    raise RuntimeError(f"server stopped at start-up; see {self.log_path}")
                if match := re.search(r"listening on (http://[0-9.:]+)", line.decode()):
                    self.base = match.group(1)
                    break
        self._drainer = asyncio.create_task(self._keep_log(out))
        login = {"email": self._email, "password": "bench-password-1"}
        async with session.post(f"{self.base}/api/login", json=login) as answer:
            self.staff = {"Authorization": f"Bearer {(await answer.json())['token']}"}

    async def _keep_log(self, out: Any) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with out:
            while line := await self._proc.stdout.readline():
                out.write(line)

    def token_for(self, appointment: uuid.UUID) -> str:
        return client_token(appointment, self._links[appointment], self._practice_id)

    async def product_call(
        self, session: aiohttp.ClientSession, appointment: uuid.UUID, counters: Counters
    ) -> ProductCall:
        return await ProductCall.set_up(
            session, self.base, self.staff, appointment, self.token_for(appointment), counters
        )

    def rss_bytes(self) -> int:
        assert self._proc is not None
        text = Path(f"/proc/{self._proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        assert match
        return int(match.group(1)) * 1024

    def rss_mb(self) -> float:
        return self.rss_bytes() / 2**20

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
        await self._proc.wait()
        if self._drainer is not None:
            await self._drainer

    def problems_logged(self) -> dict[str, int]:
        counts = {"server_errors_logged": 0, "server_5xx_answers": 0, "server_503_busy": 0}
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("ERROR", "CRITICAL"):
                counts["server_errors_logged"] += 1
            message = str(entry.get("message", ""))
            if message.startswith("unhandled error on"):
                counts["server_5xx_answers"] += 1
            elif message.startswith("503 for"):
                counts["server_503_busy"] += 1
        return counts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_for_baseline(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with session.get(f"{base}/ws"):
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the raw relay did not start")


@contextlib.asynccontextmanager
async def profiling(pid: int, path: str | None) -> Any:
    """py-spy attached to the server while the block runs (optional)."""
    if path is None:
        yield
        return
    if shutil.which("py-spy") is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    spy = await asyncio.create_subprocess_exec(
        "py-spy", "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
        "--output", path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes its output and stops
        await spy.wait()
        log(f"server profile (py-spy raw/collapsed stacks): {path}")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from server.db import apply_migrations
    from server.embedded import EmbeddedServices

    limit = raise_open_files_limit()
    CLIENT_DEFLATE_BITS["bits"] = 0 if args.no_deflate else 15
    sweeps = [int(n) for n in args.calls.split(",") if n]
    if args.idle_sockets + 100 > limit:
        raise SystemExit(f"--idle-sockets {args.idle_sockets} needs RLIMIT_NOFILE > {limit}")
    total = sum(sweeps) + args.idle_sockets
    log_path = Path(args.server_log)
    log_path.unlink(missing_ok=True)  # noqa: ASYNC240 - once, before anything runs
    figures: dict[str, Any] = {"rounds_per_call": args.rounds, "server_log": str(log_path)}
    with tempfile.TemporaryDirectory() as folder, EmbeddedServices(Path(folder)) as services:
        await apply_migrations(services.database_url)
        log(f"seeding {total} appointments")
        email, ids, links = await seed(services.database_url, total)
        server = Server(services, log_path, links, email, args.profile)
        port = args.baseline_port or free_port()
        env = {**os.environ, "BENCH_PORT": str(port)}
        raw_relay = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--raw-relay", env=env, preexec_fn=child_setup
        )
        baseline_base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await server.start(session, args.database_pool_size)
                await wait_for_baseline(session, baseline_base)
                used = 0
                if args.idle_sockets:
                    log(f"{args.idle_sockets} idle waiting-room sockets")
                    idle = ids[used : used + args.idle_sockets]
                    used += args.idle_sockets
                    figures.update(await idle_sockets(session, server, idle))
                for n in sweeps:
                    batch = ids[used : used + n]
                    figures[f"calls_{n}"] = await sweep_step(
                        session, server, baseline_base, batch, args.rounds, used
                    )
                    used += n
                figures["server_rss_end_mb"] = round(server.rss_mb(), 1)
        finally:
            if raw_relay.returncode is None:
                raw_relay.terminate()
            await raw_relay.wait()
            await server.stop()
    figures.update(server.problems_logged())
    log(f"server log: {log_path}")
    return figures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", default="10,100,1000", help="concurrent calls per sweep step (comma list)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per call")
    parser.add_argument(
        "--idle-sockets", type=int, default=10000, help="idle waiting-room sockets (0: skip)"
    )
    parser.add_argument(
        "--baseline-port", type=int, default=0, help="raw relay's port (0: a free one)"
    )
    parser.add_argument(
        "--database-pool-size", type=int, default=20, help="the server's DATABASE_POOL_SIZE"
    )
    parser.add_argument(
        "--server-log",
        default=os.path.join(tempfile.gettempdir(), "bench_signalling_server.log"),
        help="where the server's log (JSON lines) is kept",
    )
    parser.add_argument(
        "--profile",
        help="record the server with py-spy in each step's timed phase (PATH.calls_N files)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=900, help="give up after this many seconds"
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do)",
    )
    parser.add_argument("--raw-relay", action="store_true", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    parsed = _parser().parse_args()
    if parsed.raw_relay:
        run_raw_relay()
    else:
        result = asyncio.run(asyncio.wait_for(main(parsed), parsed.time_limit))
        print(json.dumps(result), flush=True)
