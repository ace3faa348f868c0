"""Does this RTP payload start a keyframe? (pure, per codec)

The forwarder holds video back until a keyframe whenever it had to drop packets (the
receiver could decode nothing before one), so it must recognise a keyframe's first packet
from the payload alone, without depacketizing.
"""

from __future__ import annotations

from aiortc.rtcrtpparameters import RTCRtpCodecParameters


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 RTP payload starts a keyframe (RFC 7741 sections 4.2, 4.3)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    # S (start of partition) set and partition id 0: the first packet of a frame.
    if not first & 0x10 or first & 0x07:
        return False
    pos = 1
    if first & 0x80:  # X: extension octet follows
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= len(payload):
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX octet
            pos += 1
    if pos >= len(payload):
        return False
    # VP8 payload header: the P bit is 0 for a keyframe.
    return not payload[pos] & 0x01


_H264_KEY_NAL_TYPES = frozenset({5, 7})  # IDR slice, SPS


def is_h264_keyframe_start(payload: bytes) -> bool:
    """True if this H.264 RTP payload carries an IDR or SPS (RFC 6184)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_NAL_TYPES:
        return True
    if nal_type == 24:  # STAP-A: 16-bit size, then the NAL unit
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in _H264_KEY_NAL_TYPES:
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start bit and original NAL type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in _H264_KEY_NAL_TYPES
    return False


def is_keyframe_start(codec: RTCRtpCodecParameters, payload: bytes) -> bool:
    name = codec.name.lower()
    if name == "vp8":
        return is_vp8_keyframe_start(payload)
    if name == "h264":
        return is_h264_keyframe_start(payload)
    # Unknown video codec: we cannot tell, so never hold it back.
    return True
