"""Real processes for the deployment kit's tests: nodes, nginx and coturn from scripts/deploy.

Each is started from the very files an operator installs (rendered with test ports), on
127.0.0.1, and stopped by its own process id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from server.config import SETTINGS
from tests.conftest import TEST_SECRET
from tests.diary_fixtures import free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "scripts" / "deploy"
CLI = [sys.executable, "-m", "server.cli"]


def render(template: str, nodes: str | None = None, **values: str) -> str:
    """scripts/deploy/render.py, run as an operator runs it."""
    args = [sys.executable, str(DEPLOY / "render.py"), template]
    if nodes is not None:
        args += ["--nodes", nodes]
    for name, value in values.items():
        args += ["--set", f"{name}={value}"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def node_env(database_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    # Nothing of the test runner's own settings leaks in: only what is given here.
    declared = {spec.env for spec in SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in declared}
    env.update(
        PYTHONUNBUFFERED="1",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        SECRET_KEY=TEST_SECRET,
        DRAIN_SECONDS="0",
        OUTBOX_WORKER="false",
        WORKERS="1",  # one node per process, as the deploy kit's unit sets
    )
    return env


@dataclass
class Node:
    process: asyncio.subprocess.Process
    url: str


@contextlib.asynccontextmanager
async def running_nodes(count: int, env: dict[str, str]) -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    try:
        for index in range(count):
            process = await asyncio.create_subprocess_exec(
                *CLI,
                "serve",
                "--port",
                "0",
                "--node-id",
                f"deploy-test-{index}",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            nodes.append(Node(process, await _listening_url(process)))
        yield nodes
    finally:
        for node in nodes:
            if node.process.returncode is None:
                node.process.send_signal(signal.SIGINT)
        for node in nodes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.process.wait(), 20)
            if node.process.returncode is None:
                node.process.kill()
                await node.process.wait()


async def _listening_url(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    seen = ""
    async with asyncio.timeout(60):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"node ended before listening:\n{seen}")
            seen += line
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                # Keep reading its output so the pipe never fills and blocks the node.
                asyncio.get_running_loop().create_task(_drain(process))
                return found.group(1)


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


@dataclass(frozen=True)
class Nginx:
    http_port: int
    https_port: int
    site: Path


def nginx_main_config(folder: Path, site: Path) -> Path:
    """What Debian's /etc/nginx/nginx.conf does around a site, in a private prefix."""
    main = folder / "nginx.conf"
    main.write_text(
        f"""user root;
worker_processes 1;
# A graceful stop (SIGQUIT) waits for open connections, a call socket's too: not for long.
worker_shutdown_timeout 2s;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {site};
}}
"""
    )
    return main


@contextlib.contextmanager
def running_nginx(folder: Path, nodes: list[Node]) -> Iterator[Nginx]:
    cert, key = self_signed_certificate(folder)
    http_port, https_port = free_port(), free_port()
    site = folder / "videoconsult.conf"
    site.write_text(
        render(
            "nginx-videoconsult.conf",
            nodes=",".join(node.url.removeprefix("http://") for node in nodes),
            SERVER_NAME="localhost",
            HTTP_PORT=str(http_port),
            HTTPS_PORT=str(https_port),
            TLS_CERT=str(cert),
            TLS_KEY=str(key),
        )
    )
    main = nginx_main_config(folder, site)
    checked = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-p", str(folder)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        ["nginx", "-c", str(main), "-p", str(folder), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        yield Nginx(http_port, https_port, site)
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


@contextlib.contextmanager
def running_coturn(folder: Path, secret: str) -> Iterator[tuple[int, int]]:
    cert, key = self_signed_certificate(folder)
    port, tls_port = free_port(), free_port()
    relay = free_port()
    config = folder / "turnserver.conf"
    config.write_text(
        render(
            "turnserver.conf",
            TURN_HOST="127.0.0.1",
            TURN_LISTEN_IP="127.0.0.1",
            TURN_PORT=str(port),
            TURNS_PORT=str(tls_port),
            TURN_REALM="videoconsult.test",
            TURN_SECRET=secret,
            TLS_CERT=str(cert),
            TLS_KEY=str(key),
            RELAY_MIN_PORT=str(relay),
            RELAY_MAX_PORT=str(relay + 10),
        )
    )
    process = subprocess.Popen(
        ["turnserver", "-c", str(config), "--pidfile", str(folder / "turn.pid"),
         "--log-file", "stdout", "--no-stdout-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port, tls_port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
