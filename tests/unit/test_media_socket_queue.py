"""`socket_queued_bytes`: what the kernel holds for a UDP socket, read from a real one."""

from __future__ import annotations

import socket

from media.aiortc_adapter import MAX_SOCKET_QUEUE_BYTES, socket_queued_bytes


def test_the_queue_grows_with_unread_datagrams_and_empties_when_read() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as leg,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
    ):
        leg.bind(("127.0.0.1", 0))
        assert socket_queued_bytes(leg) == 0
        for _ in range(40):
            peer.sendto(bytes(1200), leg.getsockname())
        queued = socket_queued_bytes(leg)
        assert queued is not None and queued >= 40 * 1200
        # 40 full-size datagrams are over the limit the tap sheds at.
        assert queued > MAX_SOCKET_QUEUE_BYTES
        leg.setblocking(False)
        for _ in range(40):
            leg.recv(2048)
        assert socket_queued_bytes(leg) == 0


def test_a_closed_socket_cannot_tell() -> None:
    leg = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    leg.close()
    assert socket_queued_bytes(leg) is None
