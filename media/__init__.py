"""Media layer: one aiortc leg per participant, forwarding between legs, ICE config, stats.

`leg.MediaLeg` owns one server-side RTCPeerConnection; `forward.Relay` forwards RTP between
the two legs of a call without decoding (the only module touching aiortc internals);
`ice` builds STUN/TURN configuration; `stats` samples per-leg quality; `call.CallMedia`
ties them together for the signalling layer. Nothing here imports `server` or `signalling`.
"""
