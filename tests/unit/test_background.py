"""Stopping background tasks: a task that swallows a cancellation still ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.background import stop_tasks


async def test_a_task_that_swallows_its_first_cancellation_is_cancelled_again() -> None:
    swallowed: list[int] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(1)  # like a library read that resumes waiting

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task]), timeout=10)
    assert task.cancelled()
    assert swallowed == [1]


async def test_a_task_that_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(broken(), name="broken")
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.ERROR, logger="server.background"):
        await stop_tasks([failed, done])
    assert failed.done() and done.done()
    assert [r.getMessage() for r in caplog.records] == ["background task broken failed"]
