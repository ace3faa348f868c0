"""Login throttling in Redis: an attempt is *reserved* before its password is verified.

Three counters over a window (``login_failure_window_seconds``), all moved by one Lua script
so that parallel attempts cannot all pass the check before any is counted (40 parallel wrong
passwords used to be verified in full against a limit of 5):

- per account *and* address: a hard limit (``per_account``). One address guessing one
  account is stopped; a stranger elsewhere does not lock the real user out;
- per address: a hard limit across accounts (``per_address``), against spraying;
- per account alone: past ``per_account`` failures from all addresses together, the account
  is *slowed*, not locked: one attempt per ``slowdown_seconds``, so a distributed guesser
  gets a handful of tries a minute and the real user waits seconds at most.

A reservation is a counted failure unless the login succeeds (``release``): then the
account's failures are forgotten, as they were before, and the address gets its attempt back.
An attempt that never reached a verdict (503 busy: no hashing slot; the request cancelled)
is no failure either: ``give_back`` undoes that one reservation and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from server.keys import Keys

# KEYS: pair, address, account, account slot. ARGV: pair limit, address limit, window (s),
# account threshold, slow-down (ms). Returns {1, 0} (reserved) or {0, seconds to wait}.
_RESERVE = """
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local function wait(key) return math.max(1, math.ceil(redis.call('PTTL', key) / 1000)) end
if count(KEYS[1]) >= tonumber(ARGV[1]) then return {0, wait(KEYS[1])} end
if count(KEYS[2]) >= tonumber(ARGV[2]) then return {0, wait(KEYS[2])} end
if count(KEYS[3]) >= tonumber(ARGV[4]) then
  if not redis.call('SET', KEYS[4], '1', 'PX', ARGV[5], 'NX') then return {0, wait(KEYS[4])} end
end
for i = 1, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[3]) end
end
return {1, 0}
"""

# KEYS: pair, address, account. The account and the pair start afresh; the address gives
# back this attempt only (its other guesses still count).
_RELEASE = """
redis.call('DEL', KEYS[1], KEYS[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 1
"""

# KEYS: pair, address, account. Undoes one reservation: each counter one down, never below 0.
_GIVE_BACK = """
for i = 1, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
"""


@dataclass(frozen=True)
class LoginThrottle:
    redis: aioredis.Redis
    keys: Keys
    per_account: int
    per_address: int
    window_seconds: int
    slowdown_seconds: float = 5.0

    def _keys(self, email: str, address: str) -> list[str]:
        return [
            self.keys.login_failures_pair(email, address),
            self.keys.login_failures_address(address),
            self.keys.login_failures_account(email),
            self.keys.login_account_slot(email),
        ]

    async def reserve(self, email: str, address: str) -> int:
        """Count this attempt as a failure now; 0 when it may go on to verify the password,
        else the seconds to wait before trying again (nothing counted)."""
        reserved, wait = await self.redis.eval(
            _RESERVE,
            4,
            *self._keys(email, address),
            self.per_account,
            self.per_address,
            self.window_seconds,
            self.per_account,
            round(self.slowdown_seconds * 1000),
        )
        return 0 if int(reserved) else int(wait)

    async def release(self, email: str, address: str) -> None:
        """The login succeeded: its attempt was no failure, and the account starts afresh."""
        await self.redis.eval(_RELEASE, 3, *self._keys(email, address)[:3])

    async def give_back(self, email: str, address: str) -> None:
        """The attempt got no verdict (busy, cancelled): it counts as no failure."""
        await self.redis.eval(_GIVE_BACK, 3, *self._keys(email, address)[:3])
