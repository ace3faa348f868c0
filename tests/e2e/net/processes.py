"""Helper processes for the network tests (coturn, the delay relay): started by the test,
stopped by the test, by their own process id."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager


@asynccontextmanager
async def running(command: Sequence[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if process.stdout is not None:
            with contextlib.suppress(Exception):
                process.stdout.feed_eof()


async def read_line_starting(
    process: asyncio.subprocess.Process, prefix: str, within_s: float = 10.0
) -> str:
    """The first line of the process's output that starts with `prefix`."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(within_s):
        while True:
            raw = await process.stdout.readline()
            if not raw:
                raise RuntimeError(f"process ended before {prefix!r}: {seen[-20:]}")
            line = raw.decode(errors="replace").strip()
            if line.startswith(prefix):
                return line
            seen.append(line)


def free_udp_port(address: str) -> int:
    """A port free for both UDP and TCP on `address` right now (coturn listens on both)."""
    for _ in range(20):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port on {address}")


def drain(process: asyncio.subprocess.Process) -> asyncio.Task[None]:
    """Keep reading the process's output so a full pipe never blocks it."""

    async def read() -> None:
        assert process.stdout is not None
        while await process.stdout.readline():
            pass

    return asyncio.get_running_loop().create_task(read())
