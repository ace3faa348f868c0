"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106), off the loop.

argon2 is slow on purpose (~0.1 s of CPU, several threads). Run on the event loop, 60
logins at once stalled ``/healthz`` for 2.5 s and every call's signalling and media with it.
``PasswordWorkers`` runs it in a small thread pool (argon2-cffi releases the GIL) whose
threads run at a lower CPU priority than the loop, and bounds how many hashes may wait: past
``max_waiting`` a login is answered 503 busy rather than queued without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verifying against this when the account does not exist keeps the timing the same,
# so response time does not reveal which emails have accounts.
_DUMMY_HASH = _hasher.hash("no such account")
# Niceness of the hashing threads (and of argon2's own lane threads, which inherit it).
HASHING_NICENESS = 10  # well below the loop (~10% of a core each when it is busy)
# Hashes running or waiting at once per node; a burst past it is answered 503 busy.
MAX_WAITING_HASHES = 64


def hashing_threads() -> int:
    """Half the cores, at least one: the other half stays with the event loop."""
    return max(1, (os.cpu_count() or 2) // 2)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _lower_priority() -> None:
    # On Linux a niceness applies to one thread when given its thread id.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


class PasswordWorkers:
    """argon2 in a bounded pool of low-priority threads; ``TimeoutError`` when too many wait
    (the busy middleware answers it 503 with Retry-After)."""

    def __init__(self, workers: int, max_waiting: int, wait_seconds: float) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._slots = asyncio.Semaphore(max_waiting)
        self._wait_seconds = wait_seconds

    async def verify(self, password_hash: str | None, password: str) -> bool:
        async with self._slot():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, verify_password, password_hash, password
            )

    async def hash(self, password: str) -> str:
        async with self._slot():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, hash_password, password)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        async with asyncio.timeout(self._wait_seconds):
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
