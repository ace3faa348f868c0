"""What the payment providers' fakes share: an HTTP server on 127.0.0.1 and held replies.

Each fake (``gocardless_fake``, ``paypal_fake``) stands in for an EXTERNAL provider; this
base only serves its routes and lets a test make a reply never arrive (the provider acted,
but the caller timed out), released when the fake closes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class FakeProviderServer:
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    async def _serve(self, app: web.Application) -> None:
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def _never_answer(self) -> None:
        """Hold the reply until the fake closes (the caller has given up by then)."""
        await self._release.wait()

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()
