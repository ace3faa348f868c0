"""Media layer: one aiortc leg per participant, forwarding between legs, ICE config, stats.

`leg.MediaLeg` owns one server-side RTCPeerConnection; `relay.Relay` forwards RTP between
the two legs of a call without decoding, one `forward.StreamForwarder` per direction and
kind, on the bytes where it can (`fastpath`), with `sequence` rewriting numbers and
`keyframes` gating video; the `aiortc_adapter` package is the only code touching aiortc
internals; `consent` times RFC 7675 consent checks;
`ice` builds STUN/TURN configuration; `stats` samples per-leg quality; `call.CallMedia`
ties them together for the signalling layer. Nothing here imports `server` or `signalling`.
"""
