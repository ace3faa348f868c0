"""`SrtpCalls`: libsrtp per packet on a pylibsrtp session, without its overhead."""

from __future__ import annotations

from typing import Any

from pylibsrtp import SRTP_MAX_TRAILER_LEN, Session
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from media.aiortc_adapter._internals import _private
from media.fastpath import rewrite_fixed_header_into


class SrtpCalls:
    """protect / unprotect of one pylibsrtp `Session`, per packet without its overhead.

    pylibsrtp's own methods allocate an `int *`, type-check and raise on every call; these
    reuse one length cell and answer None for a packet libsrtp refuses (replayed, forged,
    too long). Same context, same buffer, same libsrtp calls: aiortc's own uses of the
    session (RTCP, the slow path) interleave freely, all on the one event loop thread.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._context = _private(session, "_srtp")[0]
        self._cdata = _private(session, "_cdata")
        self._buffer = _private(session, "_buffer")
        self._room = len(self._cdata) - SRTP_MAX_TRAILER_LEN
        self._length = srtp_ffi.new("int *")

    def protect(self, data: bytes) -> bytes | None:
        return self._call(srtp_lib.srtp_protect, data)

    def protect_rewritten(
        self, data: bytes, payload_type: int, seq: int, ts: int, ssrc: int
    ) -> bytes | None:
        """`protect(rewrite_fixed_header(data, ...))`, rewritten in the session's buffer."""
        size = len(data)
        if size > self._room:
            return None
        rewrite_fixed_header_into(self._buffer, data, payload_type, seq, ts, ssrc)
        length = self._length
        length[0] = size
        if srtp_lib.srtp_protect(self._context, self._cdata, length):
            return None
        result: bytes = self._buffer[0 : length[0]]
        return result

    def unprotect(self, data: bytes) -> bytes | None:
        return self._call(srtp_lib.srtp_unprotect, data)

    def _call(self, function: Any, data: bytes) -> bytes | None:
        size = len(data)
        if size > self._room:
            return None
        self._buffer[0:size] = data
        length = self._length
        length[0] = size
        if function(self._context, self._cdata, length):
            return None
        result: bytes = self._buffer[0 : length[0]]
        return result


def _srtp_calls(cached: SrtpCalls | None, session: Session | None) -> SrtpCalls | None:
    """The `SrtpCalls` of `session`, rebuilt when the transport's session changed."""
    if session is None:
        return None
    if cached is None or cached.session is not session:
        return SrtpCalls(session)
    return cached
