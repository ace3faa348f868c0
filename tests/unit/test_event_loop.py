"""The server's event loop: uvloop when installed, asyncio as the fallback or on request."""

from __future__ import annotations

import asyncio
import sys

import pytest

from server import event_loop
from server.config import ConfigError, load_config


async def _loop_module() -> str:
    """The package of the running loop's class, or of the uvloop class it extends."""
    for cls in type(asyncio.get_running_loop()).__mro__:
        if cls.__module__.startswith("uvloop"):
            return cls.__module__
    return type(asyncio.get_running_loop()).__module__


async def _counts_callbacks() -> bool:
    loop = asyncio.get_running_loop()
    before = getattr(loop, "callbacks_scheduled", None)
    await asyncio.sleep(0)  # one task step: one call_soon
    return before is not None and getattr(loop, "callbacks_scheduled", 0) > before


def test_serve_runs_on_uvloop_when_it_is_installed() -> None:
    name, _ = event_loop.loop_factory("uvloop")
    assert name == "uvloop"
    assert event_loop.run(_loop_module()).startswith("uvloop")
    # ... counting the callbacks scheduled on it, for the media poll cadence.
    assert event_loop.run(_counts_callbacks())


def test_asyncio_on_request_and_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert event_loop.run(_loop_module(), "asyncio").startswith("asyncio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails
    name, _ = event_loop.loop_factory("uvloop")
    assert name == "asyncio"
    assert event_loop.run(_loop_module(), "uvloop").startswith("asyncio")


def test_event_loop_setting_is_checked() -> None:
    assert load_config(env={}).event_loop == "uvloop"
    assert load_config(env={"EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ConfigError, match="EVENT_LOOP"):
        load_config(env={"EVENT_LOOP": "trio"})
    with pytest.raises(ValueError, match="trio"):
        event_loop.loop_factory("trio")
