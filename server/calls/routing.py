"""What the relay needs from the server: how a refused delivery is told, and its metrics."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
import redis.exceptions
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from server.calls.ownership import CallMoved, CallOwnedElsewhere
from signalling.model import IllegalTransition
from signalling.relay import CLOSE_REASON_MOVED, RedisRouter, Refusal


def refusal_for(failed: Exception) -> Refusal | None:
    """What a participant is told when their message could not be delivered to the call."""
    match failed:
        case IllegalTransition(code=code, message=message):
            return Refusal(code, message)
        case CallOwnedElsewhere():
            return Refusal("call_elsewhere", "This call is running on another server: try again")
        case CallMoved():
            return Refusal(CLOSE_REASON_MOVED, "This call moved: reconnect")
        case (
            redis.exceptions.ConnectionError()
            | redis.exceptions.TimeoutError()
            | asyncpg.PostgresConnectionError()
            | asyncpg.CannotConnectNowError()
            | OSError()
        ):
            # This node cannot reach Redis or PostgreSQL (cut off, or they restart): the
            # socket closes so that the browser reconnects, through any node that can.
            return Refusal("unavailable", "This server cannot reach its services: reconnecting")
    return None


class ClusterMetrics(Collector):
    """What /metrics shows of routing: refused sockets (by reason), relayed messages (read
    from the router's counts when scraped: no metric call on the message path)."""

    def __init__(self, registry: CollectorRegistry, router: RedisRouter) -> None:
        self.sockets_refused = Counter(
            "videoconsult_call_sockets_refused",
            "call sockets refused or closed to reconnect elsewhere, by reason",
            ["reason"],
            registry=registry,
        )
        self._router = router
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        relayed = CounterMetricFamily(
            "videoconsult_relayed_messages",
            "participant messages relayed between nodes over Redis",
            labels=["direction"],
        )
        relayed.add_metric(["to_owner"], self._router.relayed_out)
        relayed.add_metric(["from_edge"], self._router.relayed_in)
        yield relayed
        yield CounterMetricFamily(
            "videoconsult_relayed_sockets_moved",
            "relayed call sockets closed so that they reconnect to the call's new owner",
            value=self._router.sockets_moved,
        )
