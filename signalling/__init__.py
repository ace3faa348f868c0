"""The call engine: protocol messages, the pure call state machine, rooms, meter, routing.

Layout (imports point one way, and never into ``server``):

- ``model``    call phases, participant roles, ``CallState`` and ``IllegalTransition``
- ``protocol`` versioned WebSocket messages (msgspec tagged unions), decoded once at the edge
- ``events`` / ``effects``  what the machine consumes and what it asks the outside to do
- ``machine``  ``transition(state, event, now) -> (state, effects)``: pure, no I/O
- ``stream``   per-participant outbound stream: ``seq`` numbers and replay for ``resume``
- ``meter``    per-second accounting of live calls and the flusher that writes readings
- ``room``     applies a call's effects through injected Protocols (store, sockets, media)
- ``router``   which node owns a call and how a participant's message reaches it

What the server must provide is declared as ``typing.Protocol`` classes here
(``CallStore``, ``MessageSink``, ``MediaControl``, ``UsageSink``, ``Router``).
"""
