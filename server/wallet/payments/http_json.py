"""JSON over HTTP to a payment provider, with one rule for what "no answer" means.

A timeout, a dropped connection, a 5xx or a 429 leaves the outcome unknown: it becomes
``ProviderUnavailable`` and the purchase stays unsettled until asked again. Any other
status is returned to the caller, which knows that provider's error shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from server.wallet.payments.provider import ProviderUnavailable


@dataclass(frozen=True)
class JsonReply:
    status: int
    body: dict[str, Any]


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout_seconds: float,
    headers: dict[str, str] | None = None,
    json_body: object | None = None,
    form: dict[str, str] | None = None,
) -> JsonReply:
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            json=json_body,
            data=form,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            text = await response.text()
            status = response.status
    except TimeoutError:
        message = f"{method} {url}: no answer within {timeout_seconds:g} s"
        raise ProviderUnavailable(message) from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"{method} {url}: {exc.__class__.__name__}: {exc}") from None
    if status >= 500 or status == 429:
        raise ProviderUnavailable(f"{method} {url}: HTTP {status}")
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        raise ProviderUnavailable(f"{method} {url}: HTTP {status} with a non-JSON body") from None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"{method} {url}: HTTP {status} with a non-object body")
    return JsonReply(status, body)


def dig(data: object, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...`` or None when any step is missing or of the wrong type."""
    current: Any = data
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or not -len(current) <= step < len(current):
                return None
            current = current[step]
        else:
            if not isinstance(current, dict):
                return None
            current = current.get(step)
    return current
