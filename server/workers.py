"""``serve --workers N``: N node processes on one machine, sharing the HTTP port.

Media forwarding is bound by one event-loop thread, so one machine uses all its cores by
running one node per core. Each worker is a whole ``videoconsult serve`` process with its
own node id (``<NODE_ID>-w<n>``), bound to the same port with ``SO_REUSEPORT`` so the
kernel spreads connections over them; the calls themselves are routed between the workers
like between any nodes (Redis). The settings reach the workers in their environment (not
on the command line, where every user could read the secrets). SIGTERM and Ctrl-C are
passed on: each worker drains and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from server.config import SETTINGS, Config
from server.settings import value_at

log = logging.getLogger(__name__)


def worker_count(config: Config) -> int:
    return config.workers or os.cpu_count() or 1


def shared_port(config: Config) -> int:
    """The port every worker binds: the configured one, or a free one chosen now."""
    if config.port:
        return config.port
    with socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET) as probe:
        probe.bind((config.host, 0))
        port: int = probe.getsockname()[1]
        return port


def worker_environment(config: Config, port: int, n: int) -> dict[str, str]:
    """Every effective setting (from flags, environment or defaults) as the worker's env."""
    env = dict(os.environ)
    for spec in SETTINGS:
        value = value_at(config, spec)
        if value is None:
            env.pop(spec.env, None)
        elif isinstance(value, bool):
            env[spec.env] = "true" if value else "false"
        elif isinstance(value, tuple):
            env[spec.env] = ",".join(str(item) for item in value)
        else:
            env[spec.env] = str(value)
    env.update(
        PORT=str(port),
        NODE_ID=f"{config.node_id}-w{n}",
        WORKERS="1",
        REUSE_PORT="true",
        PYTHONUNBUFFERED="1",
    )
    return env


async def serve_workers(config: Config) -> int:
    count = worker_count(config)
    port = shared_port(config)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", env=worker_environment(config, port, n)
        )
        for n in range(1, count + 1)
    ]
    log.info("started %d node processes on port %d", count, port)
    loop = asyncio.get_running_loop()

    def pass_on(signum: int) -> None:
        for worker in workers:
            if worker.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, pass_on, signum)
    try:
        codes = await asyncio.gather(*(worker.wait() for worker in workers))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return max(codes, default=0)
