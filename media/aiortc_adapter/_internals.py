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
