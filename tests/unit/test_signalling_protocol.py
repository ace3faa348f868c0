"""Protocol edge: every client message decodes to a typed struct or a ProtocolError."""

from __future__ import annotations

import msgspec
import pytest

from signalling.model import Phase, Role
from signalling.protocol import (
    MAX_MESSAGE_BYTES,
    CallEnded,
    HangupConfirm,
    Hello,
    IceCandidate,
    ProtocolError,
    Resume,
    SdpOffer,
    Snapshot,
    decode_client_message,
    decode_server_message,
    encode_client_message,
    encode_server_message,
)


def test_valid_messages_decode_to_their_types() -> None:
    assert decode_client_message('{"type":"hello","v":1}') == Hello(v=1)
    assert decode_client_message(b'{"type":"resume","v":1,"stream_id":"s","last_seq":4}') == (
        Resume(v=1, stream_id="s", last_seq=4)
    )
    msg = decode_client_message(
        '{"type":"hangup_confirm","v":1,"confirm_id":"abc","choice":"refresh"}'
    )
    assert msg == HangupConfirm(v=1, confirm_id="abc", choice="refresh")
    ice = decode_client_message('{"type":"ice_candidate","v":1,"candidate":""}')
    assert ice == IceCandidate(v=1, candidate="")  # end of candidates


def test_client_messages_round_trip() -> None:
    for msg in (
        Hello(v=1),
        Resume(v=1, stream_id="x", last_seq=0),
        HangupConfirm(v=1, confirm_id="c", choice="end"),
    ):
        assert decode_client_message(encode_client_message(msg)) == msg


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ("{", "malformed_json", None),
        (b"\xff", "malformed_json", None),
        ("[1]", "not_an_object", None),
        ('"hello"', "not_an_object", None),
        ('{"v":1}', "missing_field", "type"),
        ('{"type":"dance","v":1}', "unknown_type", "type"),
        ('{"type":7,"v":1}', "unknown_type", "type"),
        ('{"type":"hello","v":2}', "unsupported_version", "v"),
        ('{"type":"hello","v":"1"}', "unsupported_version", "v"),
        ('{"type":"hello"}', "missing_field", "v"),
        ('{"type":"hello","v":1,"role":"clinician"}', "unknown_field", "role"),
        (
            '{"type":"hangup_confirm","v":1,"confirm_id":5,"choice":"end"}',
            "invalid_field",
            "confirm_id",
        ),
        (
            '{"type":"hangup_confirm","v":1,"confirm_id":"","choice":"end"}',
            "invalid_field",
            "confirm_id",
        ),
        (
            '{"type":"hangup_confirm","v":1,"confirm_id":"a","choice":"maybe"}',
            "invalid_field",
            "choice",
        ),
        ('{"type":"hangup_confirm","v":1,"choice":"end"}', "missing_field", "confirm_id"),
        (
            '{"type":"end_request_decision","v":1,"request_id":"a","decision":"refresh"}',
            "invalid_field",
            "decision",
        ),
        ('{"type":"resume","v":1,"stream_id":"s","last_seq":-1}', "invalid_field", "last_seq"),
        ('{"type":"ping","v":1,"nonce":"x"}', "invalid_field", "nonce"),
        (
            '{"type":"ice_candidate","v":1,"candidate":"c","sdp_mline_index":"0"}',
            "invalid_field",
            "sdp_mline_index",
        ),
    ],
)
def test_bad_messages_name_the_field(raw: str | bytes, code: str, field: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(raw)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert caught.value.message


def test_oversized_message_is_refused_before_parsing() -> None:
    raw = '{"type":"sdp_offer","v":1,"sdp":"' + "a" * MAX_MESSAGE_BYTES + '"}'
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(raw)
    assert caught.value.code == "too_large"


def test_size_limit_counts_bytes_of_a_text_frame_not_characters() -> None:
    # A text frame arrives as str: 30,000 two-byte characters are 60,000 bytes of UTF-8.
    within = '{"type":"sdp_offer","v":1,"sdp":"' + "é" * 30_000 + '"}'
    assert isinstance(decode_client_message(within), SdpOffer)
    # Fewer characters than the limit, but more bytes: refused like the bytes would be.
    over = '{"type":"sdp_offer","v":1,"sdp":"' + "é" * (MAX_MESSAGE_BYTES // 2) + '"}'
    assert len(over) < MAX_MESSAGE_BYTES < len(over.encode())
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(over)
    assert caught.value.code == "too_large"


def test_server_messages_carry_type_version_and_seq() -> None:
    snap = Snapshot(
        stream_id="s", call_id="c", phase=Phase.IN_PROGRESS, your_role=Role.CLIENT, present=[]
    )
    raw = encode_server_message(msgspec.structs.replace(snap, seq=3))
    data = msgspec.json.decode(raw)
    assert (data["type"], data["v"], data["seq"], data["phase"]) == (
        "snapshot",
        1,
        3,
        "in_progress",
    )
    assert decode_server_message(raw) == msgspec.structs.replace(snap, seq=3)


def test_call_ended_omits_phone_when_none() -> None:  # R-C4
    ended = CallEnded(reason="ended", your_role=Role.CLIENT, title="t", message="m")
    assert "practice_phone" not in msgspec.json.decode(encode_server_message(ended))
