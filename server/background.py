"""Stopping a node's background tasks at shutdown.

A task is cancelled and awaited. A library may swallow one cancellation (redis-py's pub/sub
read was seen doing so when the cancel met a read in progress: the listener went back to
waiting, and the node's shutdown hung on it). So a task still running after a second is
cancelled again, until it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_SECONDS = 1.0


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task and wait until each has ended; a task's own failure is logged."""
    pending = set(tasks)
    for task in pending:
        task.cancel()
    while pending:
        done, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
        for task in pending:
            log.warning("background task %s ignored its cancellation; cancelling again", task)
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task %s failed", task.get_name(), exc_info=task.exception())
