"""The kinds of media a leg carries."""

from __future__ import annotations

from typing import Literal

MediaKind = Literal["audio", "video"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("audio", "video")
