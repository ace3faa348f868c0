"""The server's event loop: uvloop where it is installed, the plain asyncio loop otherwise.

Media forwarding runs in the event loop's one thread, once per packet (media/fastpath.py),
so the loop's own cost per datagram and per callback is a large share of a call's CPU;
uvloop (libuv) is made for exactly this (with a count of the callbacks scheduled on it,
for media/cadence.py). It is a dependency on the platforms it supports;
where it is missing (or `EVENT_LOOP=asyncio` asks for it) the standard loop runs the same
code.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from media.cadence import counting_loop_class

log = logging.getLogger(__name__)

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(preference: str = "uvloop") -> tuple[str, LoopFactory]:
    """("uvloop" or "asyncio", a factory for that loop), by preference and availability."""
    if preference not in ("uvloop", "asyncio"):
        raise ValueError(f"event loop must be uvloop or asyncio, not {preference!r}")
    if preference == "uvloop":
        try:
            uvloop: Any = importlib.import_module("uvloop")
        except ImportError:
            log.info("uvloop is not installed: using the asyncio event loop")
        else:
            # Counting its callbacks lets the media poll cadence see pending work.
            factory: LoopFactory = counting_loop_class(uvloop.Loop)
            return "uvloop", factory
    return "asyncio", asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], preference: str = "uvloop") -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks."""
    name, factory = loop_factory(preference)
    log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
