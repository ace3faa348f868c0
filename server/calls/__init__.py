"""The call engine in the server: the ``signalling`` package wired to PostgreSQL, Redis and
WebSockets.

- ``store``       ``CallStore`` over PostgreSQL: loads calls, commits transitions + audit
- ``directory``   which call an appointment has (or will have when its waiting room opens)
- ``audit``       the call audit log (SQL)
- ``sink``        ``UsageSink``: meter readings into the wallet's ledger, with checkpoints
- ``nodes``       node registry: heartbeats (with load) in Redis, who is alive, placement
- ``ownership``   which node owns a call: claim (epoch), fence, release, takeover
- ``routing``     what the Redis relay needs from the server: refusals, metrics
- ``sockets``     the WebSocket endpoint and the ``MessageSink`` that reaches sockets
- ``media_control`` ``MediaControl``: the server's aiortc legs for each call, billing by media
- ``media_quality`` per-leg quality stats for the clinician and /metrics
- ``unattended``  closing open calls nobody came back to
- ``engine``      one node's call engine (rooms, router, meter, flusher), in cleanup_ctx
- ``start``       "Switch to Video" (pre-call check, opening the waiting room)
- ``client_entry`` a client's link -> short-lived call token
- ``api``         the HTTP routes
"""
