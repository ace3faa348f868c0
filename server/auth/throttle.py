"""Login throttling: failed attempts counted in Redis per account and per client address."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from server.keys import Keys


@dataclass(frozen=True)
class LoginThrottle:
    redis: aioredis.Redis
    keys: Keys
    per_account: int
    per_address: int
    window_seconds: int

    async def retry_after(self, email: str, address: str) -> int:
        """Seconds until this login may be tried again; 0 when it may be tried now."""
        account_key = self.keys.login_failures_account(email)
        address_key = self.keys.login_failures_address(address)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(account_key)
            pipe.get(address_key)
            pipe.ttl(account_key)
            pipe.ttl(address_key)
            account, addr, account_ttl, address_ttl = await pipe.execute()
        wait = 0
        if account is not None and int(account) >= self.per_account:
            wait = max(wait, int(account_ttl))
        if addr is not None and int(addr) >= self.per_address:
            wait = max(wait, int(address_ttl))
        return max(wait, 0)

    async def record_failure(self, email: str, address: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (
                self.keys.login_failures_account(email),
                self.keys.login_failures_address(address),
            ):
                # SET NX EX starts the window on the first failure (EXPIRE NX needs Redis 7).
                pipe.set(key, 0, ex=self.window_seconds, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def record_success(self, email: str) -> None:
        await self.redis.delete(self.keys.login_failures_account(email))
