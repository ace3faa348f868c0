"""`keep_consent`: RFC 7675 consent on aioice connections (see `media.consent`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aioice import stun
from aioice.ice import Connection as IceConnection

from media.aiortc_adapter._internals import _private
from media.consent import ConsentClock, ConsentTiming

logger = logging.getLogger(__name__)


def keep_consent(connection: IceConnection, timing: ConsentTiming) -> ConsentClock:
    """Replace aioice's consent check on `connection` (RFC 7675, late answers accepted).

    aioice starts `connection.query_consent()` as a task once ICE completes and cancels that
    task on close, so the replacement is an instance attribute of the same name; if ICE has
    already completed, the running check is swapped at once.
    """
    clock = ConsentClock(timing, time.monotonic())
    nominated: dict[int, Any] = _private(connection, "_nominated")
    build_request: Callable[..., stun.Message] = _private(connection, "build_request")
    checks: set[asyncio.Task[None]] = set()

    async def check(pair: Any, password: str) -> None:
        clock.checks_sent += 1
        try:
            await pair.protocol.request(
                build_request(pair, nominate=False),
                pair.remote_addr,
                integrity_key=password.encode("utf8"),
                retransmissions=timing.retransmissions,
            )
        except stun.TransactionError:
            return  # unanswered (or refused): the clock alone decides when consent expires
        except ConnectionError:
            return  # the socket went away: the connection is closing
        clock.answered(time.monotonic())

    async def query_consent() -> None:
        clock.last_answer_at = time.monotonic()  # ICE has just completed: consent is fresh
        try:
            while True:
                await asyncio.sleep(timing.next_check_in())
                password = connection.remote_password
                for pair in list(nominated.values()):
                    if password is not None:
                        task = asyncio.ensure_future(check(pair, password))
                        checks.add(task)
                        task.add_done_callback(checks.discard)
                if clock.expired(time.monotonic()):
                    logger.info(
                        "consent to send expired: no answer to %d consent checks in %.0f s",
                        clock.checks_sent,
                        timing.expiry_seconds,
                    )
                    setattr(connection, "_query_consent_task", None)  # noqa: B010
                    await connection.close()
                    return
        finally:
            for task in list(checks):
                task.cancel()

    running: asyncio.Task[None] | None = _private(connection, "_query_consent_task")
    setattr(connection, "query_consent", query_consent)  # noqa: B010
    if running is not None and not running.done():
        running.cancel()
        setattr(connection, "_query_consent_task", asyncio.ensure_future(query_consent()))  # noqa: B010
    return clock
