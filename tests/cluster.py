"""A real cluster on loopback: ``videoconsult serve`` nodes behind Debian's nginx.

Each node is its own process (kill -9, SIGTERM and SIGSTOP reach it for real); nginx runs
the deploy kit's own site (``scripts/deploy/nginx-videoconsult.conf``, rendered as an
operator renders it) in a private prefix: TLS, round robin with no affinity, the next node
tried on a refused connection or a 503.
Redis is a private ``redis-server`` on a unix socket, so a test may restart it; with
``redis_proxies`` each node reaches it through a proxy of its own, so a test may cut one
node off from Redis while the others (and PostgreSQL) stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from server.config import Config
from signalling.protocol import Snapshot
from tests.call_media_fixtures import (
    CallPage,
    LiveCall,
    PageClosed,
    frames,
    open_client_page,
    open_clinician_page,
)
from tests.calls_fixtures import wait_for
from tests.deploy_fixtures import nginx_main_config, render, self_signed_certificate
from tests.e2e.conftest_media import wait_for as wait_until
from tests.fault_proxy import FaultProxy, unix_socket_proxy
from tests.integration.test_health import RedisProcess
from tests.support import ApiClient, PracticeFixture

# The page's first retry after a refused socket (web/static/js/call/connection.js).
REFUSED_RETRY_SECONDS = 0.25


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Node:
    node_id: str
    process: asyncio.subprocess.Process
    address: str  # host:port
    output: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.process.send_signal(signum)


class Cluster:
    def __init__(
        self,
        config: Config,
        workdir: Path,
        size: int,
        *,
        fast_failover: bool = True,
        redis_proxies: bool = False,
    ) -> None:
        """``fast_failover``: heartbeats 4x a second and a 1 s TTL, so the tests' failovers
        are quick; False runs the nodes at the default settings (the benchmark's case)."""
        self._config = config
        self._timing = (
            ("--call-heartbeat-seconds", "0.25", "--call-node-ttl-seconds", "1")
            if fast_failover
            else ()
        )
        self._dir = workdir
        self._size = size
        self.nodes: dict[str, Node] = {}
        self.redis = RedisProcess(workdir)
        self._proxied = redis_proxies
        self.redis_proxies: dict[str, FaultProxy] = {}  # node id -> its way to Redis
        self._nginx: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def start_redis(self) -> None:
        self.redis.start()

    async def wait_for_redis(self) -> None:
        await self.redis.wait_ready()

    def stop_redis(self) -> None:
        self.redis.stop()

    async def _redis_url_for(self, node_id: str) -> str:
        if not self._proxied:
            return self.redis_url
        proxy = self.redis_proxies.get(node_id)
        if proxy is None:
            proxy = self.redis_proxies[node_id] = unix_socket_proxy(str(self.redis.socket))
            await proxy.start()
        return f"redis://127.0.0.1:{proxy.port}"

    async def start_node(self, node_id: str, *extra: str, port: int = 0) -> Node:
        config = self._config
        assert config.database_url is not None
        redis_url = await self._redis_url_for(node_id)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            *("--database-url", config.database_url, "--redis-url", redis_url),
            *("--redis-prefix", config.redis_prefix, "--secret-key", config.secret_key),
            *("--public-url", config.public_url, "--port", str(port), "--node-id", node_id),
            *self._timing,
            *("--drain-seconds", "3"),
            *extra,
            env={**_clean_env(), "PYTHONUNBUFFERED": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        seen: list[str] = []
        async with asyncio.timeout(60):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"node {node_id} ended early:\n{''.join(seen)}")
                seen.append(line)
                found = re.search(r"listening on http://(\S+)", line)
                if found:
                    break
        node = Node(node_id, process, found.group(1), seen)
        node._reader = asyncio.get_running_loop().create_task(_keep_output(node))
        self.nodes[node_id] = node
        return node

    def start_nginx(self, port: int | None = None) -> None:
        """The deploy kit's own nginx site (scripts/deploy), rendered with these nodes and
        a self-signed certificate, inside the main configuration Debian wraps a site in."""
        prefix = self._dir / "nginx"
        prefix.mkdir(exist_ok=True)
        port = port or free_port()
        cert, key = self_signed_certificate(prefix)
        site = prefix / "videoconsult.conf"
        site.write_text(
            render(
                "nginx-videoconsult.conf",
                nodes=",".join(node.address for node in self.nodes.values()),
                SERVER_NAME="localhost",
                HTTP_PORT=str(free_port()),
                HTTPS_PORT=str(port),
                TLS_CERT=str(cert),
                TLS_KEY=str(key),
            )
        )
        main = nginx_main_config(prefix, site)
        self._nginx = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(main), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"https://127.0.0.1:{port}"

    def session(self) -> aiohttp.ClientSession:
        """A client of the cluster through nginx (its certificate is the test's own)."""
        return aiohttp.ClientSession(base_url=self.url, connector=aiohttp.TCPConnector(ssl=False))

    async def wait_for_nginx(self) -> None:
        host, port = self.url.removeprefix("https://").split(":")
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection(host, int(port))
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                return

    async def stop(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGCONT)
                    node.process.kill()
                await node.process.wait()
            if node._reader is not None:
                node._reader.cancel()
        if self._nginx is not None:
            # SIGTERM, nginx's fast stop: the master ends its worker, then itself. (A
            # SIGKILL of the master left the worker running, orphaned, after every run.)
            self._nginx.terminate()
            try:
                self._nginx.wait(10)
            except subprocess.TimeoutExpired:
                self._nginx.kill()
                self._nginx.wait()
        for proxy in self.redis_proxies.values():
            await proxy.stop()
        self.stop_redis()

    def log_of(self, node_id: str) -> str:
        return "".join(self.nodes[node_id].output)


async def reconnect_pages(api: ApiClient, practice: PracticeFixture, call: LiveCall) -> None:
    """What each browser does when its socket closes: reconnect through the load balancer
    (again after a short pause while a node refuses it) and rebuild its leg (the new owner
    holds the media)."""

    async def closed(page: CallPage) -> bool:
        return page._reader.done()

    for page in (call.clinician, call.patient):
        await wait_for(lambda page=page: closed(page), within=15)
    await call.clinician.close()
    await call.patient.close()
    booked = call.booked
    call.clinician = await _open_until_served(lambda: open_clinician_page(api, practice, booked))
    call.patient = await _open_until_served(lambda: open_client_page(api, booked))
    for page in (call.clinician, call.patient):
        assert page.of(Snapshot)[-1].phase == "in_progress"
    await asyncio.gather(call.clinician.offer(), call.patient.offer())
    await wait_until(lambda: frames(call.clinician) > 5 and frames(call.patient) > 5, within=15)


async def rejoin_closed_pages(api: ApiClient, practice: PracticeFixture, call: LiveCall) -> int:
    """Reopen (as the browser does) each page of ``call`` whose socket has closed; the call
    must still be in progress on whichever node serves it. Returns the pages reopened."""
    reopened = 0
    booked = call.booked
    if call.clinician._reader.done():
        await call.clinician.close()
        call.clinician = await _open_until_served(
            lambda: open_clinician_page(api, practice, booked)
        )
        reopened += 1
    if call.patient._reader.done():
        await call.patient.close()
        call.patient = await _open_until_served(lambda: open_client_page(api, booked))
        reopened += 1
    for page in (call.clinician, call.patient):
        assert page.of(Snapshot)[-1].phase == "in_progress", "the call was dropped"
    return reopened


async def _open_until_served(
    open_page: Callable[[], Awaitable[CallPage]], within: float = 15.0
) -> CallPage:
    """A node cut off from its services refuses the socket (an error, then the close):
    the browser tries again, as the page's own back-off does."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await open_page()
        except (PageClosed, aiohttp.WSServerHandshakeError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(REFUSED_RETRY_SECONDS)


async def _keep_output(node: Node) -> None:
    stream = node.process.stdout
    assert stream is not None
    while line := await stream.readline():
        node.output.append(line.decode(errors="replace"))


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["WORKERS"] = "1"  # each node one process (the default is one per core)
    return env


@contextlib.asynccontextmanager
async def running_cluster(
    config: Config,
    size: int = 3,
    ports: dict[str, int] | None = None,
    *,
    fast_failover: bool = True,
    redis_proxies: bool = False,
) -> AsyncIterator[Cluster]:
    """``size`` nodes (node-1..) on a private Redis, behind nginx; all stopped after.
    ``ports``: fixed node ports (so that a restarted node is where nginx expects it)."""
    with tempfile.TemporaryDirectory(prefix="videoconsult-cluster-") as workdir:
        cluster = Cluster(
            config,
            Path(workdir),
            size,
            fast_failover=fast_failover,
            redis_proxies=redis_proxies,
        )
        try:
            cluster.start_redis()
            await cluster.wait_for_redis()
            await asyncio.gather(
                *(
                    cluster.start_node(f"node-{n}", port=(ports or {}).get(f"node-{n}", 0))
                    for n in range(1, size + 1)
                )
            )
            cluster.start_nginx()
            await cluster.wait_for_nginx()
            yield cluster
        finally:
            await cluster.stop()
