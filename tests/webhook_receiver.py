"""A real HTTP server that receives our webhooks, as an integrator's would.

It checks nothing itself; tests read what arrived (headers and raw body) and script its
answers: a status per call, or a hang longer than the sender's timeout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    received: list[Received] = field(default_factory=list)
    # Answers for the next requests, in order: an int is a status, "hang" never answers.
    script: list[int | str] = field(default_factory=list)
    _server: TestServer | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set on each request

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/hooks/videoconsult"))

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hooks/videoconsult", self._receive)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.received.append(Received(headers, body))
        self.arrived.set()
        answer = self.script.pop(0) if self.script else 204
        if answer == "hang":
            await self._release.wait()
            return web.Response(status=204)
        assert isinstance(answer, int)
        return web.Response(status=answer, text="" if answer < 300 else "receiver trouble")
