"""Where a participant's browser opens its call WebSocket."""

from __future__ import annotations

import uuid


def socket_path(appointment_id: uuid.UUID) -> str:
    return f"/ws/appointments/{appointment_id}/call"


def socket_url(base_url: str, appointment_id: uuid.UUID) -> str:
    """Absolute ws:// or wss:// URL of the socket, from the node's public URL."""
    path = socket_path(appointment_id)
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://") + path
    return "ws://" + base_url.removeprefix("http://") + path
