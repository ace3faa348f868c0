"""Server CPU per 1:1 call of the whole product, side by side with Janus VideoRoom.

K concurrent calls go through a real `videoconsult serve` (its own process, embedded
PostgreSQL and Redis in a temporary folder), driven as the pages drive it: clinician login,
Switch to Video, the client's link join, both call sockets, admit, an offer from each page
and the server's answers (scripts/bench_calls_peers.py). Every participant sends the same
pre-encoded VP8 640x480@30 1 Mbps + Opus clip. With `--janus` (Debian's `janus` and `gcc`
installed) the same participants run against Janus 1.1 VideoRoom in the same run,
interleaved point by point, and each point gets the ratio. With `--p2p` the participants
also connect directly (no server), the baseline for the latency the server adds.

Per point and server: the server process's CPU (% of one core) per call over the same
measuring window, fps at every receiver (min and median), admit -> first frame (p50),
latency from sender to receiver (p50, and p50 of the window's second half: a growing
queue shows there), RSS, and server CPU per forwarded packet (µs; packets counted at the
receivers). Every point records the load average, and the CPU the rest of the machine
used in the window: the machine is shared, a ratio in one run holds, an absolute does not.
`--overload N` adds a product-only point at N calls (shedding, keyframe recovery).

Loopback only: both servers and all participants gather 127.0.0.1 only (Janus through an
LD_PRELOAD shim compiled here, as libnice skips loopback interfaces). Progress on stderr;
the last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from bench_calls_peers import encode_clip, save_clip

PEERS = Path(__file__).resolve().parent / "bench_calls_peers.py"
PEER_CALLS_PER_PROCESS = 5
SECRET = secrets.token_urlsafe(32)  # may start with "-": passed as --secret-key=...
PASSWORD = "bench-password-1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
JANUS_PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus")

# Janus (libnice) skips interfaces flagged IFF_LOOPBACK: report `lo` without the flag so
# that nat.ice_enforce_list = "lo" leaves 127.0.0.1 as its only host candidate.
LOOPBACK_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **) = NULL;
    if (!real) real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next)
            if (i->ifa_name && !strcmp(i->ifa_name, "lo")) i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""


def log(message: str) -> None:
    print(f"[bench_calls {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


# --- the product ----------------------------------------------------------------------------


async def seed(database_url: str, public_url: str, appointments: int) -> dict[str, Any]:
    """A funded practice and `appointments` video appointments starting now, each with a
    clinician of its own (a clinician holds one call at a time; one account logged in K
    times at once is what the login throttle refuses, by design)."""
    from server import practices
    from server.diary.appointments import NewAppointments, insert_appointments
    from server.diary.links import LinkSigner, insert_links
    from server.diary.recurrence import Occurrence
    from server.wallet.ledger import adjust_balance

    signer = LinkSigner(SECRET, public_url)
    slots: list[dict[str, str]] = []
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        practice = await practices.create_practice(pool, "Bench", phone="01632 960000")
        client = await practices.create_client(pool, practice.id, "Casey")
        kind = await practices.create_appointment_type(pool, practice.id, "Video", 50, True)
        await adjust_balance(pool, practice.id, 10**9, "bench")
        start = datetime.now(UTC)
        run = uuid.uuid4().hex[:6]
        for number in range(appointments):
            email = f"bench-{run}-{number}@example.test"
            clinician = await practices.create_user(
                pool, practice.id, email, f"Dr Bench {number}", PASSWORD, ["clinician"]
            )
            appointment, link = uuid.uuid4(), uuid.uuid4()
            new = NewAppointments(practice.id, clinician.id, client.id, kind.id, None, None)
            async with pool.acquire() as conn, conn.transaction():
                occurrence = Occurrence(1, start, start + timedelta(minutes=50))
                await insert_appointments(conn, new, [appointment], [occurrence])
                await insert_links(conn, practice.id, [link], [appointment])
            slots.append(
                {
                    "appointment_id": str(appointment),
                    "link_token": signer.token(link),
                    "email": email,
                    # Each clinician at an address of their own, as in a real practice
                    # (all of 127/8 is loopback): one address logging in K clinicians at
                    # once passes the per-address login throttle (20) at K > 20.
                    "staff_address": f"127.0.{1 + number // 250}.{2 + number % 250}",
                }
            )
    finally:
        await pool.close()
    return {"password": PASSWORD, "slots": slots}


def serve_on_loopback(argv: list[str]) -> int:
    """`videoconsult serve` whose legs gather 127.0.0.1 only (stock aioice skips loopback)."""
    import aioice.ice

    from server.cli import main

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    return main(argv)


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for_line(server_log: Path, pattern: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = server_log.read_text(errors="replace") if server_log.exists() else ""
        if match := re.search(pattern, text):
            return match.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"{server_log.name}: stopped at start-up:\n{text[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{server_log.name}: not ready in 90 s")


def start_product(folder: Path, services: Any, public_url: str, port: int) -> Server:
    log_path = folder / "videoconsult.log"
    argv = [
        "serve", "--database-url", services.database_url, "--redis-url", services.redis_url,
        f"--secret-key={SECRET}", "--public-url", public_url, "--host", "127.0.0.1",
        "--port", str(port), "--email-provider", "log", "--workers", "1",
    ]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve-on-loopback", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = wait_for_line(log_path, r"listening on (http://\S+)", process)
    return Server("product", process, base, log_path)


# --- Janus ------------------------------------------------------------------------------------


def janus_available() -> str | None:
    """Why Janus cannot run here, or None."""
    if shutil.which("janus") is None:
        return "janus is not installed (apt-get install janus)"
    if shutil.which("gcc") is None:
        return "gcc is needed to build the loopback shim for Janus"
    if not (JANUS_PLUGINS / "plugins" / "libjanus_videoroom.so").exists():
        return f"no VideoRoom plugin in {JANUS_PLUGINS}/plugins"
    return None


def start_janus(folder: Path) -> Server:
    conf = folder / "janus-conf"
    conf.mkdir()
    shim = folder / "lo_not_loopback.so"
    (folder / "lo_not_loopback.c").write_text(LOOPBACK_SHIM_C)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(shim), str(folder / "lo_not_loopback.c"), "-ldl"],
        check=True,
    )
    port = free_port()
    rtp_base = 20000 + secrets.randbelow(400) * 100
    keep = {"libjanus_videoroom.so", "libjanus_http.so"}
    plugins = sorted(p.name for p in (JANUS_PLUGINS / "plugins").glob("*.so") if p.name not in keep)
    transports = sorted(
        p.name for p in (JANUS_PLUGINS / "transports").glob("*.so") if p.name not in keep
    )
    (conf / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{conf}"
    plugins_folder = "{JANUS_PLUGINS}/plugins"
    transports_folder = "{JANUS_PLUGINS}/transports"
    events_folder = "{JANUS_PLUGINS}/events"
    loggers_folder = "{JANUS_PLUGINS}/loggers"
    debug_level = 4
    interface = "127.0.0.1"
    session_timeout = 60
}}
media: {{
    ipv6 = false
    rtp_port_range = "{rtp_base}-{rtp_base + 999}"
}}
nat: {{
    ice_enforce_list = "lo"
    ignore_mdns = true
}}
plugins: {{ disable = "{",".join(plugins)}" }}
transports: {{ disable = "{",".join(transports)}" }}
events: {{ broadcast = false }}
"""
    )
    (conf / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    (conf / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{ admin_http = false }}
"""
    )
    log_path = folder / "janus.log"
    process = subprocess.Popen(
        ["janus", "-F", str(conf), "-L", str(log_path), "-N"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LD_PRELOAD": str(shim)},
    )
    wait_for_line(log_path, r"(HTTP webserver started)", process)
    return Server("janus", process, f"http://127.0.0.1:{port}/janus", log_path)


# --- one point --------------------------------------------------------------------------------


@dataclass
class PointResult:
    target: str
    calls: int
    figures: dict[str, Any] = field(default_factory=dict)


async def run_point(
    target: str,
    calls: int,
    server: Server | None,
    clip: Path,
    setup: Path | None,
    offset: int,
    args: argparse.Namespace,
) -> PointResult:
    # Several participant processes, so that no one event loop holds too many connections.
    groups = max(1, -(-calls // PEER_CALLS_PER_PROCESS))
    sizes = [calls // groups + (1 if i < calls % groups else 0) for i in range(groups)]
    peers: list[asyncio.subprocess.Process] = []
    start = offset
    for size in sizes:
        command = [
            sys.executable, str(PEERS), "--target", target, "--clip", str(clip),
            "--calls", str(size), "--call-offset", str(start),
            "--connect-timeout", str(args.connect_timeout),
        ]  # fmt: skip
        if server is not None:
            command += ["--base", server.base]
        if setup is not None:
            command += ["--setup", str(setup)]
        peers.append(
            await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,  # RESULT carries every latency sample of the window
            )
        )
        start += size

    async def next_event(peer: asyncio.subprocess.Process, wanted: str) -> dict[str, Any]:
        assert peer.stdout is not None
        while line := await peer.stdout.readline():
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == wanted:
                return event
        raise RuntimeError(f"participants stopped before {wanted}")

    try:
        async with asyncio.timeout(args.connect_timeout + args.window + 90):
            connected = await asyncio.gather(*(next_event(p, "CONNECTED") for p in peers))
            await asyncio.sleep(args.warmup)
            pid = server.pid if server is not None else None
            cpu_before = cpu_seconds(pid) if pid else 0.0
            busy_before, began = machine_busy_seconds(), time.monotonic()
            peers_before = sum(cpu_seconds(p.pid) for p in peers)
            for peer in peers:
                assert peer.stdin is not None
                peer.stdin.write(b"measure\n")
            await asyncio.sleep(args.window)
            for peer in peers:
                assert peer.stdin is not None
                peer.stdin.write(b"stop\n")
            seconds = time.monotonic() - began
            cpu_after = cpu_seconds(pid) if pid else 0.0
            busy = machine_busy_seconds() - busy_before
            peers_cpu = sum(cpu_seconds(p.pid) for p in peers) - peers_before
            server_rss = rss_mb(pid) if pid else None
            results = await asyncio.gather(*(next_event(p, "RESULT") for p in peers))
            await asyncio.gather(*(p.wait() for p in peers))
    finally:
        for peer in peers:
            if peer.returncode is None:
                peer.kill()
                await peer.wait()
    receivers = [r for result in results for r in result["participants"]]
    server_cpu = cpu_after - cpu_before
    packets = sum(r["rtp_pps"] for r in receivers) * seconds
    fps = [r["video_fps"] for r in receivers]
    figures: dict[str, Any] = {
        "receivers_connected": sum(e["connected"] for e in connected),
        "receivers": len(receivers),
        "video_fps_min": min(fps, default=None),
        "video_fps_median": round(statistics.median(fps), 2) if fps else None,
        "sent_video_fps_min": min((r["sent_video_fps"] for r in receivers), default=None),
        "audio_pps_median": round(statistics.median(r["audio_pps"] for r in receivers), 1)
        if receivers
        else None,
        "first_video_ms_p50": pct(
            [r["first_video_ms"] for r in receivers if r["first_video_ms"]], 0.5
        ),
        "latency_video_ms_p50": pct([v for r in receivers for v in r["latency_video"]], 0.5),
        "latency_video_ms_p99": pct([v for r in receivers for v in r["latency_video"]], 0.99),
        "latency_video_ms_p50_second_half": pct(
            [v for r in receivers for v in r["latency_video_second_half"]], 0.5
        ),
        "latency_audio_ms_p50": pct([v for r in receivers for v in r["latency_audio"]], 0.5),
        "keyframes_seen": sum(r["keyframes"] for r in receivers),
        "participants_cpu_pct": round(100 * peers_cpu / seconds, 1),
        "rest_of_machine_cpu_pct": round(100 * (busy - server_cpu - peers_cpu) / seconds, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "errors": [e for result in results for e in result["errors"]][:3],
        # What the product's server itself reports to the clinician's page (both sides).
        "quality_stats_sample": [q for r in results for q in r.get("quality_stats", [])][:4],
        "receiver_detail": [
            {k: r[k] for k in ("fast_datagrams", "unprotect_failures", "port_packets", "rtp_pps")}
            for r in receivers[:4]
        ],
    }
    if server is not None:
        figures.update(
            server_cpu_pct_per_call=round(100 * server_cpu / seconds / calls, 2),
            server_cpu_pct=round(100 * server_cpu / seconds, 1),
            server_us_per_forwarded_packet=round(1e6 * server_cpu / packets, 1)
            if packets
            else None,
            server_rss_mb=round(server_rss, 1) if server_rss else None,
        )
    log(
        f"{target} x{calls}: "
        + json.dumps({k: v for k, v in figures.items() if "latency" not in k})
    )
    return PointResult(target, calls, figures)


async def measured_point(
    target: str,
    calls: int,
    server: Server | None,
    clip: Path,
    setup: Path | None,
    offset: int,
    args: argparse.Namespace,
) -> PointResult:
    """`run_point`, or a point that says why it has no figures (the run goes on)."""
    try:
        return await run_point(target, calls, server, clip, setup, offset, args)
    except (TimeoutError, RuntimeError) as exc:
        log(f"{target} x{calls}: failed: {exc!r}")
        return PointResult(target, calls, {"failed": repr(exc)[:200]})


# --- the run ----------------------------------------------------------------------------------


def summarize(points: list[PointResult], sweep: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for calls in sweep:
        row: dict[str, Any] = {}
        for target in ("product", "janus", "p2p"):
            mine = [p.figures for p in points if p.target == target and p.calls == calls]
            if not mine:
                continue
            per_call = [
                f["server_cpu_pct_per_call"] for f in mine if "server_cpu_pct_per_call" in f
            ]
            row[target] = {
                "server_cpu_pct_per_call_median": round(statistics.median(per_call), 2)
                if per_call
                else None,
                "server_cpu_pct_per_call_each_round": per_call,
                "rounds": mine,
            }
        product, janus = row.get("product"), row.get("janus")
        if product and janus and janus["server_cpu_pct_per_call_median"]:
            row["cpu_ratio_vs_janus"] = round(
                product["server_cpu_pct_per_call_median"] / janus["server_cpu_pct_per_call_median"],
                2,
            )
        p2p = row.get("p2p")
        if product and p2p:
            for kind in ("video", "audio"):
                ours = [r.get(f"latency_{kind}_ms_p50") for r in product["rounds"]]
                direct = [r.get(f"latency_{kind}_ms_p50") for r in p2p["rounds"]]
                if None not in ours and None not in direct:
                    row[f"added_latency_{kind}_ms_p50"] = round(
                        statistics.median(ours) - statistics.median(direct), 1
                    )
        summary[f"calls_{calls}"] = row
    return summary


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from server.db import apply_migrations
    from server.embedded import EmbeddedServices

    sweep = [int(n) for n in args.calls.split(",") if n]
    targets = ["product"]
    if args.janus:
        if reason := janus_available():
            raise SystemExit(f"--janus: {reason}")
        targets.append("janus")
    if args.p2p:
        targets.append("p2p")
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as name:
        folder = Path(name)
        log("encoding the clip (VP8 640x480@30, 1 Mbps; Opus 64 kb/s)")
        video, audio = encode_clip(args.clip_seconds, args.bitrate)
        clip = folder / "clip.bin"
        save_clip(clip, video, audio)
        with EmbeddedServices(folder / "data") as services:
            await apply_migrations(services.database_url)
            port = free_port()
            public_url = f"http://127.0.0.1:{port}"
            needed = sum(sweep) * args.rounds + args.overload
            setup = folder / "setup.json"
            setup.write_text(json.dumps(await seed(services.database_url, public_url, needed)))
            servers: dict[str, Server] = {}
            points: list[PointResult] = []
            offset = 0
            try:
                servers["product"] = start_product(folder, services, public_url, port)
                if "janus" in targets:
                    servers["janus"] = start_janus(folder)
                await asyncio.sleep(3)
                idle = {}
                for target, server in servers.items():
                    before, began = cpu_seconds(server.pid), time.monotonic()
                    await asyncio.sleep(3)
                    idle[target] = round(
                        100 * (cpu_seconds(server.pid) - before) / (time.monotonic() - began), 2
                    )
                log(f"idle server CPU %: {idle}")
                for round_index in range(args.rounds):
                    for calls in sweep:
                        for target in targets:
                            log(f"round {round_index + 1}: {target}, {calls} calls")
                            point = await measured_point(
                                target,
                                calls,
                                servers.get(target),
                                clip,
                                setup if target == "product" else None,
                                offset,
                                args,
                            )
                            points.append(point)
                            if target == "product":
                                offset += calls
                overload = None
                if args.overload:
                    log(f"overload: product, {args.overload} calls")
                    overload = await measured_point(
                        "product", args.overload, servers["product"], clip, setup, offset, args
                    )
            finally:
                for server in servers.values():
                    server.stop()
                    if args.keep_logs:
                        keep = Path(args.keep_logs)
                        keep.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - at the end
                        shutil.copy(server.log_path, keep / server.log_path.name)
    result: dict[str, Any] = {
        "clip": f"VP8 640x480@30 {args.bitrate // 1000} kb/s + Opus 64 kb/s",
        "window_s": args.window,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "idle_server_cpu_pct": idle,
        **summarize(points, sweep),
    }
    if overload is not None:
        result[f"overload_calls_{args.overload}"] = overload.figures
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="1,4,8,12,16", help="concurrent calls per point")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of every point")
    parser.add_argument("--window", type=float, default=15.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--janus", action="store_true", help="the same points against Janus")
    parser.add_argument("--p2p", action="store_true", help="the same points peer to peer")
    parser.add_argument("--overload", type=int, default=0, help="a product point at N calls")
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--clip-seconds", type=int, default=10)
    parser.add_argument("--keep-logs", default="", help="copy the servers' logs to this folder")
    return parser


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-on-loopback"]:
        sys.exit(serve_on_loopback(sys.argv[2:]))
    figures = asyncio.run(main(_parser().parse_args()))
    print(json.dumps(figures))
