"""Several nodes behind nginx: relay latency, placement, and failover media gaps.

Starts a private PostgreSQL (embedded), Redis and nginx, and real ``videoconsult serve``
nodes on loopback (the same harness as the cluster tests, ``tests/cluster.py``):

1. **Relay latency**: K calls, clinician and client sockets through nginx (round robin, so
   most sockets sit on a node that does not own their call), each side pinging the server
   in turn; ping -> pong round trip p50/p99 against the same calls on ONE node (no relay)
   in the same run (``relay_p99_ratio_vs_one_node``).
2. **Placement**: how many of the K calls each node owns (Switch to Video places by load).
3. **Failover**: ``--kills`` times, a media call (aiortc peers) whose owner is killed
   (kill -9); the seconds from the kill until video flows again both ways after the pages
   reconnect through nginx (p50/p95/max). The killed node is restarted on its port.
   The nodes run at the default heartbeat settings (``--fast-heartbeat``: the tests' 0.25 s
   heartbeat and 1 s TTL instead).
4. **Rolling restart**: ``--rolling-calls`` calls in progress (both pages connected through
   nginx) while each node in turn is drained (SIGTERM), waited for and started again; the
   pages whose sockets closed reconnect through nginx. A call is dropped if it is not in
   progress afterwards (or its pages cannot rejoin it); each is then ended with End Call.

Progress on stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from server.config import Config  # noqa: E402
from server.db import apply_migrations  # noqa: E402
from server.embedded import EmbeddedServices  # noqa: E402
from signalling.protocol import Ping, Pong  # noqa: E402
from tests.call_media_fixtures import (  # noqa: E402
    LiveCall,
    PageClosed,
    admitted_call,
    start_media,
)
from tests.calls_fixtures import (  # noqa: E402
    Participant,
    book_video,
    call_row,
    connect_client,
    connect_clinician,
    fund,
    open_waiting_room,
)
from tests.cluster import (  # noqa: E402
    Cluster,
    free_port,
    reconnect_pages,
    rejoin_closed_pages,
    running_cluster,
)
from tests.integration.test_calls_metering import end_call  # noqa: E402
from tests.support import ApiClient, PracticeFixture, make_practice  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def ping_rounds(pairs: list[tuple[Participant, Participant]], rounds: int) -> list[float]:
    """Every participant pings once per round, all calls at once; round trips in ms."""
    samples: list[float] = []

    async def one(participant: Participant, nonce: int) -> None:
        sent = time.perf_counter()
        await participant.send(Ping(v=1, nonce=nonce))
        await participant.expect(Pong)
        samples.append((time.perf_counter() - sent) * 1000)

    for n in range(rounds):
        await asyncio.gather(*(one(p, n + 1) for pair in pairs for p in pair))
    return samples


async def open_calls(
    api: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config, calls: int
) -> list[tuple[Participant, Participant]]:
    pairs = []
    for _ in range(calls):
        booked = await book_video(db, practice, config)
        await open_waiting_room(api, practice, booked)
        pairs.append(
            (await connect_clinician(api, practice, booked), await connect_client(api, booked))
        )
    return pairs


async def relay_phase(
    config: Config, db: asyncpg.Pool, practice: PracticeFixture, nodes: int, args: Any
) -> tuple[list[float], dict[str, int]]:
    async with (
        running_cluster(config, nodes) as cluster,
        cluster.session() as session,
    ):
        api = cast(ApiClient, session)
        await db.execute(
            "UPDATE calls SET state = 'ended', ended_at = now() WHERE state <> 'ended'"
        )
        pairs = await open_calls(api, db, practice, config, args.calls)
        samples = await ping_rounds(pairs, args.rounds)
        rows = await db.fetch(
            "SELECT owner_node, count(*) AS n FROM calls WHERE state = 'waiting_room_open' "
            "GROUP BY owner_node"
        )
        for pair in pairs:
            for participant in pair:
                await participant.close()
        return samples, {row["owner_node"]: int(row["n"]) for row in rows}


async def failover_phase(
    config: Config, db: asyncpg.Pool, practice: PracticeFixture, args: Any
) -> tuple[list[float], int]:
    """The media gaps, and the false takeovers: calls taken from a node that was not dead
    at the time (a live node judged dead, e.g. its event loop stalled a whole TTL)."""
    gaps: list[float] = []
    dead: list[tuple[str, datetime, datetime]] = []  # node, killed at, running again at
    started = await db.fetchval("SELECT now()")
    ports = {f"node-{n}": free_port() for n in range(1, args.nodes + 1)}
    async with (
        running_cluster(
            config, args.nodes, ports=ports, fast_failover=args.fast_heartbeat
        ) as cluster,
        cluster.session() as session,
    ):
        api = cast(ApiClient, session)
        for kill in range(args.kills):
            call: LiveCall = await admitted_call(api, db, practice, config)
            await start_media(call)
            await asyncio.sleep(1.0)
            owner = (await call_row(db, call.booked.appointment_id))["owner_node"]
            killed_from = await db.fetchval("SELECT now()")
            killed_at = time.monotonic()
            cluster.nodes[owner].process.kill()
            await reconnect_pages(api, practice, call)
            gaps.append(time.monotonic() - killed_at)
            log(f"kill {kill + 1}/{args.kills}: {owner} killed, media back {gaps[-1]:.2f} s")
            await call.close()
            await restart(cluster, owner, ports[owner])
            dead.append((owner, killed_from, await db.fetchval("SELECT now()")))
    takeovers = await db.fetch(
        "SELECT reason, at FROM call_audit WHERE reason LIKE 'taken over:%' AND at >= $1",
        started,
    )
    false_takeovers = 0
    for takeover in takeovers:
        found = re.match(r"taken over: node (\S+) stopped", takeover["reason"])
        lost = found.group(1) if found else ""
        if not any(node == lost and lo <= takeover["at"] <= hi for node, lo, hi in dead):
            false_takeovers += 1
    return gaps, false_takeovers


async def rolling_phase(
    config: Config, db: asyncpg.Pool, practice: PracticeFixture, args: Any
) -> tuple[int, int, float]:
    """(calls dropped, pages that reconnected, seconds the whole rolling restart took)."""
    ports = {f"node-{n}": free_port() for n in range(1, args.nodes + 1)}
    async with (
        running_cluster(config, args.nodes, ports=ports) as cluster,
        cluster.session() as session,
    ):
        api = cast(ApiClient, session)
        calls = [await admitted_call(api, db, practice, config) for _ in range(args.rolling_calls)]
        reconnected = dropped = 0
        started = time.monotonic()
        try:
            for node_id in sorted(ports):
                cluster.nodes[node_id].signal(signal.SIGTERM)
                await cluster.nodes[node_id].process.wait()
                await cluster.start_node(node_id, port=ports[node_id])
                await asyncio.sleep(0.5)  # the moved calls' relayed sockets close too
                for call in list(calls):
                    try:
                        reconnected += await rejoin_closed_pages(api, practice, call)
                    except (AssertionError, PageClosed, aiohttp.ClientError):
                        dropped += 1
                        calls.remove(call)
                        await call.close()
                log(f"rolling: {node_id} restarted; {reconnected} pages reconnected so far")
            took = time.monotonic() - started
            for call in calls:
                row = await call_row(db, call.booked.appointment_id)
                if row["state"] != "in_progress":
                    dropped += 1
                    continue
                await end_call(call.clinician)
        finally:
            for call in calls:
                await call.close()
    return dropped, reconnected, took


async def restart(cluster: Cluster, node_id: str, port: int) -> None:
    await cluster.nodes[node_id].process.wait()
    await cluster.start_node(node_id, port=port)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="videoconsult-bench-cluster-") as folder,
        EmbeddedServices(Path(folder)) as services,
    ):
        await apply_migrations(services.database_url)
        config = Config(
            database_url=services.database_url,
            redis_url=services.redis_url,
            redis_prefix=f"bench:{uuid.uuid4().hex[:6]}:",
            secret_key="bench-secret-key-" + "x" * 32,
            public_url="http://127.0.0.1:8080",
            drain_seconds=0.0,
        )
        db = await asyncpg.create_pool(services.database_url, min_size=1, max_size=4)
        assert db is not None
        practice = await make_practice(db, "Bench Practice")
        await fund(db, practice, 10**7)
        log(f"relay: {args.calls} calls on 1 node")
        one, _ = await relay_phase(config, db, practice, 1, args)
        log(f"relay: {args.calls} calls on {args.nodes} nodes through nginx")
        many, per_node = await relay_phase(config, db, practice, args.nodes, args)
        log(f"failover: {args.kills} kills")
        gaps, false_takeovers = (
            await failover_phase(config, db, practice, args) if args.kills else ([], 0)
        )
        log(f"rolling restart: {args.rolling_calls} calls")
        dropped, reconnected, rolling_s = (
            await rolling_phase(config, db, practice, args) if args.rolling_calls else (0, 0, 0.0)
        )
        await db.close()
    counts = sorted(per_node.values())
    return {
        "calls": args.calls,
        "nodes": args.nodes,
        "relay_rtt_ms_p50": round(statistics.median(many), 2),
        "relay_rtt_ms_p99": round(pct(many, 0.99), 2),
        "one_node_rtt_ms_p50": round(statistics.median(one), 2),
        "one_node_rtt_ms_p99": round(pct(one, 0.99), 2),
        "relay_p99_ratio_vs_one_node": round(pct(many, 0.99) / pct(one, 0.99), 2),
        "calls_per_node": per_node,
        "busiest_over_least_busy_ratio": round(counts[-1] / counts[0], 2) if counts else None,
        "failover_heartbeat": "0.25 s / 1 s TTL" if args.fast_heartbeat else "defaults",
        "failover_kills": len(gaps),
        "failover_media_gap_s_p50": round(statistics.median(gaps), 2) if gaps else None,
        "failover_media_gap_s_p95": round(pct(gaps, 0.95), 2) if gaps else None,
        "failover_media_gap_s_max": round(max(gaps), 2) if gaps else None,
        "failover_media_gaps_s": [round(gap, 2) for gap in gaps],
        "failover_false_takeovers": false_takeovers,
        "rolling_restart_calls": args.rolling_calls,
        "rolling_restart_calls_dropped": dropped,
        "rolling_restart_pages_reconnected": reconnected,
        "rolling_restart_s": round(rolling_s, 1),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20, help="calls for relay and placement")
    parser.add_argument("--nodes", type=int, default=3, help="nodes behind nginx")
    parser.add_argument("--rounds", type=int, default=20, help="ping rounds per participant")
    parser.add_argument("--kills", type=int, default=10, help="failover runs (kill -9)")
    parser.add_argument(
        "--rolling-calls",
        type=int,
        default=10,
        help="calls in progress during a rolling restart of every node (0: skip)",
    )
    parser.add_argument(
        "--fast-heartbeat",
        action="store_true",
        help="nodes beat every 0.25 s with a 1 s TTL (the tests' timing), not the defaults",
    )
    return parser


if __name__ == "__main__":
    result = asyncio.run(main(_parser().parse_args()))
    print(json.dumps(result))
