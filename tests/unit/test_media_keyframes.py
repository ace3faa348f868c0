"""Keyframe detection on RTP payloads (VP8 on real encoder output, H.264 by NAL type)."""

from __future__ import annotations

import fractions

import av
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.keyframes import (
    is_h264_keyframe_start,
    is_keyframe_start,
    is_vp8_keyframe_start,
)


def _vp8_frames(count: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.options = {"deadline": "realtime", "lag-in-frames": "0"}
    frames: list[bytes] = []
    for i in range(count):
        image = np.full((72, 64), (i * 37) % 255, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        frames += [bytes(p) for p in codec.encode(frame)]
    return frames


def test_vp8_keyframe_detected_on_real_packets() -> None:
    key, delta = _vp8_frames(2)[:2]
    for picture_id in (5, 300):  # 7-bit and 15-bit picture ids
        key_payloads = Vp8Encoder._packetize(key * 3, picture_id)
        delta_payloads = Vp8Encoder._packetize(delta, picture_id)
        assert is_vp8_keyframe_start(key_payloads[0])
        assert not any(is_vp8_keyframe_start(p) for p in key_payloads[1:])  # not frame starts
        assert not is_vp8_keyframe_start(delta_payloads[0])
    # Minimal descriptor (no X byte), as some senders use.
    plain = bytes(VpxPayloadDescriptor(partition_start=1, partition_id=0)) + key
    assert is_vp8_keyframe_start(plain)
    assert not is_vp8_keyframe_start(b"\x90")
    assert not is_vp8_keyframe_start(b"")


def test_h264_keyframe_detection() -> None:
    assert is_h264_keyframe_start(bytes([0x65, 0x88]))  # IDR slice
    assert is_h264_keyframe_start(bytes([0x67, 0x42]))  # SPS
    assert not is_h264_keyframe_start(bytes([0x41, 0x9A]))  # non-IDR slice
    stap_a = bytes([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])
    assert is_h264_keyframe_start(stap_a)
    assert is_h264_keyframe_start(bytes([0x7C, 0x85, 0x00]))  # FU-A start of IDR
    assert not is_h264_keyframe_start(bytes([0x7C, 0x05, 0x00]))  # FU-A middle
    opus = RTCRtpCodecParameters(mimeType="video/AV1", clockRate=90000, payloadType=45)
    assert is_keyframe_start(opus, b"\x00")  # unknown codecs are never held back
