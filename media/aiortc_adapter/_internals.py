"""Version pin, the private-attribute accessor and the limits shared by the adapter."""

from __future__ import annotations

from typing import Any

import aiortc

# The aiortc versions whose internals this adapter was written against and tested with.
# tests/unit/test_aiortc_internals.py fails loudly when the installed version's internals move.
TESTED_AIORTC_VERSIONS: tuple[str, ...] = ("1.16.0",)

# Shed packets when this many datagrams wait in a leg's aioice receive queue: forwarding
# stale media only adds latency. (The fast path bypasses the queue; what remains in it is
# RTCP, RTX and streams on the slow path.)
MAX_INGRESS_BACKLOG_PACKETS = 64
# The fast path's backlog is the kernel's: datagrams queued on a leg's UDP socket while the
# event loop is busy. Beyond this many bytes queued (the kernel's accounting, about 2.3 KB
# per full-size datagram: some 28 datagrams, under 0.2 s of a participant's audio and
# video) the tap sheds what it reads, through the forwarder's drop path, until it catches
# up; the kernel alone would let the queue grow to the socket's whole receive buffer
# (rmem_default, 208 KB: over half a second) and then drop blind.
MAX_SOCKET_QUEUE_BYTES = 64 * 1024
# The tap reads the socket's queue once per this many datagrams (a getsockopt).
SOCKET_QUEUE_SAMPLE_DATAGRAMS = 16


class AiortcInternalsChanged(RuntimeError):
    """aiortc moved a private attribute or method that the forwarder relies on."""


def _private(obj: object, name: str) -> Any:
    """A private aiortc attribute, or a clear error naming it."""
    try:
        return getattr(obj, name)
    except AttributeError as exc:
        raise AiortcInternalsChanged(
            f"{type(obj).__name__}.{name} is gone (aiortc {aiortc.__version__}; "
            f"media/aiortc_adapter was tested with {', '.join(TESTED_AIORTC_VERSIONS)})"
        ) from exc
