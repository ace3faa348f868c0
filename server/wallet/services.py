"""The wallet's share of the application: its AppKey and what it runs in ``cleanup_ctx``.

Kept here rather than in ``server/appkeys.py`` because only wallet code reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from server.appkeys import CONFIG, DB
from server.background import stop_tasks
from server.wallet.checkout import WalletServices, run_reconciler
from server.wallet.payments import build_providers

WALLET = web.AppKey("wallet", WalletServices)


async def wallet_context(app: web.Application) -> AsyncIterator[None]:
    """One HTTP session for the payment providers, and the background reconcile sweep.

    Runs after the database pool is created (it is appended to ``cleanup_ctx`` later).
    """
    config = app[CONFIG]
    async with aiohttp.ClientSession() as session:
        app[WALLET] = WalletServices(
            pool=app[DB],
            providers=build_providers(config.payments, session),
            base_url=config.base_url,
        )
        sweep: asyncio.Task[None] | None = None
        if config.payments.reconcile_interval_seconds > 0:
            sweep = asyncio.create_task(
                run_reconciler(app[WALLET], config.payments.reconcile_interval_seconds),
                name="wallet-reconciler",
            )
        try:
            yield
        finally:
            if sweep is not None:
                await stop_tasks([sweep])
