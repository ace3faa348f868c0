"""A participant's outbound stream: numbers server messages and replays them on resume.

Each message sent to a participant gets the next ``seq`` of their stream. A client that
reconnects sends ``resume(stream_id, last_seq)``; if the stream still holds everything
after ``last_seq`` those messages are replayed (no loss, no duplicate); otherwise the room
starts a new stream whose first message is a whole-state ``snapshot``.
"""

from __future__ import annotations

from collections import deque

import msgspec

from signalling.protocol import ServerMessage, Snapshot


class OutboundStream:
    def __init__(self, stream_id: str, replay_limit: int = 256) -> None:
        self.stream_id = stream_id
        self._last_seq = 0
        self._sent: deque[ServerMessage] = deque(maxlen=replay_limit)

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def stamp(self, message: ServerMessage) -> ServerMessage:
        """Give ``message`` the next seq (and a snapshot this stream's id) and keep it."""
        self._last_seq += 1
        if isinstance(message, Snapshot):
            stamped: ServerMessage = msgspec.structs.replace(
                message, seq=self._last_seq, stream_id=self.stream_id
            )
        else:
            stamped = msgspec.structs.replace(message, seq=self._last_seq)
        self._sent.append(stamped)
        return stamped

    def replay_after(self, last_seq: int) -> list[ServerMessage] | None:
        """Messages after ``last_seq``, or None when they cannot all be replayed."""
        if last_seq > self._last_seq or last_seq < 0:
            return None  # the client claims a message this stream never sent
        oldest_kept = self._last_seq - len(self._sent) + 1
        if last_seq + 1 < oldest_kept:
            return None
        return [message for message in self._sent if message.seq > last_seq]
